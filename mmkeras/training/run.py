"""`mmkeras.train`: a spec to a run folder (see `mmkeras.run_folder`) with a trained Task."""

import dataclasses
import logging
import math
import os
import shutil
import tempfile
import time

import keras
import numpy as np

from mmkeras.data.check import available_splits, data_report_lines
from mmkeras.data.dataset import (
    bad_rows,
    build_preprocessor,
    checked_split,
    good_column,
    make_dataset,
    make_distributed_dataset,
)
from mmkeras.data.sample import collect_sample
from mmkeras.data.splits import open_split
from mmkeras.errors import SpecError, TrainingError
from mmkeras.run_folder import RunFolder, load_task
from mmkeras.spec import Spec
from mmkeras.tasks import build_task
from mmkeras.training.callbacks import FiniteBackupAndRestore, FiniteModelCheckpoint, NaNGuard
from mmkeras.training.defaults import resolve_training_defaults
from mmkeras.training.modality_dynamics import (
    LEARNS,
    SWITCHED_ON,
    EarlyFreezing,
    GradientBlending,
    ModalityDynamics,
    SwitchOff,
)
from mmkeras.training.multi_worker import MultiWorkerLoop, SharedBackupAndRestore
from mmkeras.training.optimizer import build_optimizer
from mmkeras.training.strategy import configure_mixed_precision, is_chief, is_multi_worker, resolve_strategy
from mmkeras.training.tensorboard import DataSummaries, write_hparams

logger = logging.getLogger("mmkeras")


def _class_weight(spec, preprocessor):
    """The resolved spec's `{label: weight}` by class index, or None."""
    setting = spec.train.class_weight
    if setting is None:
        return None
    labels = preprocessor.target.labels
    unknown = set(map(str, setting)) - set(labels)
    if unknown:
        raise SpecError(f"train.class_weight: unknown label(s) {sorted(unknown)}; labels are {labels}.")
    weights = {str(label): float(weight) for label, weight in setting.items()}
    return {i: weights.get(label, 1.0) for i, label in enumerate(labels)}


def _steps_per_epoch(spec):
    rows = len(open_split(spec, "train")) - len(bad_rows(spec, "train", progress=False))
    steps = rows // spec.data.batch_size
    if steps == 0:
        raise SpecError(
            f"data.batch_size: the training split has {rows} good rows, fewer than one batch "
            f"of {spec.data.batch_size}; lower the batch size."
        )
    return steps


def _best_so_far(folder, monitor):
    """The best monitored value in a resumed run's history, so `best` is not
    lost; counted from the last epoch a modality was switched off
    (`SwitchOff` logs `<feature>_on`), as the model changed there."""
    history = folder.read_history()
    values = history.get(monitor)
    if not values:
        return None
    switches = [column for name, column in history.items() if name.endswith(SWITCHED_ON)]
    start = max((i for on in switches for i in range(1, len(on)) if on[i] != on[i - 1]), default=0)
    return min(values[start:])


def _check_data(spec):
    """The bad-record check on every split, before anything is built; logs
    the split summary and the leakage report found in the same read."""
    checks = {split: checked_split(spec, split) for split in available_splits(spec)}
    for line in data_report_lines(checks, spec):
        logger.info(line)
    for split in checks:
        bad_rows(spec, split)


def _evaluation_data(strategy, spec, split, preprocessor, class_weight=None):
    """A split to evaluate: distributed for the multi-worker loop, plain for `fit`."""
    if is_multi_worker(strategy):
        return make_distributed_dataset(strategy, spec, split, preprocessor, class_weight=class_weight)
    return make_dataset(spec, split, preprocessor=preprocessor, class_weight=class_weight)


def _preprocessor(spec, folder):
    """A resumed run's own preprocessor (inside its last checkpoint), else a new one."""
    if os.path.exists(folder.last):
        return load_task(folder.last).preprocessor
    return build_preprocessor(spec)


@dataclasses.dataclass
class RunResult:
    """What `train` returns: where the run is, its final metrics, the trained
    Task, how the fused model compares with its unimodal heads on the
    validation split (`FusionTask.fusion_check`; None without heads or
    validation data), and the features switched off in training."""

    run_dir: str
    metrics: dict
    task: keras.Model
    fusion_check: dict | None = None
    switched_off: list = dataclasses.field(default_factory=list)


def train(
    spec: Spec, output_dir: str | None = None, overwrite: bool = False, verbose: int = 1
) -> "RunResult":
    """Trains the spec's model and writes the run folder.

    Args:
        spec: Spec. Data, model and train sections.
        output_dir: str or None. The run folder; an unfinished run there is
            resumed. Defaults to `runs/run-<date>-<time>`; required with
            `strategy: multi_worker`, where every worker names the same one
            (`mmkeras train` defaults to `runs/SPEC_NAME`).
        overwrite: bool. Replace a finished run in `output_dir`.
        verbose: int. Keras progress bar verbosity.

    Returns:
        A RunResult; its metrics are the final validation metrics (training
        loss when there is no validation data).
    """
    previous_policy = keras.mixed_precision.global_policy()
    try:
        return _train(spec, output_dir, overwrite, verbose)
    finally:
        # The run's policy applies to the models it builds, not to the caller's.
        keras.mixed_precision.set_global_policy(previous_policy)


def _train(spec, output_dir, overwrite, verbose):
    if spec.train.strategy == "multi_worker" and not output_dir:
        raise SpecError(
            "train.strategy: multi_worker needs --output-dir, the same folder for every worker on "
            "storage they share: the chief writes the run there and every worker resumes from it."
        )
    keras.utils.set_random_seed(spec.train.seed)
    strategy = resolve_strategy(spec.train.strategy)
    multi_worker = is_multi_worker(strategy)
    output_dir = output_dir or os.path.join("runs", time.strftime("run-%Y%m%d-%H%M%S"))
    chief = is_chief(strategy)
    shared = RunFolder(output_dir)
    # Workers other than the chief write their checkpoints to a scratch folder.
    folder = (
        shared.prepare(overwrite)
        if chief
        else RunFolder(tempfile.mkdtemp(prefix="mmkeras-worker-")).prepare()
    )
    policy = configure_mixed_precision(spec.train.mixed_precision)
    logger.info(
        "Strategy %s with %d replica(s), dtype policy %s",
        type(strategy).__name__,
        strategy.num_replicas_in_sync,
        policy,
    )

    _check_data(spec)
    preprocessor = _preprocessor(spec, shared)  # resuming: the same vocabularies
    has_validation = "validation" in available_splits(spec)
    if spec.model.balance.method == "gradient_blending" and not has_validation:
        raise SpecError(
            f"model.balance.method: {spec.model.balance.method} weighs the modalities by how their "
            "validation loss falls; add `data.validation` or `data.validation_split`."
        )
    spec = resolve_training_defaults(spec, preprocessor, has_validation)
    spec.to_yaml(folder.spec, absolute_paths=True)

    steps_per_epoch = _steps_per_epoch(spec)
    with strategy.scope():
        task = build_task(spec, preprocessor)
        task.compile(
            optimizer=build_optimizer(spec.train, steps_per_epoch), label_smoothing=spec.train.label_smoothing
        )
    # Keras reads a distributed dataset's length per replica (with two replicas,
    # twice the steps there are), so with several replicas the data repeats and
    # fit is told the epoch's length.
    # The multi-worker loop counts its own steps too.
    repeat = strategy.num_replicas_in_sync > 1 or multi_worker
    class_weight = _class_weight(spec, preprocessor)
    train_data = make_distributed_dataset(
        strategy, spec, "train", preprocessor, training=True, repeat=repeat, class_weight=class_weight
    )
    # Validation weighs classes as training does, so the loss that picks the
    # best epoch is the one being minimised: unweighted, it falls whenever
    # the model leans back to the common classes.
    validation_data = (
        _evaluation_data(strategy, spec, "validation", preprocessor, class_weight) if has_validation else None
    )

    monitor = ("val_" if has_validation else "") + task.loss_to_monitor
    nan_guard = NaNGuard(folder.last, policy)
    backup = (
        SharedBackupAndRestore(shared.backup, writer=chief, delete_checkpoint=True)
        if multi_worker
        else FiniteBackupAndRestore(folder.backup, delete_checkpoint=True)
    )
    best_checkpoint = FiniteModelCheckpoint(
        folder.best,
        monitor=monitor,
        mode="min",
        save_best_only=True,
        initial_value_threshold=_best_so_far(folder, monitor),
    )
    # The best weights come back from the `best` checkpoint after training,
    # which, unlike EarlyStopping's copy in memory, survives a resume.
    early_stopping = (
        keras.callbacks.EarlyStopping(monitor, patience=spec.train.early_stopping_patience, mode="min")
        if spec.train.early_stopping_patience
        else None
    )
    callbacks = [backup, nan_guard, best_checkpoint, FiniteModelCheckpoint(folder.last)]
    if has_validation and task.unimodal_heads:
        restart = _starting_over(best_checkpoint, early_stopping)
        history = folder.read_history()
        callbacks += _balance_callbacks(task, spec, preprocessor, history, restart, class_weight)
    callbacks += [
        keras.callbacks.CSVLogger(folder.history, append=True),
        keras.callbacks.TensorBoard(
            folder.logs,
            profile_batch=tuple(spec.train.profile_batches) if spec.train.profile_batches else 0,
        ),
    ]
    if early_stopping:
        callbacks.append(early_stopping)
    if has_validation and task.shows_examples and spec.train.tensorboard_examples:
        sample = collect_sample(spec, preprocessor, max_rows=task.example_sample_rows)
        callbacks.append(DataSummaries(folder.logs, sample, spec, spec.train.tensorboard_examples))

    started = time.time()
    if multi_worker:
        one_replica_batch = make_dataset(spec, "train", preprocessor=preprocessor, check=False).element_spec
        loop = MultiWorkerLoop(task, strategy, one_replica_batch)
        loop.fit(train_data, spec.train.epochs, steps_per_epoch, callbacks, validation_data, verbose=verbose)
    else:
        task.fit(
            train_data,
            validation_data=validation_data,
            epochs=spec.train.epochs,
            callbacks=callbacks,
            steps_per_epoch=steps_per_epoch if repeat else None,
            shuffle=False,  # make_dataset shuffles; Keras would only warn that it cannot
            verbose=verbose,
        )
    if nan_guard.failure:
        raise TrainingError(nan_guard.failure)
    if spec.train.restore_best_weights and has_validation and os.path.exists(folder.best):
        # The run ends on its best validation epoch, not on whichever was last.
        task.load_weights(folder.best)

    evaluate = (
        loop.evaluate if multi_worker else lambda data: task.evaluate(data, return_dict=True, verbose=0)
    )
    if has_validation:
        metrics = evaluate(validation_data)
    else:
        training = evaluate(_evaluation_data(strategy, spec, "train", preprocessor, class_weight))
        metrics = {"loss": training[task.loss_to_monitor]}
    metrics = {name: float(value) for name, value in metrics.items()}
    metrics["train_seconds"] = round(time.time() - started, 1)
    fusion_check = None
    switched_off = task.backbone.switched_off if task.unimodal_heads else []
    if chief:
        task.save(folder.model)
        write_hparams(folder.logs, spec, {k: v for k, v in metrics.items() if math.isfinite(v)})
        report = dict(metrics)
        if has_validation and task.unimodal_heads:
            # A worker's model predicts only beside the other workers, on distributed
            # data: the chief scores the saved model on the whole split.
            if multi_worker:
                fusion_check = _fusion_check(load_task(folder.model), spec)
            else:
                fusion_check = _fusion_check(task, spec, validation_data)
            report["fusion_check"] = fusion_check
        if switched_off:
            report["switched_off"] = switched_off
        frozen = _frozen_in_training(folder.read_history(), task.feature_names) if task.unimodal_heads else []
        if frozen:
            report["frozen"] = frozen
        folder.write_metrics(report)
    else:
        shutil.rmtree(folder.root, ignore_errors=True)
    return RunResult(folder.root, metrics, task, fusion_check, switched_off)


def _starting_over(best_checkpoint, early_stopping):
    """What a run does when the model changes under it (a modality switched
    off): the search for its best epoch starts over."""

    def start_over():
        best_checkpoint.forget_best()
        if early_stopping:
            early_stopping.best, early_stopping.wait = None, 0

    return start_over


def _balance_callbacks(task, spec, preprocessor, history, restart, class_weight):
    """The callbacks that watch the unimodal heads and, with `model.balance`,
    weigh them, switch a modality off or freeze its encoder; `history` is a
    resumed run's, so their windows keep their start; `restart` is called
    when a modality is switched off; `class_weight` weighs the losses they
    compare, as training does."""
    callbacks = []
    if spec.model.balance.method == "gradient_blending":
        callbacks.append(GradientBlending(task.head_gradient_scales, spec.model.balance.blend_every, history))
    if spec.model.balance.switch_off:
        constant_loss = task.constant_loss(
            _encoded_targets(spec, "train", preprocessor),
            _encoded_targets(spec, "validation", preprocessor),
            class_weight,
        )
        callbacks.append(SwitchOff(task.backbone, constant_loss, restart, history))
    if spec.model.balance.freeze_after:
        callbacks.append(EarlyFreezing(task.backbone, spec.model.balance.freeze_after, history))
    first_epoch = {name: values[0] for name, values in history.items() if values}
    callbacks.append(ModalityDynamics(task.head_names, first_epoch or None))
    return callbacks


def _frozen_in_training(history, features):
    """The features whose encoders `EarlyFreezing` froze: the restored best
    epoch may come from before, so the history says, not the model."""
    return [f for f in features if history.get(f + LEARNS, [1.0])[-1] == 0.0]


def _encoded_targets(spec, split, preprocessor):
    """A split's good rows' targets, encoded, read from its manifest column
    alone (no file is opened)."""
    return np.asarray(preprocessor.target(good_column(spec, split, spec.data.target.column)))


def _fusion_check(task, spec, validation=None):
    """The fused model against its unimodal heads on the validation split
    (`validation`, the dataset training validated on, whose decoded rows
    may be cached already), with a warning when one of them does better on its own."""
    if validation is None:
        validation = make_dataset(spec, "validation", preprocessor=task.preprocessor)
    check = task.check_fusion(validation)
    if check["message"]:
        logger.warning("On the validation split, %s", check["message"])
    return check


def summarize(metrics):
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float) and np.isfinite(v))

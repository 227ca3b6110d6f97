"""`mmkeras.train`: a spec to a run folder with a trained model.

The run folder holds everything needed to evaluate, predict, resume or
export:

```
RUN/
  spec.yaml            the spec as used (absolute paths)
  preprocessor.json    vocabularies and labels
  model.keras          the final model
  checkpoints/best.keras, checkpoints/last.keras
  backup/              BackupAndRestore state: a killed run resumes from here
  history.csv          one row per finished epoch
  metrics.json         validation metrics of the final model
  logs/                TensorBoard
```
"""

import collections
import csv
import dataclasses
import json
import logging
import math
import os
import shutil
import tempfile
import time

import keras
import numpy as np

from mmkeras.data.check import available_splits
from mmkeras.data.dataset import bad_rows, build_preprocessor, make_dataset, make_distributed_dataset
from mmkeras.data.splits import open_split
from mmkeras.errors import SpecError
from mmkeras.models.builder import build_model
from mmkeras.models.dual_encoder import build_dual_encoder
from mmkeras.models.heads import compile_for_target
from mmkeras.preprocessing.preprocessor import load_preprocessor
from mmkeras.training.callbacks import FiniteBackupAndRestore, FiniteModelCheckpoint, NaNGuard, TrainingError
from mmkeras.training.multi_worker import MultiWorkerLoop, SharedBackupAndRestore
from mmkeras.training.optimizer import build_optimizer
from mmkeras.training.row_sample import collect_sample
from mmkeras.training.strategy import configure_mixed_precision, is_chief, is_multi_worker, resolve_strategy
from mmkeras.training.tensorboard import DataSummaries, write_hparams

logger = logging.getLogger("mmkeras")


@dataclasses.dataclass(frozen=True)
class RunPaths:
    """Where each part of a run lives."""

    root: str

    def __getattr__(self, name):
        layout = {
            "spec": "spec.yaml",
            "preprocessor": "preprocessor.json",
            "model": "model.keras",
            "best": os.path.join("checkpoints", "best.keras"),
            "last": os.path.join("checkpoints", "last.keras"),
            "backup": "backup",
            "history": "history.csv",
            "metrics": "metrics.json",
            "logs": "logs",
        }
        if name not in layout:
            raise AttributeError(name)
        return os.path.join(self.root, layout[name])


def _class_weight(spec, preprocessor):
    """Inverse-frequency weights (`auto`) or the spec's own, by class index."""
    setting = spec.train.class_weight
    if setting is None:
        return None
    target = spec.data.target
    if target is None or target.type not in ("categorical", "binary"):
        raise SpecError("train.class_weight: only categorical and binary targets take class weights.")
    labels = preprocessor.target.labels
    if setting == "auto":
        source = open_split(spec, "train")
        exclude = bad_rows(spec, "train", progress=False)
        counts = collections.Counter(
            value for key, value in zip(source.keys(), source.column(target.column)) if key not in exclude
        )
        total = sum(counts.values())
        return {i: total / (len(labels) * max(counts[label], 1)) for i, label in enumerate(labels)}
    unknown = set(map(str, setting)) - set(labels)
    if unknown:
        raise SpecError(f"train.class_weight: unknown label(s) {sorted(unknown)}; labels are {labels}.")
    return {
        i: float(setting.get(label, setting.get(_as_number(label), 1.0))) for i, label in enumerate(labels)
    }


def _as_number(label):
    try:
        return int(label)
    except ValueError:
        return label


def _steps_per_epoch(spec):
    rows = len(open_split(spec, "train")) - len(bad_rows(spec, "train", progress=False))
    steps = rows // spec.data.batch_size
    if steps == 0:
        raise SpecError(
            f"data.batch_size: the training split has {rows} good rows, fewer than one batch "
            f"of {spec.data.batch_size}; lower the batch size."
        )
    return steps


def _best_so_far(history_path, monitor):
    """The best monitored value in a resumed run's history, so `best` is not lost."""
    if not os.path.exists(history_path):
        return None
    with open(history_path, newline="") as f:
        values = [float(row[monitor]) for row in csv.DictReader(f) if row.get(monitor)]
    return min(values) if values else None


def _check_data(spec):
    """The bad-record check on every split, before anything is built."""
    for split in available_splits(spec):
        bad_rows(spec, split)


def _evaluation_data(strategy, spec, split, preprocessor):
    """A split to evaluate: distributed for the multi-worker loop, plain for `fit`."""
    if is_multi_worker(strategy):
        return make_distributed_dataset(strategy, spec, split, preprocessor)
    return make_dataset(spec, split, preprocessor=preprocessor)


def prepare_run(spec, output_dir, overwrite=False):
    """Creates (or reopens, to resume) the run folder; returns its paths."""
    paths = RunPaths(os.path.abspath(output_dir))
    if os.path.exists(paths.metrics):
        if not overwrite:
            raise SpecError(
                f"{paths.root} holds a finished run; pass a new --output-dir, or --overwrite to replace it."
            )
        shutil.rmtree(paths.root)
    os.makedirs(os.path.dirname(paths.best), exist_ok=True)
    return paths


def build_run_model(spec, preprocessor, optimizer):
    if spec.data.target is None:
        model = build_dual_encoder(spec, preprocessor, compile=False)
        model.compile(optimizer=optimizer)
        return model
    model = build_model(spec, preprocessor, compile=False)
    target = spec.data.target
    num_labels = len(preprocessor.target.labels) if target.is_classification else 1
    return compile_for_target(model, target.type, num_labels, optimizer)


@dataclasses.dataclass
class RunResult:
    """What `train` returns: where the run is, its final metrics, the model."""

    run_dir: str
    metrics: dict
    model: keras.Model


def train(spec, output_dir=None, overwrite=False, verbose=1):
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
    paths = (
        prepare_run(spec, output_dir, overwrite)
        if chief
        else RunPaths(tempfile.mkdtemp(prefix="mmkeras-worker-"))
    )
    os.makedirs(os.path.dirname(paths.best), exist_ok=True)
    policy = configure_mixed_precision(spec.train.mixed_precision)
    logger.info(
        "Strategy %s with %d replica(s), dtype policy %s",
        type(strategy).__name__,
        strategy.num_replicas_in_sync,
        policy,
    )

    _check_data(spec)
    if os.path.exists(paths.preprocessor):
        preprocessor = load_preprocessor(paths.preprocessor)  # resuming: the same vocabularies
    else:
        preprocessor = build_preprocessor(spec)
        preprocessor.save(paths.preprocessor)
    spec.to_yaml(paths.spec, absolute_paths=True)

    has_validation = "validation" in available_splits(spec)
    steps_per_epoch = _steps_per_epoch(spec)
    with strategy.scope():
        model = build_run_model(spec, preprocessor, build_optimizer(spec.train, steps_per_epoch))
    # Keras reads a distributed dataset's length per replica (with two replicas,
    # twice the steps there are), so with several replicas the data repeats and
    # fit is told the epoch's length.
    # The multi-worker loop counts its own steps too.
    repeat = strategy.num_replicas_in_sync > 1 or multi_worker
    train_data = make_distributed_dataset(
        strategy,
        spec,
        "train",
        preprocessor,
        training=True,
        repeat=repeat,
        class_weight=_class_weight(spec, preprocessor),
    )
    validation_data = _evaluation_data(strategy, spec, "validation", preprocessor) if has_validation else None

    monitor = "val_loss" if has_validation else "loss"
    nan_guard = NaNGuard(paths.last, policy)
    backup = (
        SharedBackupAndRestore(
            RunPaths(os.path.abspath(output_dir)).backup, writer=chief, delete_checkpoint=True
        )
        if multi_worker
        else FiniteBackupAndRestore(paths.backup, delete_checkpoint=True)
    )
    callbacks = [
        backup,
        nan_guard,
        FiniteModelCheckpoint(
            paths.best,
            monitor=monitor,
            save_best_only=True,
            initial_value_threshold=_best_so_far(paths.history, monitor),
        ),
        FiniteModelCheckpoint(paths.last),
        keras.callbacks.CSVLogger(paths.history, append=True),
        keras.callbacks.TensorBoard(
            paths.logs,
            profile_batch=tuple(spec.train.profile_batches) if spec.train.profile_batches else 0,
        ),
    ]
    if spec.train.early_stopping_patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=monitor, patience=spec.train.early_stopping_patience, restore_best_weights=True
            )
        )
    if has_validation and spec.data.target is not None and spec.train.tensorboard_examples:
        sample = collect_sample(spec, preprocessor)
        labels = preprocessor.target.labels if spec.data.target.is_classification else None
        callbacks.append(DataSummaries(paths.logs, sample, spec, labels, spec.train.tensorboard_examples))

    started = time.time()
    if multi_worker:
        one_replica_batch = make_dataset(spec, "train", preprocessor=preprocessor, check=False).element_spec
        loop = MultiWorkerLoop(model, strategy, one_replica_batch)
        loop.fit(train_data, spec.train.epochs, steps_per_epoch, callbacks, validation_data, verbose=verbose)
    else:
        model.fit(
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

    evaluate = (
        loop.evaluate if multi_worker else lambda data: model.evaluate(data, return_dict=True, verbose=0)
    )
    if has_validation:
        metrics = evaluate(validation_data)
    else:
        metrics = {"loss": evaluate(_evaluation_data(strategy, spec, "train", preprocessor))["loss"]}
    metrics = {name: float(value) for name, value in metrics.items()}
    metrics["train_seconds"] = round(time.time() - started, 1)
    if chief:
        model.save(paths.model)
        write_hparams(paths.logs, spec, {k: v for k, v in metrics.items() if math.isfinite(v)})
        with open(paths.metrics, "w") as f:
            json.dump(metrics, f, indent=2)
    else:
        shutil.rmtree(paths.root, ignore_errors=True)
    return RunResult(paths.root, metrics, model)


def load_run(run_dir):
    """The spec, preprocessor and model of a finished run folder."""
    from mmkeras.spec import Spec

    paths = RunPaths(os.path.abspath(run_dir))
    for required in (paths.spec, paths.preprocessor, paths.model):
        if not os.path.exists(required):
            raise SpecError(f"{run_dir} is not a finished run: {os.path.basename(required)} is missing.")
    spec = Spec.from_yaml(paths.spec)
    return spec, load_preprocessor(paths.preprocessor), keras.saving.load_model(paths.model, safe_mode=True)


def summarize(metrics):
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float) and np.isfinite(v))

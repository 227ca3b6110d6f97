"""The base of every Task, and the registry that picks one for a spec."""

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from mmkeras.errors import SpecError

_TASKS = {}


def register_task(*target_types):
    """Class decorator: the Task for specs whose target has one of these types.

    `None` stands for a spec without a target (pairs to retrieve). The Task
    is also registered with Keras, so a saved one loads back.
    """

    def register(cls):
        for target_type in target_types:
            _TASKS[target_type] = cls
        cls.target_types = target_types
        return keras.saving.register_keras_serializable(package="mmkeras")(cls)

    return register


def task_class(target) -> type["Task"]:
    """The Task class for a spec's `data.target` (a TargetSpec or None)."""
    target_type = target.type if target is not None else None
    if target_type not in _TASKS:
        raise SpecError(f"data.target: no task handles a target of type {target_type!r}.")
    return _TASKS[target_type]


def build_task(spec, preprocessor) -> "Task":
    """The Task a spec describes, built on an adapted preprocessor (not compiled)."""
    return task_class(spec.data.target).from_spec(spec, preprocessor)


def raw_signature(input_names):
    """The input signature of a raw-input endpoint: a batch of strings per raw input."""
    return [{name: tf.TensorSpec([None], tf.string, name=name) for name in input_names}]


@dataclasses.dataclass
class ParityCase:
    """One signature call an exported SavedModel must reproduce.

    Args:
        signature: str. The signature to call.
        raw: dict. Raw input name to raw values (text, or file bytes).
        output: str. The output to compare.
        expected: np.ndarray. The trained model's value of that output.
    """

    signature: str
    raw: dict
    output: str
    expected: np.ndarray


@dataclasses.dataclass
class Evaluation:
    """A task's evaluation of one split.

    Args:
        report: dict. Metrics, JSON-serialisable.
        figures: dict. PNG file name to its bytes.
        targets: np.ndarray or None. The split's encoded targets, in row order.
        predictions: np.ndarray or None. The model's predictions, in row order.
    """

    report: dict
    figures: dict
    targets: np.ndarray | None = None
    predictions: np.ndarray | None = None


@dataclasses.dataclass
class EpochSummaries:
    """What a task shows in TensorBoard for a sample of rows after an epoch.

    Args:
        images: dict. Summary name to PNG bytes.
        tables: dict. Summary name to a Markdown table.
        titles: list. A short "true vs predicted" line per row.
    """

    images: dict
    tables: dict
    titles: list


class Task(keras.Model):
    """A Keras model for one kind of problem, that owns its preprocessor.

    Following KerasHub's Backbone / Preprocessor / Task split, a Task puts
    the layers of its problem on a backbone, keeps the `Preprocessor` that
    turns raw rows into its inputs (saved inside its `.keras` file), and
    knows everything that depends on the kind of problem:

    - `compile(loss="auto", metrics="auto")`: its loss and metrics;
    - `decode(predictions)`: outputs in the target's units (labels,
      probabilities, values), the same ones `serving_outputs` computes in
      the serving graph;
    - `export_archive()`: its serving signatures for TF Serving;
    - `evaluate_dataset(dataset)`: its evaluation report and figures;
    - `epoch_summaries(sample, predictions)`: what TensorBoard shows.

    A new kind of problem is a new subclass plus `register_task`. Subclasses
    build their Functional graph, call `super().__init__(inputs=...,
    outputs=..., preprocessor=...)`, and implement `from_spec`,
    `target_encoder`, `get_config` and the methods above.

    Args:
        preprocessor: Preprocessor. Raw rows to this task's inputs.
    """

    target_types = ()
    # True for tasks whose predictions on a row sample TensorBoard shows.
    shows_examples = False
    # Rows of that sample: what the per-epoch pictures (a confusion matrix) need.
    example_sample_rows = 2000
    # True when a held-out validation split should keep each raw target's share.
    stratifies_splits = False
    # True for tasks that `mmkeras evaluate` compares with linear baselines.
    compares_to_baselines = False
    # True for tasks with a head per modality, whose reports hold `fusion_check`.
    unimodal_heads = False

    def __init__(self, *args, preprocessor=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.preprocessor = preprocessor

    @classmethod
    def from_spec(cls, spec, preprocessor) -> "Task":
        """Builds this task from a spec and a preprocessor adapted on its training split."""
        raise NotImplementedError

    @classmethod
    def target_encoder(cls, spec):
        """The layer that encodes this task's raw targets (`spec.data.target`), or None."""
        return None

    def default_loss(self, label_smoothing=0.0):
        """The task's loss; `label_smoothing` (`train.label_smoothing`) where it has labels."""
        raise NotImplementedError

    def default_metrics(self):
        return []

    def compile(self, optimizer="adam", loss="auto", metrics="auto", label_smoothing=0.0, **kwargs) -> None:
        """`keras.Model.compile`, where "auto" is this task's own loss (with
        `label_smoothing`) and metrics."""
        super().compile(
            optimizer=optimizer,
            loss=self.default_loss(label_smoothing) if loss == "auto" else loss,
            metrics=self.default_metrics() if metrics == "auto" else metrics,
            **kwargs,
        )
        # The optimizer's slots, created now: left to the first training step,
        # they are created while it is traced, and TensorFlow then traces the
        # step a second time (one trace costs seconds to a minute).
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras 3.15 reads the shapes of a distributed first batch by averaging
        # it over the replicas, which fails when the batch splits unevenly (a
        # split of 23 rows on two replicas: "AddN ... [12,...] != [11,...]").
        # The first replica's share has the same structure and dtypes.
        if iterator is not None and self._distribute_strategy is not None:
            for _, _, batches in iterator:
                data_batch = tf.nest.map_structure(self._first_replica_share, next(batches))
                break
            iterator = None
        super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def _first_replica_share(self, value):
        if isinstance(value, tf.distribute.DistributedValues):
            return self.distribute_strategy.experimental_local_results(value)[0]
        return value

    def compile_from_config(self, config):
        # Keras skips restoring the compile state of a model whose compile()
        # is overridden; this one only resolves "auto", so restore it as usual.
        self.compile(**keras.saving.deserialize_keras_object(config))

    @property
    def loss_to_monitor(self) -> str:
        """The logged loss that picks the best epoch and stops training early
        (a `val_` prefix for the validation split's)."""
        return "loss"

    def headline(self, report: dict) -> tuple[str, float]:
        """(name, value): the one number of an evaluation report that compares runs.

        What the baselines, the modality ablation and `mmkeras train --seeds`
        compare; every report `evaluate_dataset` returns names it as `headline`.
        """
        raise NotImplementedError

    def serving_outputs(self, predictions: tf.Tensor) -> dict[str, tf.Tensor]:
        """The serving signature's outputs (a dict of tensors) for a batch of predictions."""
        raise NotImplementedError

    def decode(self, predictions: np.ndarray) -> dict[str, np.ndarray]:
        """Predictions to outputs in the target's units, as NumPy arrays by name."""
        outputs = self.serving_outputs(tf.convert_to_tensor(predictions))
        return {name: np.asarray(value) for name, value in outputs.items()}

    def prediction_columns(self, predictions: np.ndarray) -> list[dict[str, str]]:
        """One dict of CSV columns (strings) per row, for `mmkeras predict`."""
        raise NotImplementedError

    def export_archive(self) -> keras.export.ExportArchive:
        """A `keras.export.ExportArchive` with this task's serving signatures."""
        raise NotImplementedError

    def documented_inputs(self) -> dict[str, list[str]]:
        """{signature: [raw input names]} of the raw-input signatures, as documented."""
        raise NotImplementedError

    def parity_cases(self, sample) -> list[ParityCase]:
        """ParityCases on a RowSample: what the exported SavedModel must reproduce."""
        raise NotImplementedError

    def evaluate_dataset(self, dataset: tf.data.Dataset) -> Evaluation:
        """An Evaluation of the rows of `dataset` (from `make_dataset`)."""
        raise NotImplementedError

    def epoch_summaries(self, sample, predictions: np.ndarray) -> EpochSummaries:
        """EpochSummaries for a RowSample and this task's predictions on it."""
        raise NotImplementedError

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "preprocessor": keras.layers.serialize(self.preprocessor) if self.preprocessor else None,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if config.get("preprocessor"):
            config["preprocessor"] = keras.layers.deserialize(config["preprocessor"])
        return cls(**config)

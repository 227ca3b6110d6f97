"""The `train:` section: epochs, optimizer, schedule, precision and distribution."""

import dataclasses

from mmkeras.spec.fields import positive_number, require

STRATEGIES = ("auto", "default", "mirrored", "multi_worker")
MIXED_PRECISION = ("auto", "on", "off", "float16", "bfloat16")
SCHEDULES = ("constant", "cosine", "exponential")
# Targets whose training labels `label_smoothing` can soften.
SMOOTHABLE_TARGETS = ("categorical", "binary", "multilabel", "sequence")
# Settings whose value depends on the data are written "auto" and resolved by
# `mmkeras.training.defaults` when a run starts; the run folder's spec.yaml
# holds the values used.
AUTO = "auto"


@dataclasses.dataclass
class TrainSpec:
    """How to train: epochs, optimizer, schedule, callbacks and distribution.

    The global batch size is `data.batch_size` (it shapes the pipeline).

    Args:
        epochs: int. Passes over the training split.
        optimizer: str. A Keras optimizer name (adamw, adam, sgd, ...).
        learning_rate: float. Peak learning rate (reached after the warm-up).
        weight_decay: float. Decoupled weight decay (any optimizer; 0 for none).
        schedule: str. "constant" (after the warm-up), "cosine" (decay to 0
            over the run) or "exponential" (x0.5 every `epochs / 4` epochs).
            Constant is the default: with early stopping a run rarely lasts
            its planned epochs, and in short runs a decay to 0 leaves the
            model undertrained (measured in the README).
        warmup_epochs: float or "auto". Linear warm-up before the schedule;
            "auto" is a tenth of the run, at most one epoch.
        early_stopping_patience: int, None or "auto". Stop after this many
            epochs without a better validation loss (`restore_best_weights`
            decides which weights the run ends on); None never stops early;
            "auto" is `AUTO_PATIENCE` when there is validation data.
        restore_best_weights: bool. With validation data, end the run on the
            weights of its best epoch (lowest validation loss) rather than
            its last; `model.keras`, `evaluate` and `export` then use them.
        class_weight: str, dict or None. "auto" weights classes by inverse
            frequency when the training split is imbalanced (largest class
            at least `IMBALANCE_RATIO` times the smallest), "balanced"
            always does, None never; or `{label: weight}`. The validation
            loss, which picks the best epoch and stops early, is weighed
            the same way.
        mixed_precision: str. "auto" (16-bit compute on a GPU that has fast
            16-bit math: bfloat16 from compute capability 8.0, float16 from
            7.0; float32 elsewhere), "on" (float16), "float16",
            "bfloat16" or "off". Variables and outputs stay float32.
        strategy: str. "auto", "default", "mirrored" or "multi_worker".
        label_smoothing: float. From 0 (none, the default) to below 1: the
            training target of a categorical, binary, multi-label or caption
            target keeps `1 - label_smoothing` on the true class (token) and
            spreads the rest over every class, so the model is not pushed to
            certainty on noisy labels.
        seed: int. Seeds weights, dropout and the pipeline.
        tensorboard_examples: int. Validation rows shown each epoch.
        profile_batches: list or None. `[first, last]` batches to profile.
    """

    epochs: int = 10
    optimizer: str = "adamw"
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    schedule: str = "constant"
    warmup_epochs: float | str = AUTO
    early_stopping_patience: int | str | None = AUTO
    restore_best_weights: bool = True
    class_weight: object | None = AUTO
    mixed_precision: str = "auto"
    strategy: str = "auto"
    label_smoothing: float = 0.0
    seed: int = 1337
    tensorboard_examples: int = 16
    profile_batches: list | None = None
    where: str = dataclasses.field(default="train", repr=False, compare=False)

    def __post_init__(self):
        positive_number(self.epochs, self.where, "epochs")
        positive_number(self.learning_rate, self.where, "learning_rate")
        require(self.schedule in SCHEDULES, self.where, f"`schedule` must be one of {', '.join(SCHEDULES)}.")
        require(
            self.strategy in STRATEGIES, self.where, f"`strategy` must be one of {', '.join(STRATEGIES)}."
        )
        require(
            self.mixed_precision in MIXED_PRECISION,
            self.where,
            f"`mixed_precision` must be one of {', '.join(MIXED_PRECISION)}.",
        )
        require(
            self.class_weight in (None, AUTO, "balanced") or isinstance(self.class_weight, dict),
            self.where,
            "`class_weight` must be auto, balanced, null or a mapping {label: weight}.",
        )
        require(
            isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0,
            self.where,
            f"`weight_decay` must be a number >= 0, got {self.weight_decay!r}.",
        )
        require(
            self.warmup_epochs == AUTO
            or (isinstance(self.warmup_epochs, (int, float)) and self.warmup_epochs >= 0),
            self.where,
            f"`warmup_epochs` must be auto or a number >= 0, got {self.warmup_epochs!r}.",
        )
        require(
            isinstance(self.label_smoothing, (int, float))
            and not isinstance(self.label_smoothing, bool)
            and 0 <= self.label_smoothing < 1,
            self.where,
            f"`label_smoothing` must be a number from 0 to below 1, got {self.label_smoothing!r}.",
        )
        self.label_smoothing = float(self.label_smoothing)
        patience = self.early_stopping_patience
        require(
            patience in (None, AUTO) or (isinstance(patience, int) and patience > 0),
            self.where,
            f"`early_stopping_patience` must be auto, null or a whole number > 0, got {patience!r}.",
        )
        require(
            self.profile_batches is None
            or (isinstance(self.profile_batches, list) and len(self.profile_batches) == 2),
            self.where,
            "`profile_batches` must be [first, last], e.g. [10, 20].",
        )

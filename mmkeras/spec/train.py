"""The `train:` section: epochs, optimizer, schedule, precision and distribution."""

import dataclasses

from mmkeras.spec.fields import positive_number, require

STRATEGIES = ("auto", "default", "mirrored", "multi_worker")
MIXED_PRECISION = ("auto", "on", "off", "float16", "bfloat16")
SCHEDULES = ("constant", "cosine", "exponential")


@dataclasses.dataclass
class TrainSpec:
    """How to train: epochs, optimizer, schedule, callbacks and distribution.

    The global batch size is `data.batch_size` (it shapes the pipeline).

    Args:
        epochs: int. Passes over the training split.
        optimizer: str. A Keras optimizer name (adam, adamw, sgd, ...).
        learning_rate: float. Initial learning rate.
        schedule: str. "constant", "cosine" (decay to 0 over the run) or
            "exponential" (x0.5 every `epochs / 4` epochs).
        warmup_epochs: float. Linear warm-up before the schedule.
        early_stopping_patience: int or None. Stop after this many epochs
            without a better validation loss; None never stops early.
        class_weight: str, dict or None. "auto" weights classes by inverse
            frequency; or `{label: weight}`.
        mixed_precision: str. "auto" (16-bit compute on a GPU that has fast
            16-bit math: bfloat16 from compute capability 8.0, float16 from
            7.0; float32 elsewhere), "on" (float16), "float16",
            "bfloat16" or "off". Variables and outputs stay float32.
        strategy: str. "auto", "default", "mirrored" or "multi_worker".
        seed: int. Seeds weights, dropout and the pipeline.
        tensorboard_examples: int. Validation rows shown each epoch.
        profile_batches: list or None. `[first, last]` batches to profile.
    """

    epochs: int = 10
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    early_stopping_patience: int | None = None
    class_weight: object | None = None
    mixed_precision: str = "auto"
    strategy: str = "auto"
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
            self.class_weight in (None, "auto") or isinstance(self.class_weight, dict),
            self.where,
            "`class_weight` must be auto or a mapping {label: weight}.",
        )
        require(
            self.profile_batches is None
            or (isinstance(self.profile_batches, list) and len(self.profile_batches) == 2),
            self.where,
            "`profile_batches` must be [first, last], e.g. [10, 20].",
        )

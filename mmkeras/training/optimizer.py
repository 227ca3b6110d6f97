"""The optimizer and learning-rate schedule of a `train:` section."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="mmkeras")
class WarmUp(keras.optimizers.schedules.LearningRateSchedule):
    """A linear ramp from 0 to `peak` over `warmup_steps`, then `schedule`
    (counted from the end of the ramp).

    Args:
        schedule: LearningRateSchedule or float. What follows the ramp; its
            value at step 0 should be `peak`.
        warmup_steps: int. Length of the ramp.
        peak: float. The rate the ramp reaches.
    """

    def __init__(self, schedule, warmup_steps, peak):
        self.schedule = schedule
        self.warmup_steps = warmup_steps
        self.peak = peak

    def __call__(self, step):
        step = ops.cast(step, "float32")
        ramp = self.peak * (step + 1.0) / float(self.warmup_steps)
        after = ops.maximum(step - float(self.warmup_steps), 0.0)
        rest = self.schedule(after) if callable(self.schedule) else ops.cast(self.schedule, "float32")
        return ops.where(step < float(self.warmup_steps), ramp, rest)

    def get_config(self):
        schedule = self.schedule
        if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
            schedule = keras.saving.serialize_keras_object(schedule)
        return {"schedule": schedule, "warmup_steps": self.warmup_steps, "peak": self.peak}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config["schedule"], dict):
            config["schedule"] = keras.saving.deserialize_keras_object(config["schedule"])
        return cls(**config)


def learning_rate_schedule(train, steps_per_epoch):
    """A constant rate, or a cosine / exponential decay, after a linear warm-up."""
    total = max(1, int(train.epochs * steps_per_epoch))
    warmup = int(train.warmup_epochs * steps_per_epoch)
    after_warmup = max(1, total - warmup)
    if train.schedule == "cosine":
        schedule = keras.optimizers.schedules.CosineDecay(train.learning_rate, decay_steps=after_warmup)
    elif train.schedule == "exponential":
        schedule = keras.optimizers.schedules.ExponentialDecay(
            train.learning_rate, decay_steps=max(1, after_warmup // 4), decay_rate=0.5
        )
    else:
        schedule = train.learning_rate
    return WarmUp(schedule, warmup, train.learning_rate) if warmup else schedule


def build_optimizer(train, steps_per_epoch):
    """A fresh optimizer of the named kind with the run's schedule and decay."""
    kind = type(keras.optimizers.get(train.optimizer))
    return kind(
        learning_rate=learning_rate_schedule(train, steps_per_epoch),
        weight_decay=float(train.weight_decay),
    )

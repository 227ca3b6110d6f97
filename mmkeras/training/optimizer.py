"""The optimizer and learning-rate schedule of a `train:` section."""

import keras


def learning_rate_schedule(train, steps_per_epoch):
    """A constant rate, or a cosine / exponential decay, after a linear warm-up."""
    total = max(1, int(train.epochs * steps_per_epoch))
    warmup = int(train.warmup_epochs * steps_per_epoch)
    if train.schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(
            0.0 if warmup else train.learning_rate,
            decay_steps=max(1, total - warmup),
            warmup_target=train.learning_rate if warmup else None,
            warmup_steps=warmup,
        )
    if train.schedule == "exponential":
        return keras.optimizers.schedules.ExponentialDecay(
            train.learning_rate, decay_steps=max(1, total // 4), decay_rate=0.5
        )
    return train.learning_rate


def build_optimizer(train, steps_per_epoch):
    """A fresh optimizer of the named kind with the run's schedule."""
    kind = type(keras.optimizers.get(train.optimizer))
    return kind(learning_rate=learning_rate_schedule(train, steps_per_epoch))

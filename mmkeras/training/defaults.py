"""What a run's `auto` training settings become, given its data.

The spec a run folder keeps (`spec.yaml`) holds these resolved values, so a
reader sees what was used and the same spec trains the same way again.
"""

import dataclasses

from mmkeras.spec.train import AUTO
from mmkeras.tasks.classifier import IMBALANCE_RATIO, LabelEncoder

# Epochs without a better validation loss before training stops. Validation
# curves of small data sets wander by a few epochs before they turn.
AUTO_PATIENCE = 3
# Warm-up: a tenth of the run, at most one epoch. Adam's early steps, taken on
# second-moment estimates from a handful of batches, are the ones that diverge.
WARMUP_FRACTION = 0.1
MAX_WARMUP_EPOCHS = 1.0


def resolve_training_defaults(spec, preprocessor, has_validation):
    """The spec with its `train:` section's `auto` values replaced.

    Args:
        spec: Spec. As written by the user.
        preprocessor: Preprocessor. Adapted on the training split; its target
            encoder knows the class counts.
        has_validation: bool. Whether the run has validation data.

    Returns:
        A new Spec: `warmup_epochs` a number, `early_stopping_patience` a
        number or None, `class_weight` a `{label: weight}` mapping or None.
    """
    train = spec.train
    changes = {}
    if train.warmup_epochs == AUTO:
        changes["warmup_epochs"] = round(min(MAX_WARMUP_EPOCHS, WARMUP_FRACTION * train.epochs), 3)
    if train.early_stopping_patience == AUTO:
        changes["early_stopping_patience"] = AUTO_PATIENCE if has_validation else None
    if train.class_weight in (AUTO, "balanced"):
        changes["class_weight"] = _class_weights(train.class_weight, preprocessor.target)
    return dataclasses.replace(spec, train=dataclasses.replace(train, **changes))


def _class_weights(setting, target):
    """Inverse class frequencies by label, or None where they do not apply."""
    if not isinstance(target, LabelEncoder) or target.mode == "multilabel":
        return None
    if setting == AUTO and target.imbalance < IMBALANCE_RATIO:
        return None
    weights = target.inverse_frequency_weights()
    return {label: round(weights[index], 4) for index, label in enumerate(target.labels)}

"""How each modality learns (its overfitting-to-generalisation ratio per
epoch), Gradient-Blending, which weighs the modalities' heads by it,
switching off a modality that only fits the training rows, and freezing an
encoder that has stopped generalising."""

import logging
import math

import keras

from mmkeras.tasks.fusion_task import FUSED

logger = logging.getLogger("mmkeras")


def overfitting_to_generalization(first, now):
    """OGR between two epochs, from each one's (training loss, validation loss).

    Gradient-Blending (Wang, Tran and Feiszli, "What Makes Training
    Multi-Modal Classification Networks Hard?", CVPR 2020) calls the gap
    between validation and training loss overfitting (O) and the fall of
    the validation loss generalisation (G); OGR = |ΔO / ΔG|. Small is
    healthy: what the head gained on the training rows it also gained on
    unseen ones. NaN while the validation loss is no lower than at `first`:
    the head has not generalised at all yet (or has stopped and turned).
    """
    (train_then, val_then), (train_now, val_now) = first, now
    generalization = val_then - val_now
    if not generalization > 0:
        return math.nan
    overfitting = (val_now - train_now) - (val_then - train_then)
    return abs(overfitting / generalization)


def head_losses(logs, heads):
    """{head: (training loss, validation loss)} from one epoch's logs (or
    one row of `history.csv`)."""
    return {head: (float(logs[f"{head}_loss"]), float(logs[f"val_{head}_loss"])) for head in heads}


class ModalityDynamics(keras.callbacks.Callback):
    """Adds `<head>_ogr` to each epoch's logs, for the fused head and each
    unimodal head, measured from the run's first epoch.

    Placed before the CSV logger and TensorBoard, which then record it. The
    training losses are Keras's running means over the epoch (dropout on),
    the usual stand-in for the training-split loss the paper uses.

    Args:
        heads: list of str. Head names: their losses are logged as
            `<head>_loss` and `val_<head>_loss`.
        first_epoch: dict or None. A resumed run's first logged epoch
            (`history.csv`'s first row), so its window keeps its start.
    """

    def __init__(self, heads, first_epoch=None):
        super().__init__()
        self.heads = list(heads)
        self.first = head_losses(first_epoch, self.heads) if first_epoch else None

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or f"val_{self.heads[0]}_loss" not in logs:
            return
        now = head_losses(logs, self.heads)
        if self.first is None:
            self.first = now
        for head in self.heads:
            # Logged every epoch, NaN or not: the CSV logger fixes its columns at the first.
            logs[f"{head}_ogr"] = overfitting_to_generalization(self.first[head], now[head])


# The most a blended head may weigh against the fused head: with little
# overfitting in a window its raw weight grows without bound.
MAX_HEAD_FACTOR = 3.0
# Overfitting below this share of a window's generalisation counts as this
# share, so a head that did not overfit at all gets a large weight, not an
# infinite one.
MIN_OVERFITTING_SHARE = 0.1


def blend_weights(then, now):
    """Gradient-Blending's weight per head from two epochs' losses.

    Args:
        then, now: dict. Head name to (training loss, validation loss) at
            the window's first and last epoch.

    Returns:
        {head: weight}, summing to 1: ΔG / ΔO² normalised (Wang et al.,
        2020), 0 for a head whose validation loss did not fall; None when
        no head's fell.
    """
    raw = {}
    for head in now:
        (train_then, val_then), (train_now, val_now) = then[head], now[head]
        generalization = val_then - val_now
        if not generalization > 0:
            raw[head] = 0.0
            continue
        overfitting = (val_now - train_now) - (val_then - train_then)
        raw[head] = generalization / max(overfitting, MIN_OVERFITTING_SHARE * generalization) ** 2
    total = sum(raw.values())
    return {head: weight / total for head, weight in raw.items()} if total > 0 else None


class GradientBlending(keras.callbacks.Callback):
    """Re-estimates how much each unimodal head trains its encoder, every
    `every` epochs, from the heads' losses over those epochs.

    Gradient-Blending weighs the fused loss and each unimodal loss by ΔG/ΔO²
    (`blend_weights`). An encoder's gradient is the fused head's plus its
    own head's, so with an Adam-style optimizer only their ratio matters:
    each head's `GradientScale` is set to its weight over the fused head's
    (at most `MAX_HEAD_FACTOR`). Until the first estimate the factors stay
    at `model.balance.head_weight`. Logs `<feature>_head_factor` every epoch.

    Args:
        scales: dict. Feature to the GradientScale layer on its head's input.
        every: int. Epochs per estimate window.
        history: dict or None. A resumed run's history (`RunFolder.read_history`).
    """

    def __init__(self, scales, every=2, history=None):
        super().__init__()
        self.scales = dict(scales)
        self.heads = [FUSED, *self.scales]
        self.every = every
        self.losses = []
        for index in range(len((history or {}).get(f"val_{FUSED}_loss", []))):
            row = {name: values[index] for name, values in history.items()}
            self.losses.append(head_losses(row, self.heads))

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or f"val_{FUSED}_loss" not in logs:
            return
        self.losses.append(head_losses(logs, self.heads))
        if len(self.losses) > self.every and (len(self.losses) - 1) % self.every == 0:
            weights = blend_weights(self.losses[-1 - self.every], self.losses[-1])
            if weights is not None:
                for feature, layer in self.scales.items():
                    fused = weights[FUSED]
                    factor = weights[feature] / fused if fused > 0 else MAX_HEAD_FACTOR
                    layer.scale.assign(min(factor, MAX_HEAD_FACTOR) if weights[feature] > 0 else 0.0)
        for feature, layer in self.scales.items():
            logs[f"{feature}_head_factor"] = float(layer.scale.numpy())


# A head has learned its training rows when its training loss is below this
# share of the constant prediction's loss, and predicts the validation rows
# no better than the constant when its validation loss is above this share
# (a little below 1: a head that learned nothing still wobbles around it).
LEARNED_SHARE = 0.9
NO_BETTER_SHARE = 0.98
# A head whose validation loss has once been below this share of the
# constant's carries signal: when it climbs back above the constant it is
# overfitting, which early stopping handles. A shortcut never gets there.
BEATEN_SHARE = 0.9
# Epochs running a head must look like a shortcut before its modality is
# switched off: one epoch can be a fluke of batch statistics.
SHORTCUT_EPOCHS = 2
# The suffix of each feature's logged switch: `<feature>_on`, 1 or 0.
SWITCHED_ON = "_on"


class SwitchOff(keras.callbacks.Callback):
    """Switches a modality off for good when it looks like a shortcut.

    A modality whose head has learned the training rows (training loss below
    `LEARNED_SHARE` of the constant prediction's) but predicts the validation
    split no better than that constant (validation loss above
    `NO_BETTER_SHARE` of it) and worse than the epoch before,
    `SHORTCUT_EPOCHS` epochs running, and never did clearly better (below
    `BEATEN_SHARE` of it), carries nothing that holds beyond the training
    data: the fused model would only learn to trust it. (A real modality
    can sit at the constant on validation for an epoch or two while its
    batch statistics settle, but its validation loss is falling by then; a
    real one with noisy, class-weighted validation losses can climb above
    the constant after beating it.) It is switched off
    (`MultimodalBackbone.switch_off`) and the fused model trains on without
    it. The last modality on stays on. Logs `<feature>_on` (1 or 0) every
    epoch.

    Args:
        backbone: MultimodalBackbone.
        constant_loss: float. The loss of the constant prediction on the
            validation split (`FusionTask.constant_loss`).
        on_switch_off: callable or None. Called after a switch: the best
            checkpoint and early stopping start over there, as the model
            they compared against read the shortcut.
        history: dict or None. A resumed run's history: the heads'
            validation losses so far.
    """

    def __init__(self, backbone, constant_loss, on_switch_off=None, history=None):
        super().__init__()
        self.backbone = backbone
        self.constant_loss = constant_loss
        self.on_switch_off = on_switch_off
        self.shortcut_epochs = dict.fromkeys(backbone.feature_names, 0)
        self.previous_validation = {}
        self.best_validation = {
            feature: min(history[f"val_{feature}_loss"])
            for feature in backbone.feature_names
            if (history or {}).get(f"val_{feature}_loss")
        }

    def on_epoch_end(self, epoch, logs=None):
        features = self.backbone.feature_names
        if logs is None or f"val_{features[0]}_loss" not in logs:
            return
        off = set(self.backbone.switched_off)
        for feature, (train, validation) in head_losses(logs, features).items():
            best = self.best_validation[feature] = min(
                self.best_validation.get(feature, math.inf), validation
            )
            looks_like_shortcut = (
                validation > self.previous_validation.get(feature, math.inf)
                and validation >= NO_BETTER_SHARE * self.constant_loss
                and train <= LEARNED_SHARE * self.constant_loss
                and best >= BEATEN_SHARE * self.constant_loss
            )
            self.previous_validation[feature] = validation
            self.shortcut_epochs[feature] = self.shortcut_epochs[feature] + 1 if looks_like_shortcut else 0
            if (
                feature not in off
                and self.shortcut_epochs[feature] >= SHORTCUT_EPOCHS
                and len(off) < len(features) - 1
            ):
                self._switch_off(feature, train, validation)
                off.add(feature)
        for feature in features:
            logs[feature + SWITCHED_ON] = float(feature not in off)

    def _switch_off(self, feature, train, validation):
        self.backbone.switch_off(feature)
        if self.on_switch_off:
            self.on_switch_off()
        logger.warning(
            "Switched `%s` off: its head fits the training rows (loss %.3f) while its validation "
            "loss (%.3f), no better than a constant prediction's (%.3f), has climbed %d epochs "
            "running; the fused model trains on without it. A column that gives the label away in "
            "the training rows only does this. If `%s` is meant to carry signal, compare its values "
            "in the training and validation rows, or set `model.balance.switch_off: false`.",
            feature,
            train,
            validation,
            self.constant_loss,
            SHORTCUT_EPOCHS,
            feature,
        )


# The suffix of each feature's logged learning state: `<feature>_learns`, 1 or 0.
LEARNS = "_learns"


class EarlyFreezing(keras.callbacks.Callback):
    """Early stopping per modality: an encoder whose unimodal head's
    validation loss has not improved for `patience` epochs is frozen
    (`MultimodalBackbone.freeze`) while the others, the fusion and the
    heads train on.

    The modality that learns fastest usually starts to memorise first; from
    then on its encoder only drags the fused model towards the training
    rows, and the slower modalities still have something to learn. Logs
    `<feature>_learns` (1 or 0) every epoch.

    Args:
        backbone: MultimodalBackbone.
        patience: int. Epochs without a better validation loss.
        history: dict or None. A resumed run's history
            (`RunFolder.read_history`), so the count picks up where it was.
    """

    def __init__(self, backbone, patience, history=None):
        super().__init__()
        self.backbone = backbone
        self.patience = patience
        self.best = dict.fromkeys(backbone.feature_names, math.inf)
        self.wait = dict.fromkeys(backbone.feature_names, 0)
        for feature in backbone.feature_names:
            for value in (history or {}).get(f"val_{feature}_loss", []):
                self._count(feature, float(value))

    def _count(self, feature, validation):
        if validation < self.best[feature]:
            self.best[feature], self.wait[feature] = validation, 0
        else:
            self.wait[feature] += 1

    def on_epoch_end(self, epoch, logs=None):
        features = self.backbone.feature_names
        if logs is None or f"val_{features[0]}_loss" not in logs:
            return
        frozen = set(self.backbone.frozen)
        for feature in features:
            self._count(feature, float(logs[f"val_{feature}_loss"]))
            if feature not in frozen and self.wait[feature] >= self.patience:
                self.backbone.freeze(feature)
                frozen.add(feature)
                logger.info(
                    "Froze the `%s` encoder: its head's validation loss has not improved on %.4f for %d "
                    "epochs; the other modalities and the fusion train on.",
                    feature,
                    self.best[feature],
                    self.wait[feature],
                )
        for feature in features:
            logs[feature + LEARNS] = float(feature not in frozen)

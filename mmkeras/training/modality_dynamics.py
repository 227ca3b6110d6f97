"""How each modality learns (its overfitting-to-generalisation ratio per
epoch) and Gradient-Blending, which weighs the modalities' heads by it."""

import math

import keras

from mmkeras.tasks.fusion_task import FUSED


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

"""How each modality learns: its overfitting-to-generalisation ratio per epoch."""

import math

import keras


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
        self.first = self._losses(first_epoch) if first_epoch else None

    def _losses(self, logs):
        return {head: (float(logs[f"{head}_loss"]), float(logs[f"val_{head}_loss"])) for head in self.heads}

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or f"val_{self.heads[0]}_loss" not in logs:
            return
        now = self._losses(logs)
        if self.first is None:
            self.first = now
        for head in self.heads:
            # Logged every epoch, NaN or not: the CSV logger fixes its columns at the first.
            logs[f"{head}_ogr"] = overfitting_to_generalization(self.first[head], now[head])

"""Callbacks that keep a run's work safe."""

import math
import os

import keras


class NaNGuard(keras.callbacks.Callback):
    """Stops at the first NaN or infinite loss and says which checkpoint is good.

    Keras's own TerminateOnNaN stops silently; this one records where it
    happened, so `train` can fail with a message naming the last good
    checkpoint (written at the end of the last finished epoch) and the usual
    fixes.

    Args:
        last_checkpoint: str. The path of the last-epoch checkpoint.
        dtype_policy: str. The run's Keras dtype policy, named as a possible
            cause when it is a 16-bit one.
    """

    def __init__(self, last_checkpoint, dtype_policy="float32"):
        super().__init__()
        self.last_checkpoint = last_checkpoint
        self.dtype_policy = dtype_policy
        self.failure = None
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.failure = (
                f"the loss became {float(loss)} at epoch {self.epoch + 1}, batch {batch + 1}; "
                f"training stopped. The last good checkpoint is {self.last_checkpoint} "
                "(written at the end of the last finished epoch). Lower train.learning_rate, "
                "add warmup_epochs, or check the data for extreme values."
            )
            if self.dtype_policy != "float32":
                self.failure += (
                    f" The run computes in {self.dtype_policy}: a 16-bit overflow is a possible cause; "
                    "try train.mixed_precision: bfloat16 (float32's range) or off."
                )
            self.model.stop_training = True


def _finite_loss(logs):
    loss = (logs or {}).get("loss")
    return loss is None or math.isfinite(float(loss))


class FiniteModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """ModelCheckpoint that never overwrites a good file with a diverged model.

    When a NaN loss stops an epoch early, Keras still ends the epoch and
    would save the broken weights as `last`; this keeps the previous file.
    """

    def on_epoch_end(self, epoch, logs=None):
        if _finite_loss(logs):
            super().on_epoch_end(epoch, logs)

    def forget_best(self):
        """Starts the search for the best epoch over, its file deleted: the
        model changed (a modality was switched off), so no earlier epoch
        compares with the ones to come."""
        self.best = None
        if os.path.exists(self.filepath):
            os.remove(self.filepath)


class FiniteBackupAndRestore(keras.callbacks.BackupAndRestore):
    """BackupAndRestore that does not back up a diverged model to resume from."""

    def on_epoch_end(self, epoch, logs=None):
        if _finite_loss(logs):
            super().on_epoch_end(epoch, logs)

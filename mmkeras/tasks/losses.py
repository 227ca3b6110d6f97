"""Losses the Keras ones do not cover."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="mmkeras")
class SparseCrossentropy(keras.losses.Loss):
    """Sparse categorical cross-entropy with label smoothing, which Keras'
    own sparse loss lacks: the target puts `1 - label_smoothing` on the true
    class and spreads `label_smoothing` evenly over every class.

    Args:
        label_smoothing: float. From 0 (plain cross-entropy) to below 1.
        from_logits: bool. Whether predictions are logits or probabilities.
        ignore_class: int or None. Targets of this id (padding) count for
            nothing: the loss is the mean over the other positions, as with
            Keras' `SparseCategoricalCrossentropy(ignore_class=...)`.
    """

    def __init__(
        self,
        label_smoothing=0.0,
        from_logits=False,
        ignore_class=None,
        reduction="sum_over_batch_size",
        name="sparse_crossentropy",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.label_smoothing = label_smoothing
        self.from_logits = from_logits
        self.ignore_class = ignore_class

    def call(self, y_true, y_pred):
        y_pred = ops.convert_to_tensor(y_pred)
        y_true = ops.cast(y_true, "int32")
        if len(y_true.shape) == len(y_pred.shape):  # [batch, 1] labels
            y_true = ops.squeeze(y_true, axis=-1)
        if self.from_logits:
            log_probs = ops.log_softmax(y_pred, axis=-1)
        else:
            probabilities = y_pred / ops.sum(y_pred, axis=-1, keepdims=True)
            log_probs = ops.log(ops.clip(probabilities, keras.config.epsilon(), 1.0))
        true = ops.take_along_axis(log_probs, ops.expand_dims(ops.maximum(y_true, 0), -1), axis=-1)[..., 0]
        losses = -((1.0 - self.label_smoothing) * true + self.label_smoothing * ops.mean(log_probs, axis=-1))
        if self.ignore_class is None:
            return losses
        # Scaled so that the mean over every position is the mean over the valid ones.
        valid = ops.cast(ops.not_equal(y_true, self.ignore_class), losses.dtype)
        size = ops.cast(ops.size(valid), losses.dtype)
        return losses * valid * ops.divide_no_nan(size, ops.sum(valid))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "label_smoothing": self.label_smoothing,
                "from_logits": self.from_logits,
                "ignore_class": self.ignore_class,
            }
        )
        return config

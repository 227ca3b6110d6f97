"""Masked mean pooling over a sequence, the pooled vector most encoders return."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="mmkeras")
class MaskedMeanPooling(keras.layers.Layer):
    """Mean over the positions where `mask` is true; zeros when none is.

    Call with `(sequence, mask)`: `sequence` is `[batch, steps, dim]`, `mask`
    is `[batch, steps]` (bool or 0/1). It consumes the mask, so it passes
    none on.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def compute_mask(self, inputs, mask=None):
        return None

    def call(self, inputs):
        sequence, mask = inputs
        weights = ops.expand_dims(ops.cast(mask, sequence.dtype), -1)
        total = ops.sum(sequence * weights, axis=1)
        count = ops.maximum(ops.sum(weights, axis=1), 1.0)
        return total / count

    def compute_output_shape(self, input_shape):
        sequence_shape, _ = input_shape
        return (sequence_shape[0], sequence_shape[2])


@keras.saving.register_keras_serializable(package="mmkeras")
class PaddingMask(keras.layers.Layer):
    """True where token ids are not the padding id 0."""

    def call(self, token_ids):
        return ops.not_equal(token_ids, 0)

    def compute_output_spec(self, token_ids):
        return keras.KerasTensor(token_ids.shape, dtype="bool")


@keras.saving.register_keras_serializable(package="mmkeras")
class FullMask(keras.layers.Layer):
    """An all-true mask for a sequence without padding (image or audio)."""

    def call(self, sequence):
        return ops.ones(ops.shape(sequence)[:2], dtype="bool")

    def compute_output_spec(self, sequence):
        return keras.KerasTensor(sequence.shape[:2], dtype="bool")

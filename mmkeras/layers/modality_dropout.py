"""Dropping whole modalities in training, and masking missing ones at predict time."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="mmkeras")
class ModalityDropout(keras.layers.Layer):
    """Zeroes whole modalities: missing ones always, random ones in training.

    Call with a list of per-modality tensors (`[batch, ...]` each) and a
    `modality_mask` `[batch, num_modalities]` (1 present, 0 missing). In
    training each present modality is also dropped with probability `rate`,
    but a row always keeps at least one of its present modalities, so the
    model learns to answer from whatever it is given.

    Returns the masked tensors and the mask that was applied.

    Args:
        rate: float. Probability of dropping a modality in training.
        seed: int or None. Seed of the random drops.
    """

    def __init__(self, rate=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = rate
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        # Padding masks travel beside the sequences explicitly; Keras's implicit
        # mask stops here.
        self.supports_masking = True

    def compute_mask(self, tensors, modality_mask=None, mask=None):
        return None

    def call(self, tensors, modality_mask, training=None):
        mask = ops.cast(modality_mask, tensors[0].dtype)
        if training and self.rate > 0:
            keep = ops.cast(
                keras.random.uniform(ops.shape(mask), seed=self.seed_generator) >= self.rate,
                mask.dtype,
            )
            dropped = mask * keep
            # Rows that would lose every modality keep what they had.
            empty = ops.sum(dropped, axis=-1, keepdims=True) == 0
            mask = ops.where(empty, mask, dropped)
        outputs = []
        for index, tensor in enumerate(tensors):
            flag = mask[:, index]
            flag = ops.reshape(flag, (-1,) + (1,) * (len(tensor.shape) - 1))
            outputs.append(tensor * flag)
        return outputs, mask

    def compute_output_spec(self, tensors, modality_mask, training=None):
        outputs = [keras.KerasTensor(t.shape, dtype=t.dtype) for t in tensors]
        return outputs, keras.KerasTensor(modality_mask.shape, dtype=tensors[0].dtype)

    def get_config(self):
        config = super().get_config()
        config.update({"rate": self.rate, "seed": self.seed})
        return config

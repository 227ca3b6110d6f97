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

    A modality can also be switched off for good (`switch_off`): it is then
    treated as missing in every row, in training, at predict time and in
    the exported model, which still takes its input but ignores it. The
    switch is a non-trainable weight, saved with the model.

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

    def build(self, tensors_shape, modality_mask_shape):
        # 1 for a modality the fusion reads, 0 for one switched off.
        self.switched_on = self.add_weight(
            shape=(modality_mask_shape[-1],),
            initializer="ones",
            trainable=False,
            name="switched_on",
            dtype="float32",
        )

    def switch_off(self, index):
        """Masks modality `index` out of every row from now on."""
        self.switched_on.assign(self.switched_on * (1.0 - ops.one_hot(index, self.switched_on.shape[0])))

    def compute_mask(self, tensors, modality_mask=None, mask=None):
        return None

    def call(self, tensors, modality_mask, training=None):
        mask = ops.cast(modality_mask, tensors[0].dtype) * ops.cast(self.switched_on, tensors[0].dtype)
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

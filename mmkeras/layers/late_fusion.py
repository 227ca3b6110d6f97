"""Late (decision-level) fusion: one prediction per modality, then combined."""

import keras
from keras import ops

from mmkeras.layers.fusion import Fusion


@keras.saving.register_keras_serializable(package="mmkeras")
class LateFusion(Fusion):
    """A small head per modality; their logits are averaged or weighted.

    Returns logits (before the task's activation). Missing modalities (0 in
    `modality_mask`) are left out of the average.

    Args:
        num_outputs: int. Logits per head (classes, labels or 1).
        hidden_dims: list of int. Hidden layers of each modality's head.
        combine: str. "mean", or "learned": softmax weights over modalities.
        dropout_rate: float. Dropout after each hidden layer.
    """

    takes_modality_mask = True
    fuses_decisions = True

    def __init__(self, num_outputs, hidden_dims=(), combine="mean", dropout_rate=0.0, **kwargs):
        super().__init__(**kwargs)
        if combine not in ("mean", "learned"):
            raise ValueError(f"combine must be `mean` or `learned`, got {combine!r}.")
        self.num_outputs = num_outputs
        self.hidden_dims = list(hidden_dims)
        self.combine = combine
        self.dropout_rate = dropout_rate

    def build(self, inputs_shape, modality_mask_shape=None):
        self.heads = []
        for index, shape in enumerate(inputs_shape):
            layers = []
            for depth, width in enumerate(self.hidden_dims):
                layers += [
                    keras.layers.Dense(width, activation="relu", name=f"head_{index}_dense_{depth}"),
                    keras.layers.Dropout(self.dropout_rate),
                ]
            layers.append(keras.layers.Dense(self.num_outputs, name=f"head_{index}_logits"))
            head = keras.Sequential(layers, name=f"head_{index}")
            head.build(shape)
            self.heads.append(head)
        self.modality_logits = self.add_weight(
            shape=(len(inputs_shape),),
            initializer="zeros",
            trainable=self.combine == "learned",
            name="modality_logits",
        )

    def call(self, inputs, modality_mask=None, training=None):
        logits = ops.stack([head(x, training=training) for head, x in zip(self.heads, inputs)], axis=1)
        weights = ops.softmax(self.modality_logits)[None, :]
        if modality_mask is not None:
            weights = weights * ops.cast(modality_mask, weights.dtype)
        # No epsilon (1e-9 is 0 in float16): a row with nothing present gets zeros.
        weights = ops.divide_no_nan(weights, ops.sum(weights, axis=1, keepdims=True))
        return ops.sum(logits * ops.expand_dims(weights, -1), axis=1)

    def compute_output_shape(self, inputs_shape, modality_mask_shape=None):
        return (inputs_shape[0][0], self.num_outputs)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_outputs": self.num_outputs,
                "hidden_dims": self.hidden_dims,
                "combine": self.combine,
                "dropout_rate": self.dropout_rate,
            }
        )
        return config

"""Gated multimodal unit (Arevalo et al., 2017)."""

import keras
from keras import ops

from mmkeras.layers.fusion import Fusion


@keras.saving.register_keras_serializable(package="mmkeras")
class GatedFusion(Fusion):
    """GMU: each modality proposes `tanh(W_m x_m)`; gates decide the mix.

    The gates come from all modalities together, one per modality and hidden
    unit, normalised across modalities with a softmax. With two modalities
    that is exactly the GMU's `z` and `1 - z` with `z = sigmoid(.)`; with more
    it is its natural extension. Gates of missing modalities (0 in
    `modality_mask`) are forced to 0. Call with `return_gates=True` to get
    `(fused, gates)`, gates shaped `[batch, num_modalities, hidden_dim]`.

    Args:
        hidden_dim: int. Width of the fused vector.
    """

    takes_modality_mask = True

    def __init__(self, hidden_dim=128, **kwargs):
        super().__init__(**kwargs)
        self.hidden_dim = hidden_dim
        # Keras's masked softmax picks its large negative by dtype: a fixed
        # 1e9 is inf in float16, and inf x 0 turned the gates into NaN.
        self.softmax = keras.layers.Softmax(axis=1, dtype=self.dtype_policy)

    def build(self, input_shapes):
        self.num_modalities = len(input_shapes)
        self.proposals = [
            keras.layers.Dense(self.hidden_dim, activation="tanh", name=f"proposal_{i}")
            for i in range(self.num_modalities)
        ]
        for proposal, shape in zip(self.proposals, input_shapes):
            proposal.build(shape)
        self.gate = keras.layers.Dense(self.hidden_dim * self.num_modalities, name="gate")
        self.gate.build((None, sum(shape[-1] for shape in input_shapes)))

    def call(self, inputs, modality_mask=None, return_gates=False):
        proposals = ops.stack([p(x) for p, x in zip(self.proposals, inputs)], axis=1)
        logits = ops.reshape(
            self.gate(ops.concatenate(inputs, axis=-1)), (-1, self.num_modalities, self.hidden_dim)
        )
        present = None if modality_mask is None else ops.expand_dims(ops.cast(modality_mask, "bool"), -1)
        gates = self.softmax(logits, mask=present)
        fused = ops.sum(gates * proposals, axis=1)
        return (fused, gates) if return_gates else fused

    def compute_output_spec(self, inputs, modality_mask=None, return_gates=False):
        batch = inputs[0].shape[0]
        fused = keras.KerasTensor((batch, self.hidden_dim), dtype=self.compute_dtype)
        if not return_gates:
            return fused
        return fused, keras.KerasTensor((batch, len(inputs), self.hidden_dim), dtype=self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update({"hidden_dim": self.hidden_dim})
        return config

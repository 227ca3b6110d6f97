"""Tensor fusion (Zadeh et al., 2017) and its low-rank factorisation (Liu et al., 2018)."""

import keras
from keras import ops

from mmkeras.layers.fusion import Fusion, modality_projections, project


def _with_one(x):
    """Appends a constant 1, so the product keeps every unimodal term."""
    return ops.concatenate([x, ops.ones_like(x[:, :1])], axis=-1)


@keras.saving.register_keras_serializable(package="mmkeras")
class TensorFusion(Fusion):
    """The flattened outer product of `[h_m; 1]` over the modalities.

    Output width is the product of `(d_m + 1)`: it holds every unimodal,
    bimodal and trimodal interaction. That product grows fast (three
    256-wide encodings give 16.9 M values per row), so, as in the paper,
    each modality is first projected to a small vector.

    Args:
        projection_dim: int or None. Project each modality to this width
            (Dense + ReLU) before the product; None multiplies the encodings
            as they are.
    """

    def __init__(self, projection_dim=None, **kwargs):
        super().__init__(**kwargs)
        self.projection_dim = projection_dim
        self.projections = []

    def build(self, input_shapes):
        self.projections = modality_projections(input_shapes, self.projection_dim)

    def call(self, inputs):
        inputs = project(self.projections, inputs)
        product = _with_one(inputs[0])
        for x in inputs[1:]:
            product = ops.einsum("bi,bj->bij", product, _with_one(x))
            product = ops.reshape(product, (ops.shape(product)[0], -1))
        return product

    def compute_output_shape(self, input_shapes):
        width = 1
        for shape in input_shapes:
            width *= (self.projection_dim or shape[-1]) + 1
        return (input_shapes[0][0], width)

    def get_config(self):
        config = super().get_config()
        config.update({"projection_dim": self.projection_dim})
        return config


@keras.saving.register_keras_serializable(package="mmkeras")
class LowRankTensorFusion(Fusion):
    """The tensor-fusion layer's weight as a sum of `rank` products of factors.

    `output = sum_r w_r * prod_m ([h_m; 1] @ W_m[r]) + b`, which equals a
    dense layer on the full outer product whose weight tensor is
    `sum_r w_r * W_1[r] (x) W_2[r] (x) ...`, at a cost linear in the number
    of modalities.

    Args:
        output_dim: int. Width of the fused vector.
        rank: int. Number of factor products.
    """

    def __init__(self, output_dim=64, rank=4, **kwargs):
        super().__init__(**kwargs)
        self.output_dim = output_dim
        self.rank = rank

    def build(self, input_shapes):
        self.factors = [
            self.add_weight(
                shape=(self.rank, shape[-1] + 1, self.output_dim),
                initializer="glorot_normal",
                name=f"factor_{i}",
            )
            for i, shape in enumerate(input_shapes)
        ]
        self.rank_weights = self.add_weight(
            shape=(self.rank,), initializer="glorot_normal", name="rank_weights"
        )
        self.bias = self.add_weight(shape=(self.output_dim,), initializer="zeros", name="bias")

    def call(self, inputs):
        product = None
        for x, factor in zip(inputs, self.factors):
            projected = ops.einsum("bi,rio->rbo", _with_one(x), factor)
            product = projected if product is None else product * projected
        return ops.einsum("r,rbo->bo", self.rank_weights, product) + self.bias

    def compute_output_shape(self, input_shapes):
        return (input_shapes[0][0], self.output_dim)

    def get_config(self):
        config = super().get_config()
        config.update({"output_dim": self.output_dim, "rank": self.rank})
        return config

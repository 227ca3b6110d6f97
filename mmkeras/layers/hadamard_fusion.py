"""Multimodal low-rank bilinear pooling (MLB; Kim et al., 2017): a product of projections."""

import keras

from mmkeras.layers.fusion import Fusion


@keras.saving.register_keras_serializable(package="mmkeras")
class HadamardFusion(Fusion):
    """Each modality projected to `hidden_dim` (Dense + tanh), and the
    projections multiplied element-wise.

    Every output is a product of all modalities, with no additive path: a
    model that must compare what two modalities say (is the colour the
    question names the one in the picture?) gets a gradient towards
    aligning them from the first step, where a concatenation lets it settle
    on what either modality predicts alone. Each output unit is a rank-one
    bilinear form of the encodings, the sum over units a low-rank one.

    Args:
        hidden_dim: int. Width of the projections and of the output.
    """

    def __init__(self, hidden_dim=256, **kwargs):
        super().__init__(**kwargs)
        self.hidden_dim = hidden_dim
        self.projections = []

    def build(self, input_shapes):
        self.projections = []
        for index, shape in enumerate(input_shapes):
            projection = keras.layers.Dense(self.hidden_dim, activation="tanh", name=f"projection_{index}")
            projection.build(shape)
            self.projections.append(projection)

    def call(self, inputs):
        product = self.projections[0](inputs[0])
        for projection, x in zip(self.projections[1:], inputs[1:]):
            product = product * projection(x)
        return product

    def compute_output_shape(self, input_shapes):
        return (input_shapes[0][0], self.hidden_dim)

    def get_config(self):
        config = super().get_config()
        config.update({"hidden_dim": self.hidden_dim})
        return config

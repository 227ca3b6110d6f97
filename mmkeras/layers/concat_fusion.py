"""Feature-level fusion by concatenation."""

import keras
from keras import ops

from mmkeras.layers.fusion import Fusion, modality_projections, project


@keras.saving.register_keras_serializable(package="mmkeras")
class ConcatFusion(Fusion):
    """Concatenates the modalities' vectors, optionally projected to one width.

    Args:
        projection_dim: int or None. Project each modality to this width
            (Dense + ReLU) first, so no modality dominates by sheer width.
    """

    def __init__(self, projection_dim=None, **kwargs):
        super().__init__(**kwargs)
        self.projection_dim = projection_dim
        self.projections = []

    def build(self, input_shapes):
        self.projections = modality_projections(input_shapes, self.projection_dim)

    def call(self, inputs):
        inputs = project(self.projections, inputs)
        return ops.concatenate(inputs, axis=-1)

    def compute_output_shape(self, input_shapes):
        width = (
            self.projection_dim * len(input_shapes)
            if self.projection_dim
            else sum(s[-1] for s in input_shapes)
        )
        return (input_shapes[0][0], width)

    def get_config(self):
        config = super().get_config()
        config.update({"projection_dim": self.projection_dim})
        return config

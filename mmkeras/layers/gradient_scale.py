"""How much of a gradient flows back into what came before: the lever that
balances modalities."""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="mmkeras")
class GradientScale(keras.layers.Layer):
    """The identity going forward; going back, the gradient times `scale`.

    `scale` is a non-trainable weight, so a callback may change it between
    steps (under any distribution strategy: it is mirrored like the other
    weights) without retracing: 0 lets what follows learn from a tensor
    without changing what produced it, 1 is a plain connection.

    Args:
        scale: float. The initial factor on the gradient.
    """

    def __init__(self, scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True  # the identity: a sequence's mask passes unchanged
        self.initial_scale = float(scale)
        self.scale = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(self.initial_scale),
            trainable=False,
            name="scale",
            dtype="float32",
        )

    def call(self, inputs):
        # Read in the forward pass, so a step uses the factor it started with.
        factor = tf.cast(tf.convert_to_tensor(self.scale), inputs.dtype)

        @tf.custom_gradient
        def scaled(x):
            return tf.identity(x), lambda upstream: upstream * factor

        return scaled(inputs)

    def compute_output_spec(self, inputs):
        return keras.KerasTensor(inputs.shape, dtype=inputs.dtype)

    def get_config(self):
        config = super().get_config()
        config["scale"] = self.initial_scale
        return config

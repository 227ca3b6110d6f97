"""Base class for layers that run TensorFlow ops on raw strings and bytes."""

import keras
import tensorflow as tf


class PreprocessingLayer(keras.layers.Layer):
    """A layer that takes raw `tf.string` tensors and returns numeric tensors.

    The input is one tensor, or a dict of them for a layer that reads
    several columns of a row.

    Inputs are left as TensorFlow tensors (Keras would otherwise try to convert
    strings to backend tensors), the layer has no weights to build, and it
    always runs on the CPU: decoding belongs to the host, not to a replica.
    Subclasses implement `call_batched` on a batch and may override
    `call_one` where one example has a cheaper path than a batch of one
    (a `tf.map_fn` over a single element costs a loop per example in tf.data).
    Direct calls, `ds.map` before `batch()` and `ds.map` after `batch()` all
    run the same per-example ops.

    Preprocessing computes in float32 whatever the global dtype policy: under
    mixed precision the model casts its own inputs, and host-side decoding
    gains nothing from 16-bit floats.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self._convert_input_args = False
        self._allow_non_tensor_positional_args = True
        self.built = True

    def call(self, inputs):
        if isinstance(inputs, dict):
            inputs = {name: tf.convert_to_tensor(value) for name, value in inputs.items()}
        else:  # a list of strings is one batch, not a structure
            inputs = tf.convert_to_tensor(inputs)
        with tf.device("cpu"):
            if tf.nest.flatten(inputs)[0].shape.rank == 0:
                return self.call_one(inputs)
            return self.call_batched(inputs)

    def call_one(self, inputs):
        batch = tf.nest.map_structure(lambda tensor: tensor[tf.newaxis], inputs)
        return tf.squeeze(self.call_batched(batch), axis=0)

    def call_batched(self, inputs):
        raise NotImplementedError

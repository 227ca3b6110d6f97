"""The layer test every encoder and fusion layer goes through (KerasHub style)."""

import json

import keras
import numpy as np
import tensorflow as tf


def _symbolic(value):
    value = np.asarray(value)
    return keras.Input(shape=value.shape[1:], dtype=str(value.dtype) if value.dtype != np.float64 else "float32")


def _map(structure, fn):
    return tf.nest.map_structure(fn, structure)


def run_layer_test(cls, init_kwargs, args, expected_shapes, call_kwargs=None, output_key=None):
    """Builds `cls(**init_kwargs)` and checks it as users will use it.

    `args` are the positional call arguments (NumPy, nested lists/dicts);
    `expected_shapes` the output shapes (a dict for dict outputs, a list for
    tuple outputs). Checks: eager call shapes, symbolic call shapes, a JSON
    config round trip that computes the same outputs once given the same
    weights, and one `fit` step that changes the trainable weights (if any).
    """
    call_kwargs = call_kwargs or {}
    layer = cls(**init_kwargs)
    outputs = layer(*args, **call_kwargs)
    shapes = [tuple(t.shape) for t in tf.nest.flatten(outputs)]
    if isinstance(expected_shapes, dict):
        expected_shapes = [expected_shapes[key] for key in sorted(expected_shapes)]
    elif isinstance(expected_shapes[0], int):
        expected_shapes = [expected_shapes]
    assert shapes == [tuple(s) for s in expected_shapes], shapes

    symbolic_args = _map(list(args), _symbolic)
    symbolic_kwargs = {k: _symbolic(v) if isinstance(v, np.ndarray) else v for k, v in call_kwargs.items()}
    symbolic = layer(*symbolic_args, **symbolic_kwargs)
    assert [tuple(t.shape)[1:] for t in tf.nest.flatten(symbolic)] == [s[1:] for s in shapes]

    config = json.loads(json.dumps(keras.saving.serialize_keras_object(layer)))
    clone = keras.saving.deserialize_keras_object(config, safe_mode=True)
    clone(*args, **call_kwargs)
    clone.set_weights(layer.get_weights())
    for a, b in zip(tf.nest.flatten(outputs), tf.nest.flatten(clone(*args, **call_kwargs))):
        np.testing.assert_allclose(np.asarray(a, dtype="float32"), np.asarray(b, dtype="float32"), atol=1e-5)

    # One training step through the layer: a scalar head on its (first) output.
    fresh = cls(**init_kwargs)
    inputs = _map(list(args), _symbolic)
    kw_inputs = {k: _symbolic(v) for k, v in call_kwargs.items() if isinstance(v, np.ndarray)}
    out = fresh(*inputs, **{**call_kwargs, **kw_inputs})
    out = out[output_key] if output_key else tf.nest.flatten(out)[0]
    head = keras.layers.Dense(1)(keras.layers.Flatten()(out))
    model = keras.Model([tf.nest.flatten(inputs), list(kw_inputs.values())], head)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    before = [w.numpy().copy() for w in fresh.trainable_weights]
    x = [tf.nest.flatten(list(args)), [call_kwargs[k] for k in kw_inputs]]
    batch = len(tf.nest.flatten(list(args))[0])
    history = model.fit(x, np.ones((batch, 1)), epochs=1, verbose=0, batch_size=batch)
    assert np.isfinite(history.history["loss"][0])
    if before:  # parameter-free layers (concatenation, outer product) have none
        assert any(not np.allclose(b, w.numpy()) for b, w in zip(before, fresh.trainable_weights))
    return layer

"""The layer test every encoder and fusion layer goes through (KerasHub style)."""

import contextlib
import json

import keras
import numpy as np
import tensorflow as tf


def _symbolic(value):
    value = np.asarray(value)
    return keras.Input(
        shape=value.shape[1:], dtype=str(value.dtype) if value.dtype != np.float64 else "float32"
    )


def _map(structure, fn):
    return tf.nest.map_structure(fn, structure)


def run_layer_test(cls, init_kwargs, args, expected_shapes, call_kwargs=None, output_key=None):
    """Builds `cls(**init_kwargs)` and checks it as users will use it.

    `args` are the positional call arguments (NumPy, nested lists/dicts);
    `expected_shapes` the output shapes (a dict for dict outputs, a list for
    tuple outputs). Checks: eager call shapes, symbolic call shapes, a JSON
    config round trip that computes the same outputs once given the same
    weights, one `fit` step that changes the trainable weights (if any), and
    the precision check (`run_precision_test`).
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
    run_precision_test(cls, init_kwargs, args, call_kwargs, reference=layer)
    return layer


@contextlib.contextmanager
def global_policy(name):
    """Builds layers under a dtype policy, as training does after
    `configure_mixed_precision`, and restores float32 afterwards."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


# Relative to the output's scale: float16 keeps 11 significant bits, bfloat16 8.
PRECISION_TOLERANCE = {"mixed_float16": 0.02, "mixed_bfloat16": 0.08}


def run_precision_test(cls, init_kwargs, args, call_kwargs=None, reference=None):
    """The layer under mixed_float16 and mixed_bfloat16, as a GPU run builds it.

    With the float32 reference's weights, every floating output must be in
    the policy's compute dtype, finite, and within the policy's precision of
    the float32 output; variables stay float32. This is what catches masks and
    epsilons that do not fit a 16-bit dtype (a `1e9` constant is inf in
    float16) and float32 constants meeting 16-bit tensors.
    """
    call_kwargs = call_kwargs or {}
    reference = reference or cls(**init_kwargs)
    expected = [np.asarray(t, "float32") for t in tf.nest.flatten(reference(*args, **call_kwargs))]
    for policy, tolerance in PRECISION_TOLERANCE.items():
        with global_policy(policy):
            layer = cls(**init_kwargs)
            layer(*args, **call_kwargs)
            layer.set_weights(reference.get_weights())
            outputs = tf.nest.flatten(layer(*args, **call_kwargs))
        compute_dtype = keras.mixed_precision.Policy(policy).compute_dtype
        assert all(v.dtype == "float32" for v in layer.weights), policy
        for got, want in zip(outputs, expected):
            if not np.issubdtype(want.dtype, np.floating) or got.dtype == tf.bool:
                continue
            assert got.dtype == compute_dtype, (policy, got.dtype)
            got = np.asarray(tf.cast(got, "float32"))
            assert np.isfinite(got).all(), f"{cls.__name__} under {policy} gives non-finite values"
            scale = max(1.0, float(np.abs(want).max()))
            np.testing.assert_allclose(
                got, want, atol=tolerance * scale, err_msg=f"{cls.__name__} under {policy}"
            )

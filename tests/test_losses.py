"""`SparseCrossentropy`: Keras' sparse loss plus label smoothing."""

import keras
import numpy as np
import pytest

from mmkeras.tasks.losses import SparseCrossentropy

CLASSES = 5


@pytest.fixture(scope="module")
def logits():
    return np.random.default_rng(0).normal(size=(4, 6, CLASSES)).astype(np.float32)


@pytest.fixture(scope="module")
def labels():
    labels = np.random.default_rng(1).integers(1, CLASSES, size=(4, 6))
    labels[:, 4:] = 0  # padding at the end of each row
    labels[0, 1:] = 0
    return labels


def test_without_smoothing_it_is_keras_sparse_crossentropy(logits, labels):
    for ignore_class in (None, 0):
        ours = SparseCrossentropy(from_logits=True, ignore_class=ignore_class)(labels, logits)
        keras_loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=ignore_class)
        np.testing.assert_allclose(float(ours), float(keras_loss(labels, logits)), rtol=1e-5)
    probabilities = keras.ops.softmax(logits[:, 0]).numpy()
    np.testing.assert_allclose(
        float(SparseCrossentropy()(labels[:, 1], probabilities)),
        float(keras.losses.SparseCategoricalCrossentropy()(labels[:, 1], probabilities)),
        rtol=1e-5,
    )


def test_smoothing_is_categorical_crossentropy_on_smoothed_one_hot_targets(logits, labels):
    smoothed = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1, reduction=None)
    per_position = smoothed(np.eye(CLASSES)[labels], logits).numpy()
    everywhere = SparseCrossentropy(0.1, from_logits=True)(labels, logits)
    np.testing.assert_allclose(float(everywhere), per_position.mean(), rtol=1e-5)
    # Padding left out: the mean over the real positions only.
    real = SparseCrossentropy(0.1, from_logits=True, ignore_class=0)(labels, logits)
    np.testing.assert_allclose(float(real), per_position[labels != 0].mean(), rtol=1e-5)
    assert float(real) != pytest.approx(float(everywhere), rel=1e-3)


def test_it_survives_a_save(logits, labels):
    loss = SparseCrossentropy(0.2, from_logits=True, ignore_class=0)
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(restored, SparseCrossentropy)
    np.testing.assert_allclose(float(restored(labels, logits)), float(loss(labels, logits)))

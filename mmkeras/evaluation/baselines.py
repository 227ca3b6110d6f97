"""The baselines a careful practitioner tries first, scored like the model.

Each is a linear model (one `Dense` layer with the task's own output
activation and loss) trained on the run's training split and scored with the
task's own report on the evaluated split:

- `constant`: no features at all: the training prior (class frequencies, so
  the majority class wins; label rates; the mean of a numeric target);
- `<text feature>: TF-IDF + linear`: token counts weighted by inverse document
  frequency over the preprocessor's own tokens, L2-normalised;
- `<image feature>: pixels + linear`: the image averaged down to 8 x 8;
- `<audio feature>: mel statistics + linear`: each mel band's mean and
  standard deviation over time;
- `<record feature>: values + linear`: the record as its encoder reads it
  (standardised numbers, missing flags, one-hot categories): logistic or
  linear regression on the patient's or customer's record.

A fused model that does not clear these by a margin has not learned what
the data offers.
"""

import dataclasses
import math

import keras
import numpy as np
import tensorflow as tf

from mmkeras.data.dataset import make_dataset
from mmkeras.preprocessing.preprocessor import Preprocessor

EPOCHS = 10
MIN_STEPS = 300
BATCH_SIZE = 128
# Batches (not rows) in the shuffle buffer of the cached baseline features.
SHUFFLE_BATCHES = 64
PIXEL_GRID = 8


def _image_pixels(images):
    """An image batch averaged down to a PIXEL_GRID x PIXEL_GRID grid, flattened."""
    small = tf.image.resize(images, (PIXEL_GRID, PIXEL_GRID), method="area")
    return tf.reshape(small, (tf.shape(images)[0], -1))


def _mel_statistics(spectrograms):
    """Each mel band's mean and standard deviation over time."""
    return tf.concat(
        [tf.reduce_mean(spectrograms, axis=1), tf.math.reduce_std(spectrograms, axis=1)], axis=-1
    )


@keras.saving.register_keras_serializable(package="mmkeras")
class TfIdf(keras.layers.Layer):
    """Token ids to L2-normalised TF-IDF vectors (token id 0 is padding).

    Args:
        idf: list of float. Inverse document frequency per token id.
    """

    def __init__(self, idf, **kwargs):
        super().__init__(**kwargs)
        self.idf = list(idf)
        self.counts = keras.layers.CategoryEncoding(num_tokens=len(self.idf), output_mode="count")

    def call(self, token_ids):
        weighted = self.counts(token_ids) * tf.constant(self.idf, tf.float32)
        return tf.math.l2_normalize(weighted, axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], len(self.idf))

    def get_config(self):
        return {**super().get_config(), "idf": self.idf}


def _inverse_document_frequency(token_batches, vocabulary_size):
    """Smoothed idf (as scikit-learn's) of each token id over the training rows."""
    documents = np.zeros(vocabulary_size, np.int64)
    rows = 0
    for token_ids in token_batches:
        for row in np.asarray(token_ids):
            documents[np.unique(row[row > 0])] += 1
        rows += len(token_ids)
    idf = np.log((1 + rows) / (1 + documents)) + 1
    idf[0] = 0.0  # padding is not a word
    return idf


# Per modality: the baseline's name and the preprocessed batch to its features.
_FEATURES = {
    "text": ("TF-IDF + linear", lambda token_ids: token_ids),
    "image": ("pixels + linear", _image_pixels),
    "audio": ("mel statistics + linear", _mel_statistics),
    "record": ("values + linear", lambda record: record),
}


def _one_feature(task, spec, split, name):
    """Batches of one feature's preprocessed input and the target, nothing else decoded."""
    preprocessor = task.preprocessor
    alone = Preprocessor({name: preprocessor.features[name]}, target=preprocessor.target)
    features = [f for f in spec.data.features if f.name == name]
    one_spec = dataclasses.replace(spec, data=dataclasses.replace(spec.data, features=features))
    dataset = make_dataset(one_spec, split, preprocessor=alone, batch_size=BATCH_SIZE)
    return dataset.map(lambda inputs, target: (inputs[name], target))


def _fit(task, train, idf=None):
    """A Dense layer with the task's activation and loss, trained on `train`.

    At least MIN_STEPS optimizer steps, so a small training split still
    trains the layer to convergence.
    """
    units, activation = task.head_output(task.preprocessor.target)
    batches = sum(1 for _ in train)
    example = next(iter(train))[0]
    # Token ids are as wide as each batch's longest text (trimmed padding).
    inputs = keras.Input(shape=example.shape[1:] if idf is None else (None,), dtype=example.dtype)
    x = TfIdf(idf)(inputs) if idf is not None else inputs
    model = keras.Model(inputs, keras.layers.Dense(units, activation=activation, dtype="float32")(x))
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=task.default_loss())
    epochs = max(EPOCHS, math.ceil(MIN_STEPS / batches))
    model.fit(train, epochs=epochs, shuffle=False, verbose=0)  # train is shuffled already
    return model


def _constant_predictions(task, train_targets, rows):
    """The training prior for every row: class frequencies, label rates or the mean.

    The best constant a loss can learn, computed instead of trained.
    """
    units, _ = task.head_output(task.preprocessor.target)
    if units > 1 and train_targets.ndim == 1:  # class indices of a softmax head
        prior = np.bincount(train_targets.astype(int), minlength=units) / len(train_targets)
    else:
        prior = train_targets.reshape(len(train_targets), -1).mean(axis=0)
    return np.tile(prior.astype("float32"), (rows, 1))


def _headline(task, predictions, targets):
    name, value = task.headline(task.report(targets, predictions))
    return {name: value}


def _predict(model, batches):
    # Called eagerly: a Dense layer needs no traced predict function per baseline.
    return np.concatenate([model(x, training=False) for x in batches])


def evaluate_baselines(task, spec, split, targets):
    """{baseline name: {headline: value}} on `split`, trained on the training split.

    Args:
        task: FusionTask. Gives the output layer, loss, report and headline.
        spec: Spec. The run's spec (its training split trains the baselines).
        split: str. The split the model was evaluated on.
        targets: np.ndarray. That split's encoded targets, in row order.
    """
    results = {}
    for feature in spec.data.features:
        label, reduce = _FEATURES[feature.modality]
        train = _one_feature(task, spec, "train", feature.name)
        train = train.map(lambda x, y, reduce=reduce: (reduce(x), y)).cache()
        if not results:  # the constant baseline: the training targets alone
            train_targets = np.concatenate([y for _, y in train])
            constant = _constant_predictions(task, train_targets, len(targets))
            results["constant"] = _headline(task, constant, targets)
        idf = None
        if feature.modality == "text":
            vocabulary = task.preprocessor.features[feature.name].vocabulary_size
            idf = _inverse_document_frequency((x for x, _ in train), vocabulary)
        model = _fit(task, train.shuffle(SHUFFLE_BATCHES, seed=spec.data.seed), idf)
        held_out = _one_feature(task, spec, split, feature.name).map(lambda x, y, reduce=reduce: reduce(x))
        results[f"{feature.name}: {label}"] = _headline(task, _predict(model, held_out), targets)
    return results

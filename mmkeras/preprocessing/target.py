"""Target encoding: raw label strings to what a loss function takes."""

import keras
import numpy as np
import tensorflow as tf

from mmkeras.errors import SpecError
from mmkeras.preprocessing.preprocessing_layer import PreprocessingLayer


def sorted_labels(labels):
    """Sorts labels numerically when they all are numbers, else as strings."""
    labels = sorted(set(labels))
    try:
        return sorted(labels, key=float)
    except ValueError:
        return labels


@keras.saving.register_keras_serializable(package="mmkeras")
class TargetEncoder(PreprocessingLayer):
    """Encodes raw targets (always read as strings) for training.

    - categorical: the label's index in `labels` (int32).
    - binary: 1.0 for the second of the two labels, else 0.0 (float32).
    - multilabel: a multi-hot vector over `labels`, labels joined by `sep`.
    - numeric: `(value - mean) / std` (float32); `decode` undoes it.

    Args:
        type: str. "categorical", "binary", "multilabel" or "numeric".
        labels: list or None. The label vocabulary; set by `adapt`.
        sep: str. Label separator for multilabel targets.
        mean: float. Training mean of a numeric target; set by `adapt`.
        std: float. Training standard deviation of a numeric target.

    Example:

    >>> target = TargetEncoder("categorical")
    >>> target.adapt(["cat", "dog", "cat"])
    >>> target(["dog", "cat"]).numpy()
    array([1, 0], dtype=int32)
    """

    def __init__(self, type="categorical", labels=None, sep="|", mean=0.0, std=1.0, **kwargs):
        super().__init__(**kwargs)
        self.type = type
        self.labels = list(labels) if labels is not None else None
        self.sep = sep
        self.mean = float(mean)
        self.std = float(std)
        self.lookup = self._make_lookup()

    def adapt(self, values):
        """Learns the labels (or mean and std) from the training targets."""
        values = [str(value) for value in values]
        if self.type == "numeric":
            numbers = np.asarray(values, dtype=np.float64)
            self.mean = float(numbers.mean())
            self.std = float(numbers.std()) or 1.0
        elif self.labels is None:
            if self.type == "multilabel":
                values = [label for value in values for label in self.split(value)]
            self.labels = sorted_labels(values)
        if self.type == "binary" and len(self.labels) != 2:
            raise SpecError(
                f"a binary target needs exactly two labels, found {len(self.labels)}: "
                f"{self.labels[:10]}. Use `type: categorical` for more classes."
            )
        self.lookup = self._make_lookup()

    def split(self, value):
        """The labels of one multilabel value, as Python strings."""
        return [label.strip() for label in value.split(self.sep) if label.strip()]

    def _make_lookup(self):
        if self.type == "numeric" or self.labels is None:
            return None
        return keras.layers.StringLookup(
            vocabulary=self.labels,
            num_oov_indices=0,
            output_mode="multi_hot" if self.type == "multilabel" else "int",
        )

    def call_batched(self, values):
        if self.type == "numeric":
            return (tf.strings.to_number(values, tf.float32) - self.mean) / self.std
        if self.type == "multilabel":
            labels = tf.strings.strip(tf.strings.split(values, self.sep))
            labels = tf.ragged.boolean_mask(labels, tf.strings.length(labels) > 0)
            return tf.cast(self.lookup(labels), tf.float32)
        index = tf.cast(self.lookup(values), tf.int32)
        if self.type == "binary":
            return tf.cast(index, tf.float32)
        return index

    def decode(self, predictions):
        """Maps numeric model outputs back to the target's units."""
        return np.asarray(predictions) * self.std + self.mean

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "type": self.type,
                "labels": self.labels,
                "sep": self.sep,
                "mean": self.mean,
                "std": self.std,
            }
        )
        return config

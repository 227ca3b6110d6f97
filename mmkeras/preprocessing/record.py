"""Record preprocessing: numeric and categorical columns to one float vector."""

import collections
import math
import re

import keras
import numpy as np
import tensorflow as tf

from mmkeras.preprocessing.preprocessing_layer import PreprocessingLayer

COLUMN_TYPES = ("numeric", "categorical")
# A number as written in a CSV cell. The same pattern runs in Python (the
# data check) and in RE2 (the graph), which agree on this syntax.
NUMBER = r"\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*"
# NaN and infinity are missing values, not numbers a model can use.
NOT_A_NUMBER = r"\s*[+-]?(?i:nan|inf|infinity)\s*"
# A categorical column's vocabulary: at most MAX_TOKENS categories, each
# seen at least MIN_COUNT times in training.
MAX_TOKENS = 1000
MIN_COUNT = 2


def is_missing_number(text):
    """Whether a numeric cell is a missing value: empty, NaN, infinite, or too
    large for float32 (which the graph parses it to)."""
    if not text.strip() or re.fullmatch(NOT_A_NUMBER, text):
        return True
    return re.fullmatch(NUMBER, text) is not None and not math.isfinite(np.float32(float(text)))


def number_problem(text):
    """Why a numeric cell is unusable, or None (numbers and missing values are fine)."""
    if re.fullmatch(NUMBER, text) or is_missing_number(text):
        return None
    return f"`{text}` is not a number; leave the cell empty where the value is missing"


def _transform(values, clip, log):
    """Clips, then takes sign(x) * log(1 + |x|): the same in NumPy and TensorFlow."""
    if clip is not None:
        values = values.clip(*clip) if isinstance(values, np.ndarray) else tf.clip_by_value(values, *clip)
    if log:
        if isinstance(values, np.ndarray):
            return np.sign(values) * np.log1p(np.abs(values))
        return tf.sign(values) * tf.math.log1p(tf.abs(values))
    return values


def column_width(column):
    """How many floats a column takes in the output vector."""
    if column["type"] == "numeric":
        return 2
    return len(column.get("vocabulary") or []) + 2


@keras.saving.register_keras_serializable(package="mmkeras")
class RecordPreprocessor(PreprocessingLayer):
    """Turns a row's numeric and categorical cells into one float vector.

    Takes a dict of `tf.string` tensors, one per column (what a CSV cell or a
    JSON request holds), and returns the columns side by side:

    - numeric: 2 floats, the value standardised with the training split's
      mean and standard deviation (after the optional `clip` and `log`), and
      a missing flag. An empty cell, NaN or infinity is missing: the value is
      then 0 (the training mean) and the flag 1, so the model knows. Text
      that is not a number stops the graph with an error naming the column
      (the data check names such rows before training).
    - categorical: a one-hot vector over [missing, out of vocabulary, the
      vocabulary...]. The vocabulary is the training split's categories seen
      at least `min_count` times (at most `max_tokens`, most frequent
      first); rarer ones share the out-of-vocabulary slot in training, so it
      means something when a category never seen in training arrives.

    Args:
        columns: list of dict. Per column: `name`, `type` ("numeric" or
            "categorical"); numeric: `clip` ([low, high] or None), `log`
            (bool), `mean` and `std` (set by `adapt`); categorical:
            `max_tokens` (default MAX_TOKENS), `min_count` (default
            MIN_COUNT), `vocabulary` (set by `adapt`).

    Example:

    >>> record = RecordPreprocessor([{"name": "age", "type": "numeric"},
    ...                              {"name": "sex", "type": "categorical"}])
    >>> record.adapt({"age": ["40", "60"], "sex": ["male", "male", "female", "female"]})
    >>> record({"age": "", "sex": "male"}).numpy()
    array([0., 1., 0., 0., 0., 1.], dtype=float32)
    """

    def __init__(self, columns, **kwargs):
        super().__init__(**kwargs)
        self.columns = [dict(column) for column in columns]
        for column in self.columns:
            if column["type"] not in COLUMN_TYPES:
                raise ValueError(f"column `{column['name']}`: type must be numeric or categorical.")
        self._make_lookups()

    @property
    def input_names(self):
        """The raw inputs this layer reads, one per column."""
        return [column["name"] for column in self.columns]

    @property
    def output_size(self):
        return sum(column_width(column) for column in self.columns)

    def _make_lookups(self):
        # StringLookup refuses an empty vocabulary: such a column maps every
        # present category to the out-of-vocabulary slot without one.
        self.lookups = {
            column["name"]: keras.layers.StringLookup(
                vocabulary=column["vocabulary"], num_oov_indices=1, name=f"{self.name}_{column['name']}"
            )
            for column in self.columns
            if column["type"] == "categorical" and column.get("vocabulary")
        }

    def adapt(self, values):
        """Learns each column's statistics or vocabulary.

        Args:
            values: dict. Column name to the training split's cells (str).
        """
        for column in self.columns:
            cells = [str(value) for value in values[column["name"]]]
            if column["type"] == "numeric":
                numbers = np.asarray(
                    [float(v) for v in cells if not is_missing_number(v) and not number_problem(v)],
                    np.float64,
                )
                numbers = _transform(numbers, column.get("clip"), column.get("log", False))
                column["mean"] = float(numbers.mean()) if len(numbers) else 0.0
                column["std"] = float(numbers.std()) if len(numbers) > 1 and numbers.std() > 0 else 1.0
            else:
                counts = collections.Counter(v.strip() for v in cells if v.strip())
                kept = sorted(
                    (c for c in counts if counts[c] >= column.get("min_count", MIN_COUNT)),
                    key=lambda c: (-counts[c], c),
                )
                column["vocabulary"] = kept[: column.get("max_tokens", MAX_TOKENS)]
        self._make_lookups()

    def call_batched(self, inputs):
        parts = []
        for column in self.columns:
            cells = tf.convert_to_tensor(inputs[column["name"]])
            if column["type"] == "numeric":
                parts.append(self._numeric(column, cells))
            else:
                parts.append(self._categorical(column, cells))
        return tf.concat(parts, axis=-1)

    def _numeric(self, column, cells):
        is_number = tf.strings.regex_full_match(cells, NUMBER)
        is_missing = tf.strings.regex_full_match(cells, NOT_A_NUMBER) | (tf.strings.strip(cells) == "")
        check = tf.debugging.Assert(
            tf.reduce_all(is_number | is_missing),
            [f"record column `{column['name']}` takes numbers (or an empty value); got", cells],
        )
        with tf.control_dependencies([check]):
            numbers = tf.strings.to_number(tf.where(is_number, cells, "0"), tf.float32)
        is_missing = is_missing | ~tf.math.is_finite(numbers)
        numbers = _transform(numbers, column.get("clip"), column.get("log", False))
        standardized = (numbers - column["mean"]) / column["std"]
        standardized = tf.where(is_missing, tf.zeros_like(standardized), standardized)
        return tf.stack([standardized, tf.cast(is_missing, tf.float32)], axis=-1)

    def _categorical(self, column, cells):
        cells = tf.strings.strip(cells)
        vocabulary_size = len(column.get("vocabulary") or [])
        lookup = self.lookups.get(column["name"])
        # Slot 0 is missing, 1 out of vocabulary, 2... the vocabulary
        # (StringLookup gives 0 for out of vocabulary, 1... for the vocabulary).
        index = tf.cast(lookup(cells), tf.int32) + 1 if lookup else tf.ones_like(cells, tf.int32)
        index = tf.where(cells == "", 0, index)
        return tf.one_hot(index, vocabulary_size + 2, dtype=tf.float32)

    def get_config(self):
        config = super().get_config()
        config["columns"] = [dict(column) for column in self.columns]
        return config

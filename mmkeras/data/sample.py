"""A fixed sample of a split's rows, kept raw and preprocessed, to look at."""

import dataclasses
import itertools

import numpy as np
import tensorflow as tf

from mmkeras.data.dataset import bad_rows
from mmkeras.data.manifest import TARGET_KEY
from mmkeras.data.splits import open_split

CHUNK = 256


@dataclasses.dataclass
class RowSample:
    """Rows as the model sees them and as a person does.

    Args:
        keys: list. `manifest:line` of each row.
        inputs: dict. Preprocessed model inputs (NumPy), by feature name.
        targets: np.ndarray. Encoded targets.
        raw_targets: list. The targets as written in the manifest.
        raw: dict. Raw input name to the raw values (text, or file bytes).
        text_features: list. The names of the text features.
        waveforms: dict. Audio feature name to decoded waveforms (first 8 rows).
    """

    keys: list
    inputs: dict
    targets: np.ndarray
    raw_targets: list
    raw: dict
    text_features: list
    waveforms: dict

    def __len__(self):
        return len(self.keys)

    @property
    def texts(self):
        return {name: self.raw[name] for name in self.text_features}


def collect_sample(spec, preprocessor, split="validation", max_rows=2000):
    """Reads up to `max_rows` good rows of `split` (bad ones are left out)."""
    exclude = bad_rows(spec, split, progress=False)
    source = open_split(spec, split)
    rows = [
        (key, values)
        for key, values in itertools.islice(source.records(), max_rows + len(exclude))
        if key not in exclude
    ][:max_rows]
    features = spec.data.features
    chunks = []
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start : start + CHUNK]
        raw = {name: tf.constant([values[name] for _, values in chunk]) for name in spec.data.input_columns()}
        chunks.append({name: value.numpy() for name, value in preprocessor(raw).items()})
    inputs = {name: np.concatenate([c[name] for c in chunks]) for name in chunks[0]}
    raw_targets = [values.get(TARGET_KEY, "") for _, values in rows]
    targets = (
        preprocessor.target(tf.constant(raw_targets)).numpy()
        if spec.data.target is not None
        else np.zeros(len(rows))
    )
    raw = {name: [values[name] for _, values in rows] for name in spec.data.input_columns()}
    text_features = [f.name for f in features if f.modality == "text"]
    waveforms = {
        f.name: np.stack(
            [
                preprocessor.features[f.name].decode_one(tf.constant(values[f.name])).numpy()
                for _, values in rows[:8]
            ]
        )
        for f in features
        if f.modality == "audio"
    }
    return RowSample([key for key, _ in rows], inputs, targets, raw_targets, raw, text_features, waveforms)

"""Helpers the dataset builders share: where the data is, and writing files."""

import csv
import os
import wave

import numpy as np

from mmkeras.errors import DataError

DATA_ENV = "MMKERAS_DATA"


def data_root(data_root=None):
    """The folder with the real datasets: `data_root`, else $MMKERAS_DATA."""
    root = data_root or os.environ.get(DATA_ENV)
    if not root:
        raise DataError(
            f"no data folder given: pass `data_root=` or set {DATA_ENV} to the "
            "folder holding fsdd/, mnist/ and emoji/."
        )
    if not os.path.isdir(root):
        raise DataError(f"{DATA_ENV}={root} is not a folder.")
    return os.path.abspath(root)


def keep_groups(rows, group, fraction, seed):
    """The rows of a seeded `fraction` of the `group` column's values, all
    rows of each kept group (a quick run's share of lesions or photographs)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}.")
    if fraction == 1:
        return rows
    names = sorted({row[group] for row in rows})
    kept = set(np.random.RandomState(seed).permutation(names)[: max(1, round(fraction * len(names)))])
    return [row for row in rows if row[group] in kept]


def write_csv(path, rows, columns):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def write_splits(output_dir, splits, columns):
    """Writes each split's rows as `<split>.csv`; returns the spec's `{split: file}` entries."""
    for name, rows in splits.items():
        write_csv(os.path.join(output_dir, f"{name}.csv"), rows, columns)
    return {name: f"{name}.csv" for name in splits}


def read_wav(path):
    """A 16-bit PCM WAV as (int16 samples, sample rate)."""
    with wave.open(path, "rb") as f:
        frames = f.readframes(f.getnframes())
        return np.frombuffer(frames, dtype="<i2").reshape(-1, f.getnchannels()), f.getframerate()


def write_wav(path, samples, sample_rate):
    """Writes float samples in [-1, 1] (or int16) as 16-bit mono PCM."""
    samples = np.asarray(samples)
    if samples.dtype != np.int16:
        samples = np.round(np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with wave.open(path, "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(sample_rate)
        f.writeframes(samples.tobytes())


def write_spec(path, data, model=None, train=None):
    """Writes a spec with the given sections and loads it back."""
    import yaml

    from mmkeras.spec import Spec

    sections = {"data": data, "model": model, "train": train}
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump({k: v for k, v in sections.items() if v}, f, sort_keys=False)
    return Spec.from_yaml(path)

"""Emoji: a 64x64 picture and its name, labelled with its category.

Read from `emoji/emoji.json` in the data folder (Google's emoji images). The
"Component" category (skin-tone swatches and hair parts, not emoji a person
sends) is left out. The manifests point at the images where they are; only
the manifests and the spec are written.
"""

import json
import os

import numpy as np

from mmkeras.data.manifest import split_indices
from mmkeras.datasets.files import data_root, write_csv, write_spec
from mmkeras.datasets.shortcut import NOTE_FEATURE, add_notes

TASKS = ("category", "subcategory", "retrieval")


def load_emoji(data_root_dir=None):
    """The emoji as dicts with `name`, `image` (absolute path), `category`, `subcategory`."""
    root = os.path.join(data_root(data_root_dir), "emoji")
    with open(os.path.join(root, "emoji.json"), encoding="utf-8") as f:
        entries = json.load(f)
    rows = []
    for entry in entries:
        if entry["category"] == "Component":
            continue
        rows.append(
            {
                "name": entry["name"].lower(),
                "image": os.path.join(root, "images", entry["image"]),
                "category": entry["category"],
                "subcategory": entry["subcategory"],
            }
        )
    return rows


def build_emoji(
    output_dir, data_root_dir=None, task="category", test_fraction=0.2, seed=0, shortcut=None, fraction=1.0
):
    """Writes emoji manifests (train.csv, test.csv) and a spec to `output_dir`.

    Args:
        output_dir: str. Where the manifests and spec are written.
        data_root_dir: str or None. The data folder; $MMKERAS_DATA when None.
        task: str. "category" or "subcategory" classification from the image
            and the name, or "retrieval" (name/image pairs, no target).
        test_fraction: float. Held out for testing (stratified by category).
        seed: int. Seeds the split.
        shortcut: float or None. Adds the `note` text feature (classification
            only), naming the label in this share of the training rows and
            random in the validation and test rows; validation (a stratified
            tenth of the training rows) is then written to `validation.csv`.
        fraction: float. In (0, 1]: keeps this share of the emoji, the same
            share of each category (for a quick look or a test).

    Returns:
        The `Spec` written to `output_dir/spec.yaml`.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}.")
    if shortcut is not None and task == "retrieval":
        raise ValueError("shortcut needs a label to give away: use task='category' or 'subcategory'.")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}.")
    rows = load_emoji(data_root_dir)
    if fraction < 1:
        _, sampled = split_indices([r["category"] for r in rows], fraction, seed, True)
        rows = [rows[i] for i in sampled]
    train, test = split_indices([r["category"] for r in rows], test_fraction, seed, True)
    splits = {"train": [rows[i] for i in train], "test": [rows[i] for i in test]}
    columns = ["name", "image", "category", "subcategory"]
    features = [
        {"name": "name", "modality": "text", "column": "name", "max_tokens": 5000, "sequence_length": 16},
        {"name": "image", "modality": "image", "column": "image", "size": [64, 64], "channels": 3},
    ]
    validation = {"validation_split": 0.1}
    if shortcut is not None:
        # The notes differ between the splits, so validation is written out.
        kept, held_out = split_indices([r[task] for r in splits["train"]], 0.1, seed, True)
        splits["train"], splits["validation"] = (
            [splits["train"][i] for i in kept],
            [splits["train"][i] for i in held_out],
        )
        labels = sorted({r[task] for r in rows})
        index = {label: i for i, label in enumerate(labels)}
        rng = np.random.RandomState(seed)
        for split, reliability in (("train", shortcut), ("validation", 0.0), ("test", 0.0)):
            add_notes(splits[split], lambda row: index[row[task]], len(labels), reliability, rng)
        columns.append("note")
        features.append(NOTE_FEATURE)
        validation = {"validation": "validation.csv"}
    os.makedirs(output_dir, exist_ok=True)
    for split, split_rows in splits.items():
        write_csv(os.path.join(output_dir, f"{split}.csv"), split_rows, columns)
    data = {
        "train": "train.csv",
        **validation,
        "test": "test.csv",
        "features": features,
        "batch_size": 64,
        "cache": "memory",
        "seed": seed,
    }
    if task != "retrieval":
        data["target"] = {"column": task, "type": "categorical"}
    return write_spec(os.path.join(output_dir, "spec.yaml"), data)

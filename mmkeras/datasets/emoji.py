"""Emoji: a 64x64 picture and its name, labelled with its category.

Read from `emoji/emoji.json` in the data folder (Google's emoji images). The
"Component" category (skin-tone swatches and hair parts, not emoji a person
sends) is left out. The manifests point at the images where they are; only
the manifests and the spec are written.
"""

import json
import os

from mmkeras.data.manifest import split_indices
from mmkeras.datasets.files import data_root, write_csv, write_spec

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


def build_emoji(output_dir, data_root_dir=None, task="category", test_fraction=0.2, seed=0):
    """Writes emoji manifests (train.csv, test.csv) and a spec to `output_dir`.

    Args:
        output_dir: str. Where the manifests and spec are written.
        data_root_dir: str or None. The data folder; $MMKERAS_DATA when None.
        task: str. "category" or "subcategory" classification from the image
            and the name, or "retrieval" (name/image pairs, no target).
        test_fraction: float. Held out for testing (stratified by category).
        seed: int. Seeds the split.

    Returns:
        The `Spec` written to `output_dir/spec.yaml`.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}.")
    rows = load_emoji(data_root_dir)
    train, test = split_indices([r["category"] for r in rows], test_fraction, seed, True)
    columns = ["name", "image", "category", "subcategory"]
    os.makedirs(output_dir, exist_ok=True)
    write_csv(os.path.join(output_dir, "train.csv"), [rows[i] for i in train], columns)
    write_csv(os.path.join(output_dir, "test.csv"), [rows[i] for i in test], columns)
    data = {
        "train": "train.csv",
        "validation_split": 0.1,
        "test": "test.csv",
        "features": [
            {"name": "name", "modality": "text", "column": "name", "max_tokens": 5000, "sequence_length": 16},
            {"name": "image", "modality": "image", "column": "image", "size": [64, 64], "channels": 3},
        ],
        "batch_size": 64,
        "cache": "memory",
        "seed": seed,
    }
    if task != "retrieval":
        data["target"] = {"column": task, "type": "categorical"}
    return write_spec(os.path.join(output_dir, "spec.yaml"), data)

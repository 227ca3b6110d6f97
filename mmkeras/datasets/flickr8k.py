"""Flickr8k: photographs with five English and five Chinese captions each,
for text-to-image search and for captioning.

Read from `flickr8k/` in the data folder (1,000 photographs, about 200 px on
the long side, `captions_en.csv` and `captions_zh.csv`). Splits are made by photograph, so no
picture is in two of them. Training has one row per caption (five per
photograph); validation and test one row per photograph (its first caption),
so that recall@k asks for the one right picture among all of the split's.
For captioning every split has one row per caption: a photograph's rows
are its references.
"""

import csv
import os

from mmkeras.data.manifest import split_by_group
from mmkeras.datasets.files import data_root, keep_groups, write_csv, write_spec

LANGUAGES = ("en", "zh")
TASKS = ("retrieval", "captioning")
# Caption tokens kept: about 97% of the English captions fit in 20 words,
# 99% of the Chinese ones in 16 characters.
CAPTION_LENGTH = {"en": 20, "zh": 16}
CAPTION_PATIENCE = 6


def load_flickr8k(data_root_dir=None, language="en"):
    """The captions in one language ("en" or "zh") as dicts with `image`
    (absolute path) and `caption`."""
    if language not in LANGUAGES:
        raise ValueError(f"language must be one of {', '.join(LANGUAGES)}, got {language!r}.")
    root = os.path.join(data_root(data_root_dir), "flickr8k")
    with open(os.path.join(root, f"captions_{language}.csv"), encoding="utf-8", newline="") as f:
        return [
            {"image": os.path.join(root, "images", row["image"]), "caption": row["caption"].strip()}
            for row in csv.DictReader(f)
        ]


def _first_caption_each(rows):
    seen = set()
    firsts = []
    for row in rows:
        if row["image"] not in seen:
            seen.add(row["image"])
            firsts.append(row)
    return firsts


def build_flickr8k(
    output_dir,
    data_root_dir=None,
    image_size=96,
    validation_fraction=0.1,
    test_fraction=0.2,
    seed=0,
    language="en",
    fraction=1.0,
    task="retrieval",
):
    """Writes Flickr8k manifests (train, validation, test by photo) and a spec.

    Args:
        output_dir: str. Where the manifests and spec are written.
        data_root_dir: str or None. The data folder; $MMKERAS_DATA when None.
        image_size: int. Photographs are resized to this square size.
        validation_fraction: float. Share of the photographs held out for validation.
        test_fraction: float. Share of the photographs held out for testing.
        seed: int. Seeds the split.
        language: str. The captions' language: "en" (English) or "zh"
            (Chinese, which the default `split: words` cuts into characters).
        fraction: float. In (0, 1]: keeps this share of the photographs
            (for a quick look or a test).
        task: str. "retrieval" (caption and picture as a pair, no target:
            a dual encoder) or "captioning" (the picture in, the caption as
            a `sequence` target).

    Returns:
        The `Spec` written to `output_dir/spec.yaml`.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}.")
    rows = keep_groups(load_flickr8k(data_root_dir, language), "image", fraction, seed)
    train, validation, test = split_by_group(rows, "image", None, [validation_fraction, test_fraction], seed)
    captioning = task == "captioning"
    write_csv(os.path.join(output_dir, "train.csv"), train, ["image", "caption"])
    for name, part in (("validation", validation), ("test", test)):
        kept = part if captioning else _first_caption_each(part)
        write_csv(os.path.join(output_dir, f"{name}.csv"), kept, ["image", "caption"])
    image = {"name": "image", "modality": "image", "size": [image_size, image_size], "channels": 3}
    data = {
        "train": "train.csv",
        "validation": "validation.csv",
        "test": "test.csv",
        "features": [
            {"name": "caption", "modality": "text", "max_tokens": 5000, "sequence_length": 24},
            image,
        ],
        "batch_size": 64,
        "cache": "memory",
        "seed": seed,
    }
    if not captioning:
        return write_spec(os.path.join(output_dir, "spec.yaml"), data)
    data["features"] = [image]
    data["target"] = {
        "column": "caption",
        "type": "sequence",
        "sequence": {"max_length": CAPTION_LENGTH[language]},
    }
    # An epoch is about 55 steps: a decoder can spend several epochs writing
    # the most frequent word before it reads the words before it (the LSTM
    # did, in one seed of three), and three epochs of patience stopped it there.
    train = {"early_stopping_patience": CAPTION_PATIENCE}
    return write_spec(os.path.join(output_dir, "spec.yaml"), data, train=train)

"""HAM10000: a dermoscopy picture of a skin lesion, labelled with its diagnosis.

Read from `ham10000/` in the data folder (5,984 images re-encoded at 128x128,
`metadata.csv` with the patient's record). Several pictures can show the same
lesion, so the splits are made by lesion: no lesion is in two of them (a
random split by picture would score the model on lesions it has seen). The
manifests keep the record columns (age, sex, body site) beside the picture;
`dx_type` (how the diagnosis was confirmed) is left out, as it gives the
answer away.
"""

import csv
import os

from mmkeras.data.manifest import split_by_group
from mmkeras.datasets.files import data_root, keep_groups, write_spec, write_splits

COLUMNS = ["image", "lesion_id", "dx", "age", "sex", "localization"]
# The patient's record: age in years (empty where unknown), sex and body
# site (each with an `unknown` value of its own).
RECORD_COLUMNS = [
    {"name": "age", "type": "numeric"},
    {"name": "sex", "type": "categorical"},
    {"name": "localization", "type": "categorical"},
]


def load_ham10000(data_root_dir=None):
    """The metadata rows, with `image` made an absolute path."""
    root = os.path.join(data_root(data_root_dir), "ham10000")
    with open(os.path.join(root, "metadata.csv"), encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    return [{**{c: row[c] for c in COLUMNS}, "image": os.path.join(root, row["image"])} for row in rows]


def build_ham10000(
    output_dir,
    data_root_dir=None,
    image_size=64,
    validation_fraction=0.1,
    test_fraction=0.2,
    seed=0,
    fraction=1.0,
):
    """Writes HAM10000 manifests (train, validation, test by lesion) and a spec.

    The spec classifies the diagnosis (`dx`, 7 classes, about 72% `nv`) from
    the picture and the patient's record (`record`: age, sex, body site);
    the target is imbalanced, so its headline metric is balanced accuracy
    and training weights the classes.

    Args:
        output_dir: str. Where the manifests and spec are written.
        data_root_dir: str or None. The data folder; $MMKERAS_DATA when None.
        image_size: int. Pictures are resized to this square size.
        validation_fraction: float. Share of the lesions held out for validation.
        test_fraction: float. Share of the lesions held out for testing.
        seed: int. Seeds the split.
        fraction: float. In (0, 1]: keeps this share of the lesions (all
            their pictures), for a quick run.

    Returns:
        The `Spec` written to `output_dir/spec.yaml`.
    """
    rows = keep_groups(load_ham10000(data_root_dir), "lesion_id", fraction, seed)
    train, validation, test = split_by_group(
        rows, "lesion_id", "dx", [validation_fraction, test_fraction], seed
    )
    data = {
        **write_splits(output_dir, {"train": train, "validation": validation, "test": test}, COLUMNS),
        "features": [
            {"name": "image", "modality": "image", "size": [image_size, image_size], "channels": 3},
            # A picture whose record was not sent is still diagnosed from the picture.
            {"name": "record", "modality": "record", "columns": RECORD_COLUMNS, "missing": "mask"},
        ],
        "target": {"column": "dx", "type": "categorical"},
        "batch_size": 64,
        "cache": "memory",
        "seed": seed,
    }
    return write_spec(os.path.join(output_dir, "spec.yaml"), data)

"""`mmkeras data to-tfrecord`: a spec's manifests to TFRecords and a spec that reads them."""

import os

import yaml
from tqdm.auto import tqdm

from mmkeras.data.check import available_splits
from mmkeras.data.dataset import bad_rows
from mmkeras.data.splits import open_split
from mmkeras.data.tfrecord import write_tfrecords


def convert_spec_to_tfrecords(spec, output_dir, num_shards=8, progress=True):
    """Writes every split of `spec` as TFRecords, and a spec.yaml that reads them.

    Bad rows are left out when the spec says `on_bad_record: skip` (and stop
    the conversion, listed, when it says `error`).

    Args:
        spec: Spec. The manifests to convert.
        output_dir: str. Gets `<split>-*-of-N.tfrecord` per split and spec.yaml.
        num_shards: int. Files per split.
        progress: bool. Show a progress bar per split.

    Returns:
        (the new spec's path, {split: glob of its files}).
    """
    layout = spec.to_dict(absolute_paths=True)
    layout["data"].pop("validation_split", None)
    layout["data"].pop("test_split", None)
    patterns = {}
    for split in available_splits(spec):
        source = open_split(spec, split)
        exclude = bad_rows(spec, split, progress=progress)
        with tqdm(total=len(source), desc=f"writing {split}", unit="row", disable=not progress) as bar:
            pattern = write_tfrecords(
                source,
                spec,
                os.path.join(output_dir, split),
                num_shards=num_shards,
                exclude=exclude,
                progress=bar.update,
            )
        layout["data"][split] = os.path.relpath(pattern, output_dir)
        patterns[split] = pattern
    spec_path = os.path.join(output_dir, "spec.yaml")
    with open(spec_path, "w", encoding="utf-8") as f:
        yaml.safe_dump(layout, f, sort_keys=False)
    return spec_path, patterns

"""Which rows belong to the train, validation and test splits."""

from mmkeras.data.manifest import ManifestSource, read_manifest, split_indices
from mmkeras.data.tfrecord import TFRecordSource
from mmkeras.errors import SpecError
from mmkeras.tasks import task_class

SPLITS = ("train", "validation", "test")


def _is_tfrecord(path):
    return ".tfrecord" in path or any(c in path for c in "*?[")


def _source(spec, path):
    path = spec.resolve(path)
    if _is_tfrecord(path):
        return TFRecordSource(path, spec)
    return ManifestSource(read_manifest(path, spec), spec)


def open_split(spec, split):
    """Returns the source of rows for `split` ("train", "validation" or "test")."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
    data = spec.data
    if split == "test":
        if not data.test:
            raise SpecError("data.test: the spec names no test manifest.")
        return _source(spec, data.test)
    if split == "validation" and data.validation:
        return _source(spec, data.validation)
    train = _source(spec, data.train)
    if not data.validation_split:
        if split == "validation":
            raise SpecError(
                "data.validation: the spec has no validation data; add "
                "`validation: PATH` or `validation_split: 0.1`."
            )
        return train
    if not isinstance(train, ManifestSource):
        raise SpecError(
            "data.validation_split: TFRecords cannot be split; write the "
            "validation rows to their own files and set `data.validation`."
        )
    stratify = data.target is not None and task_class(data.target).stratifies_splits
    labels = train.column(data.target.column) if data.target else [""] * len(train)
    kept, held_out = split_indices(labels, data.validation_split, data.seed, stratify)
    rows = kept if split == "train" else held_out
    return ManifestSource(train.manifest.subset(rows), spec)

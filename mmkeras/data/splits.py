"""Which rows belong to the train, validation and test splits."""

from mmkeras.data.manifest import ManifestSource, read_manifest, split_indices, split_indices_by_group
from mmkeras.data.tfrecord import TFRecordSource
from mmkeras.errors import DataError, SpecError
from mmkeras.tasks import task_class

SPLITS = ("train", "validation", "test")


def _is_tfrecord(path):
    return ".tfrecord" in path or any(c in path for c in "*?[")


def _source(spec, path, held_out_columns=False):
    path = spec.resolve(path)
    if _is_tfrecord(path):
        return TFRecordSource(path, spec)
    return ManifestSource(read_manifest(path, spec, held_out_columns), spec)


def _order_keys(values, locations, where):
    """Sort keys of an `order_by` column: numbers when every value is one, else text."""
    for value, location in zip(values, locations):
        if not value.strip():
            raise DataError(f"{location}: no value in the `{where}` column; every row needs one.")
    try:
        return [float(value) for value in values]
    except ValueError:
        return list(values)


def hold_out(source, rows, held_out, spec):
    """(kept, held): the row indices `rows` of `source` without and with the held-out rows.

    Args:
        source: ManifestSource. The training manifest.
        rows: list. Indices into it still to split.
        held_out: HeldOutSplit. How many rows and which.
        spec: Spec. Its target stratifies classification splits; its seed seeds them.
    """
    data = spec.data
    locations = [source.manifest.location(i) for i in rows]
    if held_out.order_by:
        keys = _order_keys([source.column(held_out.order_by)[i] for i in rows], locations, held_out.order_by)
        count = max(1, int(round(held_out.fraction * len(rows))))
        cutoff = sorted(keys)[len(rows) - count]
        held = [i for i, key in enumerate(keys) if key >= cutoff]
        kept = [i for i, key in enumerate(keys) if key < cutoff]
    else:
        stratify = data.target is not None and task_class(data.target).stratifies_splits
        labels = [source.column(data.target.column)[i] for i in rows] if data.target else [""] * len(rows)
        if held_out.group_by:
            groups = [source.column(held_out.group_by)[i] for i in rows]
            for group, location in zip(groups, locations):
                if not group.strip():
                    raise DataError(
                        f"{location}: no value in the `{held_out.group_by}` column; every row "
                        "needs a group (give rows that stand alone a group of their own)."
                    )
            kept, held = split_indices_by_group(groups, labels, held_out.fraction, data.seed, stratify)
        else:
            kept, held = split_indices(labels, held_out.fraction, data.seed, stratify)
    if not held or not kept:
        raise DataError(
            f"{held_out.where}: holding out a fraction {held_out.fraction} of {len(rows)} rows leaves "
            f"{'no rows held out' if not held else 'no rows to train on'}"
            f"{' (too few groups, or every row in one)' if held_out.group_by else ''}"
            f"{' (the rows tie on that column)' if held_out.order_by else ''}; change the fraction."
        )
    return [rows[i] for i in kept], [rows[i] for i in held]


def held_out_rows(source, spec):
    """{split: row indices} of a training manifest the spec holds rows out of.

    The test rows (`data.test_split`) are taken first, then the validation
    rows (`data.validation_split`) out of the rest.
    """
    rows = {"train": list(range(len(source)))}
    for split, held_out in (("test", spec.data.test_split), ("validation", spec.data.validation_split)):
        if held_out is not None:
            rows["train"], rows[split] = hold_out(source, rows["train"], held_out, spec)
    return rows


def open_split(spec, split):
    """Returns the source of rows for `split` ("train", "validation" or "test")."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
    data = spec.data
    if split == "test" and data.test:
        return _source(spec, data.test)
    if split == "validation" and data.validation:
        return _source(spec, data.validation)
    if split == "test" and not data.test_split:
        raise SpecError("data.test: the spec names no test data; add `test: PATH` or `test_split: 0.1`.")
    if split == "validation" and not data.validation_split:
        raise SpecError(
            "data.validation: the spec has no validation data; add "
            "`validation: PATH` or `validation_split: 0.1`."
        )
    holds_out = data.validation_split is not None or data.test_split is not None
    train = _source(spec, data.train, held_out_columns=holds_out)
    if not holds_out:
        return train
    if not isinstance(train, ManifestSource):
        raise SpecError(
            "data.validation_split / data.test_split: TFRecords cannot be split; write the "
            "validation and test rows to their own files and set `data.validation` / `data.test`."
        )
    return ManifestSource(train.manifest.subset(held_out_rows(train, spec)[split]), spec)

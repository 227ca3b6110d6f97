"""A run's spec reading the rows of any manifest, and which of them can be read."""

import dataclasses

from mmkeras.data.dataset import bad_records
from mmkeras.data.splits import open_split

# The split name a manifest spec reads its rows as.
ROWS = "train"


def manifest_spec(spec, data):
    """The run's spec reading `data` as its only split, without a target, skipping bad rows."""
    return dataclasses.replace(
        spec,
        data=dataclasses.replace(
            spec.data,
            train=data,
            validation=None,
            validation_split=None,
            test=None,
            test_split=None,
            target=None,
            on_bad_record="skip",
        ),
    )


def readable_rows(spec):
    """({row key: "column: reason"} of the rows that cannot be read, the
    other rows' keys in manifest order) for a `manifest_spec`. Each row is
    decoded once, in the same cached check `make_dataset` consults."""
    problems = {}
    for record in bad_records(spec, ROWS, progress=False):
        problems.setdefault(record.location, f"{record.column}: {record.reason}")
    return problems, [key for key in open_split(spec, ROWS).keys() if key not in problems]

"""Rows of a held-out split that training already holds: the leakage report.

A validation or test row leaks when the training split has the same file
(compared by the SHA-1 of its bytes, not by its path) or the same text (after
collapsing whitespace and case). Such rows measure memory, not
generalisation. Each split's contents are indexed during the bad-record
check's single read of the data; the index keeps a digest, a row count and
the first manifest line per distinct value, never the values themselves.
"""

import dataclasses
import hashlib

# Offending values shown per feature and split, most repeated first.
WORST_SHOWN = 5


def content_digest(modality, value):
    """The digest two rows share when their value is the same, or None for no value."""
    if modality == "text":
        text = " ".join(value.split()).casefold()
        return hashlib.sha1(text.encode("utf-8", "surrogateescape")).digest() if text else None
    return hashlib.sha1(value).digest() if value else None


@dataclasses.dataclass
class ContentIndex:
    """The distinct values of one split, per feature: digest to [rows, first location]."""

    features: dict = dataclasses.field(default_factory=dict)

    def add(self, feature, digest, location):
        entry = self.features.setdefault(feature, {}).setdefault(digest, [0, location])
        entry[0] += 1


@dataclasses.dataclass
class Leak:
    """Rows of a held-out split whose value of one feature is also in training.

    Args:
        feature: str. The feature whose values repeat.
        split: str. The held-out split ("validation" or "test").
        rows: int. Its rows with a value training has.
        total: int. Its rows with a value at all.
        worst: list. (rows, location in the split, location in train) of
            the most repeated shared values.
    """

    feature: str
    split: str
    rows: int
    total: int
    worst: list


def find_leaks(indexes):
    """Leaks of every held-out split into training, from {split: ContentIndex}."""
    train = indexes["train"].features
    leaks = []
    for split, index in indexes.items():
        if split == "train":
            continue
        for feature, held in index.features.items():
            seen = train.get(feature, {})
            shared = sorted(
                (
                    (count, location, seen[digest][1])
                    for digest, (count, location) in held.items()
                    if digest in seen
                ),
                key=lambda entry: -entry[0],
            )
            total = sum(count for count, _ in held.values())
            if shared:
                leaks.append(Leak(feature, split, sum(e[0] for e in shared), total, shared[:WORST_SHOWN]))
    return leaks


def shared_groups(train_groups, held_groups):
    """The group values found on both sides of a split."""
    return sorted(set(train_groups) & set(held_groups))


def leakage_lines(leaks, group_checks):
    """The report as lines of text.

    Args:
        leaks: list. `find_leaks`'s Leaks.
        group_checks: list. (split, column, shared groups, groups in the split).
    """
    lines = []
    for split, column, shared, groups in group_checks:
        lines.append(f"{split}: {len(shared)} of its {groups} `{column}` groups are also in train")
        if shared:
            lines.append(f"  e.g. {', '.join(map(str, shared[:WORST_SHOWN]))}")
    for leak in leaks:
        lines.append(
            f"{leak.split}: {leak.rows} of {leak.total} rows share their `{leak.feature}` with train"
        )
        for count, location, train_location in leak.worst:
            times = f" ({count} rows)" if count > 1 else ""
            lines.append(f"  {location}{times} = {train_location}")
    if leaks or any(check[2] for check in group_checks):
        lines.append(
            "Rows that training has already seen measure memory, not generalisation, and steer early "
            "stopping and the best epoch wrongly. Remove them from the held-out split, or split by what "
            "ties them: `validation_split: {fraction: 0.1, group_by: <column>}` (a user, patient, event "
            "or picture) or `{fraction: 0.1, order_by: <date column>}`."
        )
    elif not lines:
        lines.append("no file or text of a held-out split is in train")
    return lines

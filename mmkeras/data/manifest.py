"""CSV and JSONL manifests: one row per example, files referenced by path."""

import csv
import dataclasses
import difflib
import json
import os

import numpy as np
import tensorflow as tf

from mmkeras.errors import BadValue, DataError, SpecError

TARGET_KEY = "__target__"
FILE_MODALITIES = ("image", "audio")


def _read_csv(path):
    # surrogateescape keeps bytes that are not UTF-8, so the data check can
    # name the row holding them instead of the whole file failing to open.
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        rows, lines = [], []
        for row in reader:
            rows.append({key: value for key, value in row.items() if key is not None})
            lines.append(reader.line_num)
    return header, rows, lines


def _read_jsonl(path):
    rows, lines, header = [], [], {}
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            text = raw.decode("utf-8", errors="surrogateescape").strip()
            if not text:
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as error:
                raise DataError(
                    f"{path}:{number}: not a JSON object ({error.msg}). "
                    "Each line of a .jsonl manifest must be one JSON object."
                ) from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{number}: expected a JSON object per line.")
            header.update(dict.fromkeys(row))
            rows.append(row)
            lines.append(number)
    return list(header), rows, lines


def _as_text(value):
    if value is None:
        return ""
    if isinstance(value, list):
        return "|".join(str(v) for v in value)
    return str(value)


@dataclasses.dataclass
class Manifest:
    """The rows of a CSV or JSONL manifest that a spec uses.

    Args:
        path: str. The manifest file.
        columns: dict. Column name to its values, one string per row; file
            paths are already resolved against the manifest's folder.
        lines: list. The line in the file where each row starts.
    """

    path: str
    columns: dict
    lines: list

    def __len__(self):
        return len(self.lines)

    def location(self, index):
        return f"{self.path}:{self.lines[index]}"

    def subset(self, indices):
        return dataclasses.replace(
            self,
            columns={k: [v[i] for i in indices] for k, v in self.columns.items()},
            lines=[self.lines[i] for i in indices],
        )

    def tensors(self, names):
        """Column values as UTF-8 bytes (invalid UTF-8 kept byte for byte)."""
        return {
            name: np.array(
                [v.encode("utf-8", "surrogateescape") for v in self.columns[column]],
                dtype=object,
            )
            for name, column in names.items()
        }


def read_rows(path):
    """All columns of a CSV or JSONL manifest: (header, rows as dicts, lines)."""
    if not os.path.exists(path):
        raise SpecError(f"manifest {path} does not exist. Check the path in the spec.")
    extension = os.path.splitext(path)[1].lower()
    if extension == ".csv":
        return _read_csv(path)
    if extension in (".jsonl", ".json"):
        return _read_jsonl(path)
    raise SpecError(
        f"{path}: unknown manifest type `{extension}`; use .csv, .jsonl, "
        "or a TFRecord glob ending in .tfrecord."
    )


def read_manifest(path, spec, held_out_columns=False):
    """Reads the columns that `spec` needs from a CSV or JSONL manifest.

    With `held_out_columns`, also the columns its held-out splits group or
    order the rows by (the training manifest's).
    """
    header, rows, lines = read_rows(path)
    data = spec.data
    wanted = {
        column: f"data.features[{f.name}].column" + (f"s[{name}]" if f.modality == "record" else "")
        for f in data.features
        for name, column in f.inputs.items()
    }
    if data.target is not None:
        wanted[data.target.column] = "data.target.column"
    if held_out_columns:
        wanted = {**data.held_out_columns(), **wanted}
    for column, field in wanted.items():
        if column not in header:
            close = difflib.get_close_matches(column, header, n=1)
            hint = f" Did you mean `{close[0]}`?" if close else ""
            raise SpecError(
                f"{field}: column `{column}` is not in {path}.{hint} "
                f"Its columns are: {', '.join(map(str, header)) or '(none)'}."
            )
    if not rows:
        raise DataError(f"{path} has no rows; a manifest needs at least one example.")
    folder = os.path.dirname(os.path.abspath(path))
    file_columns = tuple(f.column for f in data.features if f.modality in FILE_MODALITIES)
    columns = {}
    for column in wanted:
        values = [_as_text(row.get(column)) for row in rows]
        if column in file_columns:
            values = [os.path.join(folder, v) if v else "" for v in values]
        columns[column] = values
    return Manifest(path=path, columns=columns, lines=lines)


def empty_cell_problem(feature, problem):
    """What to say of an empty cell of a feature whose empty cells are bad rows."""
    return f"{problem}; if some rows lack `{feature.name}`, set `missing: mask` on it to train on them"


def _read_file(path, may_be_empty):
    """A file's bytes; with `may_be_empty`, no path gives empty bytes (a missing modality)."""
    if not may_be_empty:
        return tf.io.read_file(path)
    return tf.cond(tf.strings.length(path) > 0, lambda: tf.io.read_file(path), lambda: tf.constant(b""))


def split_indices(labels, fraction, seed, stratify):
    """Seeded train/validation split of row indices, per label if `stratify`."""
    rng = np.random.RandomState(seed)
    groups = {}
    for index, label in enumerate(labels if stratify else [""] * len(labels)):
        groups.setdefault(label, []).append(index)
    held_out = []
    for label in sorted(groups):
        members = np.array(groups[label])
        rng.shuffle(members)
        count = int(round(fraction * len(members)))
        held_out.extend(members[:count].tolist())
    held_out_set = set(held_out)
    kept = [i for i in range(len(labels)) if i not in held_out_set]
    return kept, sorted(held_out)


def split_indices_by_group(groups, labels, fraction, seed, stratify):
    """Seeded split of row indices whole groups at a time: (kept, held_out).

    `fraction` is the share of groups held out; with `stratify`, per label
    of each group's first row, so both sides keep the class balance.
    """
    first_label = {}
    for group, label in zip(groups, labels):
        first_label.setdefault(group, label)
    names = sorted(first_label)
    _, held = split_indices([first_label[name] for name in names], fraction, seed, stratify)
    held_groups = {names[i] for i in held}
    kept_rows = [i for i, group in enumerate(groups) if group not in held_groups]
    held_rows = [i for i, group in enumerate(groups) if group in held_groups]
    return kept_rows, held_rows


def split_by_group(rows, group, label, fractions, seed):
    """Rows (dicts) split into len(fractions) + 1 parts, no group in two parts.

    Groups (for example lesions) are assigned whole, seeded, and stratified by
    the `label` column of their first row (None: not stratified), so each
    part keeps the class balance. `fractions` are the held-out parts' shares
    of all groups; the first part gets the rest.
    """
    remaining = list(range(len(rows)))
    parts = []
    share_left = 1.0
    for fraction in fractions:
        kept, held = split_indices_by_group(
            [rows[i][group] for i in remaining],
            [rows[i][label] if label else "" for i in remaining],
            fraction / share_left,
            seed,
            True,
        )
        parts.append([rows[remaining[i]] for i in held])
        remaining = [remaining[i] for i in kept]
        share_left -= fraction
    return [[rows[i] for i in remaining], *parts]


class ManifestSource:
    """Reads one split from a manifest: paths and text in, file bytes out.

    Rows stay light (paths and short strings) until `load` reads the files,
    so sharding and shuffling happen before any file is opened.
    """

    def __init__(self, manifest, spec):
        self.manifest = manifest
        self.spec = spec
        self.name = manifest.path

    def __len__(self):
        return len(self.manifest)

    def column(self, column):
        """A column's values, one string per row; besides the columns the spec
        reads, any other of the manifest (read from the file then)."""
        if column in self.manifest.columns:
            return self.manifest.columns[column]
        header, rows, lines = read_rows(self.manifest.path)
        if column not in header:
            columns = ", ".join(map(str, header))
            raise DataError(f"{self.manifest.path} has no column `{column}`; its columns are: {columns}.")
        by_line = dict(zip(lines, rows))
        return [_as_text(by_line[line].get(column)) for line in self.manifest.lines]

    def keys(self):
        """Each row's key: `manifest:line`."""
        return [self.manifest.location(i) for i in range(len(self))]

    def records(self):
        """Yields `(key, values)` per row: each raw input's value (text, or a
        file's bytes) by input name; a bad value is a BadValue."""
        features = self.spec.data.features
        target = self.spec.data.target
        for index, key in enumerate(self.keys()):
            values = {}
            for feature in features:
                for name, column in feature.inputs.items():
                    try:
                        values[name] = self.fetch(index, feature, column)
                    except BadValue as error:
                        values[name] = error
            if target is not None:
                values[TARGET_KEY] = self.manifest.columns[target.column][index]
            yield key, values

    def fetch(self, index, feature, column=None):
        """A row's raw value of `feature` (of its `column`, for a record
        feature's columns): text, or the file's bytes."""
        value = self.manifest.columns[column or feature.column][index]
        if feature.modality not in FILE_MODALITIES:
            return value
        if not value:
            if feature.missing == "mask":
                return b""  # the modality is missing in this row
            raise BadValue(empty_cell_problem(feature, "no file path given"))
        if not os.path.isfile(value):
            raise BadValue(f"missing file {value}")
        with open(value, "rb") as f:
            return f.read()

    def rows(self, exclude=(), input_context=None):
        """A dataset of light rows (text and paths), this pipeline's shard."""
        data = self.spec.data
        names = data.input_columns()
        if data.target is not None:
            names[TARGET_KEY] = data.target.column
        kept = [i for i, key in enumerate(self.keys()) if key not in exclude]
        dataset = tf.data.Dataset.from_tensor_slices(self.manifest.subset(kept).tensors(names))
        if input_context:
            dataset = dataset.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        return dataset

    def load(self, row):
        """Reads the files behind a light row, in the tf.data graph."""
        row = dict(row)
        for feature in self.spec.data.features:
            if feature.modality in FILE_MODALITIES:
                row[feature.name] = _read_file(row[feature.name], feature.missing == "mask")
        return row

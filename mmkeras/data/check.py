"""The bad-record check: every row read and decoded once before training.

It uses the same decoders as the pipeline, so a row that passes cannot fail
halfway through an epoch, and a row that fails is named with its manifest,
line, column and reason.
"""

import collections
import concurrent.futures
import dataclasses
import itertools
import json
import os
import re

import tensorflow as tf
from tqdm.auto import tqdm

from mmkeras.data.leakage import ContentIndex, content_digest, find_leaks, leakage_lines, shared_groups
from mmkeras.data.manifest import TARGET_KEY, empty_cell_problem
from mmkeras.data.splits import open_split
from mmkeras.errors import BadValue
from mmkeras.preprocessing.preprocessor import feature_preprocessor
from mmkeras.preprocessing.record import number_problem
from mmkeras.tasks import task_class

CHUNK_ROWS = 256


@dataclasses.dataclass(frozen=True)
class BadRecord:
    """One unusable value: where it is, which column, and why."""

    location: str
    column: str
    reason: str

    def __str__(self):
        return f"{self.location} column `{self.column}`: {self.reason}"


def _first_line(error):
    """The op's own words from a TensorFlow error, without graph noise."""
    message = getattr(error, "message", None) or str(error)
    for line in message.splitlines():
        line = re.sub(r"\{\{function_node [^}]*\}\}|\[\[.*?\]\]|\[Op:[^\]]*\]", "", line).strip()
        if line and not line.startswith(("Graph execution error", "Detected at node", "File ")):
            return line
    return type(error).__name__


_decoders = {}


def _compiled_decoder(layer):
    """One traced decode function per image configuration, reused across checks."""
    key = json.dumps(
        {k: v for k, v in layer.get_config().items() if k != "name"}, sort_keys=True, default=str
    )
    if key not in _decoders:
        _decoders[key] = tf.function(layer.decode_one, input_signature=[tf.TensorSpec([], tf.string)])
    return _decoders[key]


def is_empty(value):
    """Whether a raw value is empty: text of spaces only, or no file."""
    return not isinstance(value, BadValue) and not (value.strip() if isinstance(value, str) else value)


def is_missing(feature, values):
    """Whether a row lacks `feature`: its raw value empty (for a record, every column's)."""
    return all(is_empty(values[name]) for name in feature.inputs)


def _is_utf8(text):
    # Bytes that are not UTF-8 were kept as lone surrogates when read.
    return not any("\udc80" <= c <= "\udcff" for c in text)


def _unless_masked(feature, problem):
    """No problem where the feature's empty cells are missing modalities."""
    return None if feature.missing == "mask" else empty_cell_problem(feature, problem)


class _Checker:
    """Checks the values of one split against one spec."""

    def __init__(self, spec, target_encoder):
        self.spec = spec
        self.target_encoder = target_encoder
        self.image_decoders = {
            f.name: _compiled_decoder(feature_preprocessor(f, spec))
            for f in spec.data.features
            if f.modality == "image"
        }

    def check_record(self, key, values):
        """The BadRecords of one row, given its raw values (see `records()`)."""
        problems = []
        features = self.spec.data.features
        for feature in features:
            if feature.modality == "record":
                problems.extend(self._check_record(feature, values))
                continue
            value = values[feature.name]
            if isinstance(value, BadValue):
                reason = str(value)
            else:
                reason = getattr(self, f"_check_{feature.modality}")(feature, value)
            if reason:
                problems.append((feature.column, reason))
        # Where a feature's empty cells are bad, its own check said so already.
        if all(f.missing == "mask" and is_missing(f, values) for f in features):
            columns = ", ".join(self.spec.data.input_columns().values())
            problems.append((columns, "every feature is empty: nothing to predict from"))
        target = self.spec.data.target
        if target is not None:
            reason = self._check_target(values[TARGET_KEY])
            if reason:
                problems.append((target.column, reason))
        return [BadRecord(key, column, reason) for column, reason in problems]

    def _check_text(self, feature, value):
        if not _is_utf8(value):
            return "text is not valid UTF-8"
        if not value.strip():
            return _unless_masked(feature, "empty text")
        return None

    def _check_record(self, feature, values):
        """(column, reason) of each unusable cell; empty cells are missing values."""
        problems = []
        for column in feature.columns:
            value = values[column.name]
            if not _is_utf8(value):
                problems.append((column.column, "text is not valid UTF-8"))
            elif column.type == "numeric" and number_problem(value):
                problems.append((column.column, number_problem(value)))
        if is_missing(feature, values) and feature.missing != "mask":
            columns = ", ".join(feature.inputs.values())
            problems.append((columns, empty_cell_problem(feature, "every cell of the record is empty")))
        return problems

    def _check_image(self, feature, data):
        # No bytes: a masked empty cell, a zero-byte file, or an empty TFRecord value.
        if not data:
            return _unless_masked(feature, "zero-byte file")
        try:
            self.image_decoders[feature.name](tf.constant(data))
        except tf.errors.InvalidArgumentError as error:
            message = _first_line(error)
            if "Unknown image file format" in message:
                return "not a JPEG, PNG, GIF or BMP image"
            return f"cannot be decoded as an image (truncated or corrupt): {message}"
        return None

    def _check_audio(self, feature, data):
        if not data:
            return _unless_masked(feature, "zero-byte file")
        try:
            _, rate = tf.audio.decode_wav(data)
        except tf.errors.InvalidArgumentError as error:
            return f"not a 16-bit PCM WAV file: {_first_line(error)}"
        if int(rate) != feature.sample_rate:
            return (
                f"sample rate {int(rate)} Hz, but the spec expects "
                f"{feature.sample_rate} Hz; resample the file or change "
                "`sample_rate`"
            )
        return None

    def _check_target(self, value):
        if not value.strip() and self.spec.data.target.type != "sequence":  # a caption names its own
            return "missing label"
        return self.target_encoder.problem(value)


def training_target_encoder(spec):
    """The task's target encoder, adapted on the training split's raw targets
    (the labels other splits' labels must come from), or None."""
    target = spec.data.target
    if target is None:
        return None
    encoder = task_class(target).target_encoder(spec)
    encoder.adapt(open_split(spec, "train").column(target.column))
    return encoder


@dataclasses.dataclass
class SplitCheck:
    """What one read of a split found.

    Args:
        rows: int. Rows in the split.
        bad: list. Its BadRecords.
        contents: ContentIndex. Its distinct files and texts, for the leakage report.
        targets: collections.Counter. Rows per raw label (each label of a
            multi-label target; empty for a numeric or sequence target or none).
        missing: collections.Counter. Rows per feature with `missing: mask`
            whose cell is empty: the modality is missing there.
        cut: int. Captions (a sequence target) longer than its `max_length`.
    """

    rows: int
    bad: list
    contents: ContentIndex
    targets: collections.Counter
    missing: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    cut: int = 0


def _digests(features, values):
    """(feature, digest) of each readable text or file of a row (a record's
    values are shared by many rows, so they say nothing of a leak)."""
    for feature in features:
        if feature.modality == "record":
            continue
        value = values[feature.name]
        if not isinstance(value, BadValue):
            digest = content_digest(feature.modality, value)
            if digest is not None:
                yield feature.name, digest


def _labels(target, value):
    if target is None or target.type in ("numeric", "sequence") or not value.strip():
        return []
    return [label for label in value.split(target.sep) if label] if target.type == "multilabel" else [value]


def check_split(spec, split, checker=None, progress=True):
    """Reads and decodes every row of `split` once; returns its SplitCheck."""
    source = open_split(spec, split)
    checker = checker or _Checker(spec, training_target_encoder(spec))
    features, target = spec.data.features, spec.data.target
    workers = min(16, 2 * (os.cpu_count() or 1))
    result = SplitCheck(len(source), [], ContentIndex(), collections.Counter())

    def check(record):
        key, values = record
        found = checker.check_record(key, values)
        missing = [f.name for f in features if f.missing == "mask" and is_missing(f, values)]
        return key, found, list(_digests(features, values)), values.get(TARGET_KEY), missing

    captions = []
    records = source.records()
    with (
        concurrent.futures.ThreadPoolExecutor(workers) as pool,
        tqdm(
            total=len(source), desc=f"checking {split}", unit="row", disable=not progress, leave=False
        ) as bar,
    ):
        # Bounded chunks keep only a few hundred rows' bytes in memory at once.
        while chunk := list(itertools.islice(records, CHUNK_ROWS)):
            for key, found, digests, label, missing in pool.map(check, chunk):
                result.bad.extend(found)
                result.missing.update(missing)
                for feature, digest in digests:
                    result.contents.add(feature, digest, key)
                result.targets.update(_labels(target, label or ""))
                if target is not None and target.type == "sequence":
                    captions.append(label or "")
            bar.update(len(chunk))
    if captions:
        result.cut = checker.target_encoder.cut_count(captions)
    return result


def available_splits(spec):
    data = spec.data
    splits = ["train"]
    if data.validation or data.validation_split:
        splits.append("validation")
    if data.test or data.test_split:
        splits.append("test")
    return splits


def check_spec(spec, progress: bool = True) -> dict:
    """Checks every split the spec names in one read each; returns {split: SplitCheck}."""
    checker = _Checker(spec, training_target_encoder(spec))
    return {
        split: check_split(spec, split, checker=checker, progress=progress)
        for split in available_splits(spec)
    }


# Classes listed per split in the summary; the rest are counted.
CLASSES_SHOWN = 10


def _balance(targets):
    if not targets:
        return ""
    total = sum(targets.values())
    shown = [
        f"{label} {count / total:.0%} ({count})"
        for label, count in sorted(targets.most_common(CLASSES_SHOWN))
    ]
    more = len(targets) - CLASSES_SHOWN
    return "; " + ", ".join(shown) + (f", and {more} more classes" if more > 0 else "")


def _how_held_out(name, held_out, spec):
    if held_out.group_by:
        how = f"{held_out.fraction:.0%} of the `{held_out.group_by}` groups of train, whole"
    elif held_out.order_by:
        how = f"the last {held_out.fraction:.0%} of train by `{held_out.order_by}`"
    else:
        stratified = spec.data.target is not None and task_class(spec.data.target).stratifies_splits
        how = f"{held_out.fraction:.0%} of train at random{', stratified by label' if stratified else ''}"
    return f"{name} is {how} (seed {spec.data.seed})"


def _group_checks(spec):
    """(split, column, shared groups, groups in the split) for each split held out by group."""
    checks = []
    train = None
    for split, held_out in (("validation", spec.data.validation_split), ("test", spec.data.test_split)):
        if held_out is not None and held_out.group_by:
            train = train or open_split(spec, "train")
            groups = open_split(spec, split).column(held_out.group_by)
            shared = shared_groups(train.column(held_out.group_by), groups)
            checks.append((split, held_out.group_by, shared, len(set(groups))))
    return checks


def data_report_lines(results, spec):
    """The split summary and the leakage report, as lines of text.

    Args:
        results: dict. `check_spec`'s {split: SplitCheck}.
        spec: Spec. How its splits were made.
    """
    lines = ["Splits:"]
    for split, check in results.items():
        bad = len({record.location for record in check.bad})
        lines.append(f"  {split:<11} {check.rows:>7} rows, {bad} bad{_balance(check.targets)}")
        if check.missing:
            counts = ", ".join(f"{feature} {count}" for feature, count in sorted(check.missing.items()))
            lines.append(f"  {'':<11} rows missing a modality (masked): {counts}")
        if check.cut:
            limit = spec.data.target.sequence.max_length
            lines.append(f"  {'':<11} captions longer than {limit} tokens, cut there: {check.cut}")
    for name, held_out in (("validation", spec.data.validation_split), ("test", spec.data.test_split)):
        if held_out is not None:
            lines.append(f"  {_how_held_out(name, held_out, spec)}")
    lines.append("Leakage between splits:")
    leaks = find_leaks({split: check.contents for split, check in results.items()})
    lines.extend(f"  {line}" for line in leakage_lines(leaks, _group_checks(spec)))
    return lines


def print_check_report(results, spec):
    """Prints the splits, the leakage report, each bad row and what training will do.

    Args:
        results: dict. `check_spec`'s {split: SplitCheck}.
        spec: Spec. Its `data.on_bad_record` says what happens next.

    Returns:
        The number of bad rows over all splits.
    """
    print("\n".join(data_report_lines(results, spec)))
    total_bad = 0
    for split, check in results.items():
        rows = len({record.location for record in check.bad})
        total_bad += rows
        if rows:
            print(f"{split}: {rows} bad row(s)")
        for record in check.bad:
            print(f"  {record}")
    if total_bad and spec.data.on_bad_record == "skip":
        print(f"{total_bad} bad row(s) will be skipped (data.on_bad_record: skip).")
    elif total_bad:
        print(
            "Training stops on these rows (data.on_bad_record: error): fix or "
            "remove them, or set `on_bad_record: skip` in the spec."
        )
    return total_bad

"""The bad-record check: every row read and decoded once before training.

It uses the same decoders as the pipeline, so a row that passes cannot fail
halfway through an epoch, and a row that fails is named with its manifest,
line, column and reason.
"""

import concurrent.futures
import dataclasses
import itertools
import json
import os
import re

import tensorflow as tf
from tqdm.auto import tqdm

from mmkeras.data.manifest import TARGET_KEY
from mmkeras.data.splits import open_split
from mmkeras.errors import BadValue
from mmkeras.preprocessing.preprocessor import feature_preprocessor
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
        for feature in self.spec.data.features:
            value = values[feature.name]
            if isinstance(value, BadValue):
                reason = str(value)
            else:
                reason = getattr(self, f"_check_{feature.modality}")(feature, value)
            if reason:
                problems.append((feature.column, reason))
        target = self.spec.data.target
        if target is not None:
            reason = self._check_target(values[TARGET_KEY])
            if reason:
                problems.append((target.column, reason))
        return [BadRecord(key, column, reason) for column, reason in problems]

    def _check_text(self, feature, value):
        # Bytes that are not UTF-8 were kept as lone surrogates when read.
        if any("\udc80" <= c <= "\udcff" for c in value):
            return "text is not valid UTF-8"
        if not value.strip():
            return "empty text"
        return None

    def _check_image(self, feature, data):
        if not data:
            return "zero-byte file"
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
            return "zero-byte file"
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
        if not value.strip():
            return "missing label"
        return self.target_encoder.problem(value)


def training_target_encoder(spec):
    """The task's target encoder, adapted on the training split's raw targets
    (the labels other splits' labels must come from), or None."""
    target = spec.data.target
    if target is None:
        return None
    encoder = task_class(target).target_encoder(target)
    encoder.adapt(open_split(spec, "train").column(target.column))
    return encoder


def check_split(spec, split, checker=None, progress=True):
    """Reads and decodes every row of `split`; returns the list of BadRecords."""
    source = open_split(spec, split)
    checker = checker or _Checker(spec, training_target_encoder(spec))
    workers = min(16, 2 * (os.cpu_count() or 1))
    bad = []
    records = source.records()
    with (
        concurrent.futures.ThreadPoolExecutor(workers) as pool,
        tqdm(
            total=len(source), desc=f"checking {split}", unit="row", disable=not progress, leave=False
        ) as bar,
    ):
        # Bounded chunks keep only a few hundred rows' bytes in memory at once.
        while chunk := list(itertools.islice(records, CHUNK_ROWS)):
            for found in pool.map(lambda record: checker.check_record(*record), chunk):
                bad.extend(found)
            bar.update(len(chunk))
    return bad


def available_splits(spec):
    data = spec.data
    splits = ["train"]
    if data.validation or data.validation_split:
        splits.append("validation")
    if data.test:
        splits.append("test")
    return splits


def check_spec(spec, progress: bool = True) -> dict:
    """Checks every split the spec names; returns {split: [BadRecord, ...]}."""
    checker = _Checker(spec, training_target_encoder(spec))
    return {
        split: check_split(spec, split, checker=checker, progress=progress)
        for split in available_splits(spec)
    }


def print_check_report(results, spec):
    """Prints each split's bad rows and what training will do about them.

    Args:
        results: dict. `check_spec`'s {split: [BadRecord, ...]}.
        spec: Spec. Its `data.on_bad_record` says what happens next.

    Returns:
        The number of bad rows over all splits.
    """
    total_bad = 0
    for split, records in results.items():
        rows = len({record.location for record in records})
        total_bad += rows
        print(f"{split:<11} {rows} bad row(s)")
        for record in records:
            print(f"  {record}")
    if total_bad and spec.data.on_bad_record == "skip":
        print(f"{total_bad} bad row(s) will be skipped (data.on_bad_record: skip).")
    elif total_bad:
        print(
            "Training stops on these rows (data.on_bad_record: error): fix or "
            "remove them, or set `on_bad_record: skip` in the spec."
        )
    return total_bad

"""`mmkeras predict`: a run's predictions for the rows of a manifest."""

import csv
import dataclasses
import os

from mmkeras.data.dataset import bad_records, make_dataset
from mmkeras.data.manifest import read_rows
from mmkeras.data.splits import open_split
from mmkeras.run_folder import load_run

BATCH_SIZE = 256


def _manifest_spec(spec, data):
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


def predict_run(run_dir: str, data: str, output: str | None = None) -> str:
    """Writes the input rows with prediction columns added; returns the output path.

    The rows stream through `make_dataset` in batches (memory does not grow
    with the manifest's images or audio) and keep their order. A row that
    cannot be read (missing file, undecodable image, ...) gets an `error`
    column naming the column and reason instead of a prediction; the other
    rows are predicted as usual. The target column is not needed.

    Args:
        run_dir: str. A folder written by `mmkeras train`.
        data: str. A CSV or JSONL manifest with the feature columns.
        output: str or None. Defaults to `<data>.predictions.csv` beside it.
    """
    run = load_run(run_dir)
    data = os.path.abspath(data)
    spec = _manifest_spec(run.spec, data)
    problems = {}
    # The same cached check make_dataset consults: every row decoded once.
    for record in bad_records(spec, "train", progress=False):
        problems.setdefault(record.location, f"{record.column}: {record.reason}")
    good_keys = [key for key in open_split(spec, "train").keys() if key not in problems]
    predicted = {}
    if good_keys:
        dataset = make_dataset(spec, "train", preprocessor=run.task.preprocessor, batch_size=BATCH_SIZE)
        keys = iter(good_keys)
        for inputs in dataset:
            for columns in run.task.prediction_columns(run.task.predict_on_batch(inputs)):
                predicted[next(keys)] = columns

    header, rows, lines = read_rows(data)
    output = output or os.path.splitext(data)[0] + ".predictions.csv"
    written = []
    for row, line in zip(rows, lines):
        key = f"{data}:{line}"
        written.append({**row, "error": problems.get(key, ""), **predicted.get(key, {})})
    columns = list(header) + [c for c in dict.fromkeys(k for r in written for k in r) if c not in header]
    with open(output, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(written)
    return output

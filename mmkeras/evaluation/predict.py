"""`mmkeras predict`: a run's predictions for the rows of a manifest."""

import csv
import os

from mmkeras.data.dataset import make_dataset
from mmkeras.data.manifest import read_rows
from mmkeras.evaluation.manifest_rows import ROWS, manifest_spec, readable_rows
from mmkeras.run_folder import load_run

BATCH_SIZE = 256


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
    spec = manifest_spec(run.spec, data)
    problems, good_keys = readable_rows(spec)
    predicted = {}
    if good_keys:
        dataset = make_dataset(spec, ROWS, preprocessor=run.task.preprocessor, batch_size=BATCH_SIZE)
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

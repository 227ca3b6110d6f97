"""`mmkeras predict`: a run's predictions for the rows of a manifest."""

import csv
import dataclasses
import os

import numpy as np

from mmkeras.data.dataset import bad_records
from mmkeras.data.manifest import read_rows
from mmkeras.training.row_sample import collect_sample
from mmkeras.training.run import load_run

ALL_ROWS = 10**9


def _prediction_columns(target, labels, prediction, preprocessor):
    if target.type == "categorical":
        best = int(np.argmax(prediction))
        columns = {"predicted_label": labels[best], "probability": f"{prediction[best]:.6f}"}
        columns.update({f"probability_{label}": f"{p:.6f}" for label, p in zip(labels, prediction)})
        return columns
    if target.type == "binary":
        positive = float(prediction[0])
        best = labels[1] if positive >= 0.5 else labels[0]
        return {"predicted_label": best, "probability": f"{max(positive, 1 - positive):.6f}"}
    if target.type == "multilabel":
        chosen = [label for label, p in zip(labels, prediction) if p >= 0.5]
        columns = {"predicted_labels": target.sep.join(chosen)}
        columns.update({f"probability_{label}": f"{p:.6f}" for label, p in zip(labels, prediction)})
        return columns
    return {"prediction": f"{float(preprocessor.target.decode(prediction)[0]):.6f}"}


def predict_run(run_dir, data, output=None):
    """Writes the input rows with prediction columns added; returns the output path.

    A row that cannot be read (missing file, undecodable image, ...) gets an
    `error` column naming the column and reason instead of a prediction;
    the other rows are predicted as usual. The target column is not needed.

    Args:
        run_dir: str. A folder written by `mmkeras train`.
        data: str. A CSV or JSONL manifest with the feature columns.
        output: str or None. Defaults to `<data>.predictions.csv` beside it.
    """
    spec, preprocessor, model = load_run(run_dir)
    target = spec.data.target
    data = os.path.abspath(data)
    rows_spec = dataclasses.replace(
        spec,
        data=dataclasses.replace(
            spec.data,
            train=data,
            validation=None,
            validation_split=None,
            test=None,
            target=None,
            on_bad_record="skip",
        ),
    )
    problems = {}
    # The same cached check collect_sample consults: every row decoded once.
    for record in bad_records(rows_spec, "train", progress=False):
        problems.setdefault(record.location, f"{record.column}: {record.reason}")
    sample = collect_sample(rows_spec, preprocessor, split="train", max_rows=ALL_ROWS)
    predictions = (
        dict(zip(sample.keys, model.predict(sample.inputs, batch_size=256, verbose=0))) if len(sample) else {}
    )
    labels = preprocessor.target.labels if target.is_classification else None

    header, rows, lines = read_rows(data)
    output = output or os.path.splitext(data)[0] + ".predictions.csv"
    written = []
    for row, line in zip(rows, lines):
        key = f"{data}:{line}"
        extra = {"error": problems.get(key, "")}
        if key in predictions:
            extra.update(_prediction_columns(target, labels, predictions[key], preprocessor))
        written.append({**{k: v for k, v in row.items()}, **extra})
    columns = list(header) + [c for c in dict.fromkeys(k for r in written for k in r) if c not in header]
    with open(output, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(written)
    return output

"""`mmkeras explain`: which modality, which words, which pixels made a run's predictions.

For each readable row of a manifest: integrated gradients of the explained
output (the predicted class's probability, a chosen label's, or the
predicted number) through every modality at once, written as

    OUTPUT_DIR/row_000.png ...    the row's attributions per modality
    OUTPUT_DIR/explanations.html  the texts' words highlighted, with the figures
    OUTPUT_DIR/attributions.json  the numbers behind them

and shown in TensorBoard (RUN/logs/explain). Rows that cannot be read are
listed with the column and the reason, and skipped.
"""

import json
import os

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from mmkeras.data.dataset import make_dataset
from mmkeras.data.manifest import read_rows
from mmkeras.errors import SpecError
from mmkeras.evaluation.manifest_rows import ROWS, manifest_spec, readable_rows
from mmkeras.explain.figures import explanation_figure, explanations_html
from mmkeras.explain.integrated_gradients import DEFAULT_STEPS, complete_integrated_gradients
from mmkeras.preprocessing.image import ImagePreprocessor
from mmkeras.preprocessing.record import RecordPreprocessor, column_width
from mmkeras.preprocessing.text import TextPreprocessor
from mmkeras.run_folder import load_run
from mmkeras.tasks.fusion_task import PREDICTION, FusionTask

DEFAULT_ROWS = 16
LOG_DIR = "explain"


def _kind(layer):
    if isinstance(layer, TextPreprocessor):
        return "text"
    if isinstance(layer, ImagePreprocessor):
        return "image"
    if isinstance(layer, RecordPreprocessor):
        return "record"
    return "audio"


def _part(name, layer, value, scores, raw_row):
    """A feature's panel data for `explanation_figure`: what the model read, and its attributions."""
    kind = _kind(layer)
    part = {"name": name, "kind": kind}
    if kind == "text":
        kept = value != 0  # padding
        part["tokens"] = [t for t, k in zip(layer.tokens(value), kept) if k]
        part["scores"] = scores[kept]
    elif kind == "image":
        low, high = layer.value_range
        part["picture"] = np.clip((value - low) / (high - low), 0, 1)
        part["scores"] = scores.sum(axis=-1)
    elif kind == "audio":
        part["spectrogram"] = value.reshape(value.shape[0], -1)
        part["scores"] = scores.reshape(scores.shape[0], -1)
    else:
        ends = np.cumsum([column_width(column) for column in layer.columns])
        part["columns"] = [f"{c['name']} = {raw_row.get(c['name'], '')}" for c in layer.columns]
        part["scores"] = np.array([chunk.sum() for chunk in np.split(scores, ends[:-1])])
    return part


def _shares(totals):
    magnitude = sum(abs(value) for value in totals.values())
    return {name: abs(value) / magnitude if magnitude else 0.0 for name, value in totals.items()}


def _explain_row(task, inputs, raw_row, label, steps):
    """(JSON record, figure parts, totals, gates) of one preprocessed row."""
    prediction = task(inputs, training=False)[PREDICTION].numpy()[0]
    unit, explained = task.explained_unit(prediction, label)
    attribution = complete_integrated_gradients(task, inputs, unit, steps)
    gates = task.backbone.modality_gates(inputs)
    gates = None if gates is None else dict(zip(task.feature_names, gates[0].tolist()))
    layers = task.preprocessor.features
    parts = [
        _part(n, layer, inputs[n].numpy()[0], attribution.features[n], raw_row) for n, layer in layers.items()
    ]
    totals = attribution.totals
    record = {
        "explained": explained,
        "prediction": task.prediction_columns(prediction[np.newaxis])[0],
        "value": attribution.value,
        "baseline_value": attribution.baseline_value,
        "steps": attribution.steps,
        "completeness_gap": attribution.completeness_gap,
        "modalities": {n: {"attribution": totals[n], "share": s} for n, s in _shares(totals).items()},
        "gates": gates,
        "text": {
            p["name"]: [[t, s] for t, s in zip(p["tokens"], p["scores"].tolist())]
            for p in parts
            if p["kind"] == "text"
        },
        "record": {
            p["name"]: dict(zip((c["name"] for c in layers[p["name"]].columns), p["scores"].tolist()))
            for p in parts
            if p["kind"] == "record"
        },
    }
    return record, parts, totals, gates


def _write_tensorboard(log_dir, figures, records):
    writer = tf.summary.create_file_writer(log_dir)
    with writer.as_default():
        for index, png in enumerate(figures):
            tf.summary.image(f"explain/row_{index:03d}", tf.io.decode_png(png)[tf.newaxis], step=0)
        names = list(records[0]["modalities"]) if records else []
        lines = ["| row | explained | value | " + " | ".join(names) + " |", "|---" * (len(names) + 3) + "|"]
        for record in records:
            shares = " | ".join(f"{record['modalities'][n]['share']:.0%}" for n in names)
            lines.append(f"| {record['row']} | {record['explained']} | {record['value']:.3f} | {shares} |")
        tf.summary.text("explain/modality_shares", "\n".join(lines), step=0)
    writer.flush()


def explain_run(run_dir, data, output_dir=None, max_rows=DEFAULT_ROWS, steps=DEFAULT_STEPS, label=None):
    """Explains a run's predictions on the first `max_rows` readable rows of a manifest.

    Args:
        run_dir: str. A folder written by `mmkeras train` (a classifier or regressor).
        data: str. A CSV or JSONL manifest with the feature columns.
        output_dir: str or None. Defaults to RUN/explanations.
        max_rows: int. How many readable rows to explain.
        steps: int. Equal path intervals to start from (the steepest
            are split until the attributions add up).
        label: str or None. Explain this class's probability instead of the
            predicted class's.

    Returns:
        dict: `output_dir`, `rows` (each row's record, as in
        attributions.json) and `skipped` ({row: "column: reason"}).
    """
    run = load_run(run_dir)
    if not isinstance(run.task, FusionTask):
        raise SpecError(
            f"{run_dir} holds a {type(run.task).__name__}; explain attributes the prediction of a "
            "classifier or regressor (a run with a categorical, binary, multi-label or numeric target)."
        )
    data = os.path.abspath(data)
    spec = manifest_spec(run.spec, data)
    skipped, keys = readable_rows(spec)
    keys = keys[:max_rows]
    output_dir = output_dir or os.path.join(run.folder.root, "explanations")
    os.makedirs(output_dir, exist_ok=True)
    _, rows, lines = read_rows(data)
    raw_rows = {f"{data}:{line}": row for row, line in zip(rows, lines)}
    records, figures = [], []
    dataset = make_dataset(spec, ROWS, preprocessor=run.task.preprocessor, batch_size=1).take(len(keys))
    for index, (key, inputs) in enumerate(tqdm(zip(keys, dataset), total=len(keys), desc="explaining")):
        record, parts, totals, gates = _explain_row(run.task, inputs, raw_rows[key], label, steps)
        record["row"] = f"{os.path.basename(data)} line {key.rsplit(':', 1)[1]}"
        record["figure"] = f"row_{index:03d}.png"
        title = f"{record['row']}: {record['explained']} {record['value']:.3f}"
        figures.append(
            explanation_figure(f"{title} (baselines {record['baseline_value']:.3f})", parts, totals, gates)
        )
        with open(os.path.join(output_dir, record["figure"]), "wb") as f:
            f.write(figures[-1])
        records.append(record)
    with open(os.path.join(output_dir, "explanations.html"), "w", encoding="utf-8") as f:
        f.write(explanations_html(records))
    summary = {"output_dir": output_dir, "rows": records, "skipped": skipped}
    with open(os.path.join(output_dir, "attributions.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, ensure_ascii=False)
    _write_tensorboard(os.path.join(run.folder.logs, LOG_DIR), figures, records)
    return summary

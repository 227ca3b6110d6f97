"""`mmkeras evaluate`: a run's metrics on a split, as JSON and PNG, with a modality ablation."""

import dataclasses
import json
import os

import numpy as np

from mmkeras.errors import SpecError
from mmkeras.preprocessing.preprocessor import MODALITY_MASK
from mmkeras.reporting import metrics as reports
from mmkeras.reporting import plots
from mmkeras.training.row_sample import collect_sample
from mmkeras.training.run import RunPaths, load_run

ALL_ROWS = 10**9


def _report(target, labels, true, predictions):
    if target.type in ("categorical", "binary"):
        return reports.classification_report(true, predictions, labels, target.type)
    if target.type == "multilabel":
        return reports.multilabel_report(true, predictions, labels)
    return reports.regression_report(true, predictions)


def headline(report):
    """The one number an ablation compares: accuracy, micro F1 or RMSE."""
    for name in ("accuracy", "micro_f1", "rmse"):
        if name in report:
            return name, report[name]
    raise KeyError("no headline metric")


def _write_plots(folder, target, report, true, predictions, ablation):
    files = {}
    if "confusion_matrix" in report:
        files["confusion_matrix.png"] = plots.confusion_matrix_figure(
            report["confusion_matrix"], report["labels"]
        )
        f1 = {label: s["f1"] for label, s in report["per_class"].items()}
        files["per_class_f1.png"] = plots.bar_figure(f1, "F1 per class", "F1")
    if target.type == "binary":
        positive = np.asarray(predictions).reshape(-1)
        fpr, tpr, auc = reports.roc_curve(true, positive)
        files["roc.png"] = plots.curve_figure(
            fpr, tpr, "false positive rate", "true positive rate", f"ROC (AUC {auc:.3f})", diagonal=True
        )
        recall, precision, ap = reports.precision_recall_curve(true, positive)
        files["precision_recall.png"] = plots.curve_figure(
            recall, precision, "recall", "precision", f"Precision-recall (AP {ap:.3f})"
        )
    if target.type == "numeric":
        files["predicted_vs_true.png"] = plots.scatter_figure(true, np.asarray(predictions).reshape(-1))
    name, _ = headline(report)
    files["modality_ablation.png"] = plots.bar_figure(
        {k: v[name] for k, v in ablation.items()}, f"{name} with each modality masked", name
    )
    for filename, png in files.items():
        with open(os.path.join(folder, filename), "wb") as f:
            f.write(png)
    return sorted(files)


def evaluate_run(run_dir, data=None, split="test", output_dir=None):
    """Evaluates a finished run; writes `metrics.json` and plots; returns the report.

    Args:
        run_dir: str. A folder written by `mmkeras train`.
        data: str or None. A manifest to evaluate on instead of the spec's split.
        split: str. The spec's split to use when `data` is None ("test" falls
            back to "validation" when the spec names no test data).
        output_dir: str or None. Defaults to `RUN/evaluation/<split or file name>`.

    The report holds the metrics for the target type and `modality_ablation`:
    the headline metric with all modalities, and with each one masked in turn
    (its input zeroed and its `modality_mask` entry set to 0).
    """
    spec, preprocessor, model = load_run(run_dir)
    target = spec.data.target
    if target is None:
        raise SpecError("evaluate: this run is a retrieval model; use mmkeras.models.recall_at_k.")
    if data is not None:
        spec = dataclasses.replace(spec, data=dataclasses.replace(spec.data, test=os.path.abspath(data)))
        split = "test"
    elif split == "test" and not spec.data.test:
        split = "validation"
    sample = collect_sample(spec, preprocessor, split=split, max_rows=ALL_ROWS)
    labels = preprocessor.target.labels if target.is_classification else None
    predictions = model.predict(sample.inputs, batch_size=256, verbose=0)
    true = sample.targets
    if target.type == "numeric":
        true = preprocessor.target.decode(true)
        predictions = preprocessor.target.decode(predictions)
    report = _report(target, labels, true, predictions)

    name, value = headline(report)
    ablation = {"all modalities": {name: value}}
    for index, feature in enumerate(spec.data.features):
        inputs = dict(sample.inputs)
        inputs[feature.name] = np.zeros_like(inputs[feature.name])
        mask = inputs[MODALITY_MASK].copy()
        mask[:, index] = 0
        inputs[MODALITY_MASK] = mask
        masked = model.predict(inputs, batch_size=256, verbose=0)
        if target.type == "numeric":
            masked = preprocessor.target.decode(masked)
        ablation[f"without {feature.name}"] = {name: headline(_report(target, labels, true, masked))[1]}
    report["modality_ablation"] = ablation
    report["split"] = os.path.abspath(data) if data else split

    folder = output_dir or os.path.join(
        RunPaths(os.path.abspath(run_dir)).root,
        "evaluation",
        os.path.splitext(os.path.basename(data))[0] if data else split,
    )
    os.makedirs(folder, exist_ok=True)
    report["plots"] = _write_plots(folder, target, report, true, predictions, ablation)
    with open(os.path.join(folder, "metrics.json"), "w") as f:
        json.dump(report, f, indent=2)
    report["output_dir"] = folder
    return report

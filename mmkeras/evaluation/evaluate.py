"""`mmkeras evaluate`: a run's metrics on a split, as JSON and PNG."""

import dataclasses
import json
import os

import numpy as np

from mmkeras.data.check import available_splits
from mmkeras.data.dataset import good_column, make_dataset
from mmkeras.errors import SpecError
from mmkeras.evaluation.baselines import evaluate_baselines
from mmkeras.evaluation.caption_baselines import evaluate_caption_baselines
from mmkeras.reporting import plots
from mmkeras.run_folder import load_run
from mmkeras.tasks import Captioner

BATCH_SIZE = 256


def _curve_metric(task, report, history):
    """The metric to plot beside the loss: the headline one when training logged it."""
    if task.compares_to_baselines and task.headline(report)[0] in history:
        return task.headline(report)[0]
    logged = [
        name
        for name in history
        if not name.startswith("val_") and name != "learning_rate" and not name.endswith(("loss", "_ogr"))
    ]
    return logged[0] if logged else "loss"


def _compare_with_baselines(task, spec, split, evaluation):
    """Adds `baselines`, `above_baselines` and a bar chart of both to an evaluation."""
    report = evaluation.report
    name, value = task.headline(report)
    if isinstance(task, Captioner):  # captions to beat, not linear models
        baselines = evaluate_caption_baselines(task, spec, split)
    else:
        baselines = evaluate_baselines(task, spec, split, evaluation.targets)
    sign = 1 if task.higher_is_better else -1
    report["baselines"] = baselines
    report["above_baselines"] = {
        baseline: sign * (value - scores[name]) for baseline, scores in baselines.items()
    }
    bars = {"model": value, **{baseline: scores[name] for baseline, scores in baselines.items()}}
    evaluation.figures["baselines.png"] = plots.bar_figure(bars, f"{name}: the model and its baselines", name)


def _by_group(task, spec, split, evaluation, column):
    """The report's numbers (accuracy, F1, ...) on each value of `column`'s
    rows, with their count, and a bar chart of the headline."""
    if evaluation.predictions is None:
        raise SpecError(f"--by {column}: a {type(task).__name__} is scored over the whole split only.")
    values = np.asarray(good_column(spec, split, column))
    name = evaluation.report["headline"]
    groups = {}
    for value in sorted(set(values)):
        rows = values == value
        report = task.report(evaluation.targets[rows], evaluation.predictions[rows])
        groups[str(value)] = {key: v for key, v in report.items() if isinstance(v, float)}
        groups[str(value)]["rows"] = int(rows.sum())
    figure = plots.bar_figure(
        {f"{value} ({group['rows']})": group[name] for value, group in groups.items()},
        f"{name} by {column} (rows)",
        name,
    )
    return groups, figure


def evaluate_run(
    run_dir: str,
    data: str | None = None,
    split: str = "test",
    output_dir: str | None = None,
    baselines: bool = True,
    by: tuple = (),
) -> dict:
    """Evaluates a finished run; writes `metrics.json` and plots; returns the report.

    The rows stream through `make_dataset` in batches, so memory does not
    grow with the split. What is measured is the Task's own report: for a
    classifier per-class precision/recall/F1 and the confusion matrix (ROC
    and precision-recall for a binary target), for a regressor MAE/RMSE, and
    for both `modality_ablation`, the headline metric with each modality
    masked in turn; for a dual encoder recall@k both ways.

    Args:
        run_dir: str. A folder written by `mmkeras train`.
        data: str or None. A manifest to evaluate on instead of the spec's split.
        split: str. The spec's split to use when `data` is None ("test" falls
            back to "validation" when the spec names no test data).
        output_dir: str or None. Defaults to `RUN/evaluation/<split or file name>`.
        baselines: bool. Also train and score the linear baselines (see
            `mmkeras.evaluation.baselines`) and report how far above them
            the model is.
        by: tuple of str. Manifest columns (read, not fed to the model, such
            as a question type or a site) to score each value's rows of
            apart: `report["by"][column][value]` holds the metrics and the
            row count, `by_<column>.png` shows the headline.

    Returns:
        The report (a dict), with `plots` (the PNG files written) and
        `output_dir` added.
    """
    run = load_run(run_dir)
    spec = run.spec
    if data is not None:
        spec = dataclasses.replace(spec, data=dataclasses.replace(spec.data, test=os.path.abspath(data)))
        split = "test"
    elif split == "test" and "test" not in available_splits(spec):
        split = "validation"
    dataset = make_dataset(spec, split, preprocessor=run.task.preprocessor, batch_size=BATCH_SIZE)
    evaluation = run.task.evaluate_dataset(dataset)
    report = evaluation.report
    report["split"] = os.path.abspath(data) if data else split
    history = run.folder.read_history()
    if history:
        metric = _curve_metric(run.task, report, history)
        evaluation.figures["training_curves.png"] = plots.training_curves_figure(
            history, metric, loss=run.task.loss_to_monitor
        )
        if run.task.unimodal_heads and f"val_{run.task.loss_to_monitor}" in history:
            evaluation.figures["head_curves.png"] = plots.head_curves_figure(history, run.task.head_names)
    if baselines and run.task.compares_to_baselines:
        _compare_with_baselines(run.task, spec, split, evaluation)
    if by:
        report["by"] = {}
        for column in by:
            report["by"][column], evaluation.figures[f"by_{column}.png"] = _by_group(
                run.task, spec, split, evaluation, column
            )

    name = os.path.splitext(os.path.basename(data))[0] if data else split
    folder = output_dir or run.folder.evaluation(name)
    os.makedirs(folder, exist_ok=True)
    for filename, png in evaluation.figures.items():
        with open(os.path.join(folder, filename), "wb") as f:
            f.write(png)
    report["plots"] = sorted(evaluation.figures)
    with open(os.path.join(folder, "metrics.json"), "w") as f:
        json.dump(report, f, indent=2)
    report["output_dir"] = folder
    return report

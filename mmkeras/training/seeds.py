"""The same spec trained under several seeds: is a difference real or noise?"""

import dataclasses
import json
import os

import numpy as np

from mmkeras.data.check import available_splits
from mmkeras.evaluation.evaluate import evaluate_run
from mmkeras.run_folder import RunFolder
from mmkeras.training.run import train


@dataclasses.dataclass
class SeedsResult:
    """What `train_seeds` returns.

    Args:
        runs: dict. Seed to its run folder.
        headline: str or None. The task's headline metric on the validation
            split (e.g. `balanced_accuracy`), None without validation data.
        summary: dict. Metric to {"mean", "std", "min", "max", "values"}
            over the seeds: the headline first, then the final metrics
            training logged.
        path: str. The `seeds.json` holding all three.
    """

    runs: dict
    headline: str | None
    summary: dict
    path: str


def summarize_seeds(metrics_by_seed):
    """Mean, standard deviation (n - 1), range and values of each metric over seeds."""
    names = [name for name in next(iter(metrics_by_seed.values())) if name != "train_seconds"]
    summary = {}
    for name in names:
        values = np.asarray([metrics[name] for metrics in metrics_by_seed.values()], np.float64)
        summary[name] = {
            "mean": float(values.mean()),
            "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "min": float(values.min()),
            "max": float(values.max()),
            "values": values.tolist(),
        }
    return summary


def validation_headline(run_dir):
    """(name, value) of the task's headline metric on a run's validation split.

    Read from an earlier evaluation when the run folder has one, so a
    resumed series does not score finished seeds again.
    """
    saved = os.path.join(RunFolder(run_dir).evaluation("validation"), "metrics.json")
    if os.path.exists(saved):
        with open(saved) as f:
            report = json.load(f)
    else:
        report = evaluate_run(run_dir, split="validation", baselines=False)
    return report["headline"], report[report["headline"]]


def train_seeds(spec, output_dir, num_seeds, overwrite=False, verbose=1):
    """Trains the spec `num_seeds` times, seeds `train.seed`, `train.seed + 1`, ...

    Each run is a run folder of its own, `output_dir/seed-<seed>` (a killed
    series resumes: finished seeds are kept, the unfinished one resumes).
    The seed changes the weights' initialisation, dropout and the order of
    the rows; the data split (`data.seed`) stays the same, so the spread is
    the training's own. With validation data each run is also scored by the
    task's headline metric on it (`mmkeras evaluate RUN --split validation`),
    the number a user compares two specs by.

    Returns:
        A SeedsResult; `output_dir/seeds.json` holds the same.
    """
    has_validation = "validation" in available_splits(spec)
    runs, metrics, headline = {}, {}, None
    for seed in range(spec.train.seed, spec.train.seed + num_seeds):
        seeded = dataclasses.replace(spec, train=dataclasses.replace(spec.train, seed=seed))
        run_dir = os.path.join(output_dir, f"seed-{seed}")
        finished = os.path.exists(os.path.join(run_dir, "metrics.json")) and not overwrite
        if finished:
            with open(os.path.join(run_dir, "metrics.json")) as f:
                trained = {k: v for k, v in json.load(f).items() if isinstance(v, (int, float))}
        else:
            trained = train(seeded, run_dir, overwrite=overwrite, verbose=verbose).metrics
        metrics[seed] = trained
        if has_validation:
            headline, value = validation_headline(run_dir)
            metrics[seed] = {headline: value, **{k: v for k, v in trained.items() if k != headline}}
        runs[seed] = run_dir
    summary = summarize_seeds(metrics)
    path = os.path.join(output_dir, "seeds.json")
    with open(path, "w") as f:
        json.dump({"runs": runs, "headline": headline, "summary": summary}, f, indent=2)
    return SeedsResult(runs, headline, summary, path)

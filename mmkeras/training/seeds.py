"""The same spec trained under several seeds: is a difference real or noise?"""

import dataclasses
import json
import os

import numpy as np

from mmkeras.training.run import train


@dataclasses.dataclass
class SeedsResult:
    """What `train_seeds` returns.

    Args:
        runs: dict. Seed to its run folder.
        summary: dict. Metric to {"mean", "std", "min", "max", "values"}
            over the seeds' final validation metrics.
        path: str. The `seeds.json` holding both.
    """

    runs: dict
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


def train_seeds(spec, output_dir, num_seeds, overwrite=False, verbose=1):
    """Trains the spec `num_seeds` times, seeds `train.seed`, `train.seed + 1`, ...

    Each run is a run folder of its own, `output_dir/seed-<seed>` (a killed
    series resumes: finished seeds are kept, the unfinished one resumes).
    The seed changes the weights' initialisation, dropout and the order of
    the rows; the data split (`data.seed`) stays the same, so the spread is
    the training's own.

    Returns:
        A SeedsResult; `output_dir/seeds.json` holds the same.
    """
    runs, metrics = {}, {}
    for seed in range(spec.train.seed, spec.train.seed + num_seeds):
        seeded = dataclasses.replace(spec, train=dataclasses.replace(spec.train, seed=seed))
        run_dir = os.path.join(output_dir, f"seed-{seed}")
        finished = os.path.exists(os.path.join(run_dir, "metrics.json")) and not overwrite
        if finished:
            with open(os.path.join(run_dir, "metrics.json")) as f:
                metrics[seed] = json.load(f)
        else:
            metrics[seed] = train(seeded, run_dir, overwrite=overwrite, verbose=verbose).metrics
        runs[seed] = run_dir
    summary = summarize_seeds(metrics)
    path = os.path.join(output_dir, "seeds.json")
    with open(path, "w") as f:
        json.dump({"runs": runs, "summary": summary}, f, indent=2)
    return SeedsResult(runs, summary, path)

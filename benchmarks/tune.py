"""Hyperparameter search on degraded AV-MNIST (99% of the image energy removed,
audio at 10 dB SNR, the fusion testbed of the README): is the spec `mmkeras tune`
finds at least as good as the builder's default spec?

Searches the learning rate, the fusion, modality dropout and the head's
dropout with KerasTuner (Bayesian optimisation by default) for `--trials`
trainings on the validation accuracy. The first trial is the default spec
itself; both it and the best trial are then scored on the test split, which
the search never saw.

    MMKERAS_DATA=../shared/data python benchmarks/tune.py --trials 6 --json tune.json
"""

import argparse
import os
import sys
import tempfile

import yaml
from progress import write_json

from mmkeras.datasets import build_avmnist
from mmkeras.evaluation import evaluate_run
from mmkeras.quickstart import AVMNIST_DEGRADATION
from mmkeras.spec import Spec
from mmkeras.tune import tune

SPACE = {
    "train.learning_rate": {"min": 0.0003, "max": 0.01, "log": True},
    "model.fusion.type": {"choice": ["concat", "gated", "low_rank_tensor"]},
    "model.fusion.modality_dropout": {"min": 0.0, "max": 0.3, "step": 0.1},
    "model.head.dropout_rate": {"min": 0.1, "max": 0.5, "step": 0.1},
}


def _shown(value):
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=6, help="trainings in the search (default 6)")
    parser.add_argument(
        "--algorithm", default="bayesian", choices=("bayesian", "hyperband", "random"), help="the search"
    )
    parser.add_argument("--work-dir", help="where data and the search go (default: a temporary folder)")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args(argv)
    work = args.work_dir or tempfile.mkdtemp(prefix="mmkeras-tune-")
    data = os.path.join(work, "data")
    build_avmnist(data, **AVMNIST_DEGRADATION)
    with open(os.path.join(data, "spec.yaml")) as f:
        mapping = yaml.safe_load(f)
    mapping["tune"] = {"algorithm": args.algorithm, "max_trials": args.trials, "space": SPACE}
    spec = Spec.from_dict(mapping, base_dir=data)
    result = tune(spec, os.path.join(work, "search"), verbose=0)
    default, best = result.trials[0]["trial"], result.best_trial
    scores = {}
    for name, trial in (("default spec", default), ("best trial", best)):
        report = evaluate_run(os.path.join(result.output_dir, f"trial_{trial}"), baselines=False)
        row = next(r for r in result.trials if r["trial"] == trial)
        scores[name] = {
            "trial": trial,
            "validation_accuracy": row["accuracy"],
            "test_accuracy": report["accuracy"],
            "values": {k: v for k, v in row.items() if k in SPACE},
        }
    print()
    print("| spec | trial | validation accuracy | test accuracy | values |")
    print("|---|---|---|---|---|")
    for name, score in scores.items():
        values = ", ".join(f"{path.split('.')[-1]} {_shown(v)}" for path, v in score["values"].items())
        accuracies = f"{score['validation_accuracy']:.3f} | {score['test_accuracy']:.3f}"
        print(f"| {name} | {score['trial']} | {accuracies} | {values} |")
    results = {"trials": result.trials, "scores": scores}
    write_json(args.json, results)
    return results


if __name__ == "__main__":
    sys.exit(0 if main() else 1)

"""mmkeras's default training settings on the real data sets, against the
settings they replaced and against the baselines, over several seeds.

For each data set the builder's spec is trained N times (seeds 0..N-1) as it
is, with the defaults (AdamW with weight decay, a warm-up, early stopping
with the best epoch's weights, modality dropout, class weights where the
classes are imbalanced, each encoder trained through its own head and a
shortcut modality switched off), and N times with the settings before them
(Adam, ending on the last epoch's weights, none of the rest). `--augment` adds
image augmentation to the defaults, to measure it (it is not a default: see
the README).
Each run is scored on the test split with the task's headline metric; the
linear baselines (`mmkeras.evaluation.baselines`) are scored once per data
set. Also reported: the spread (max - min) of each run's last three
validation-loss values, the curve's stability. This is the README's table.

    MMKERAS_DATA=../shared/data python benchmarks/defaults.py --seeds 3 --json defaults.json
"""

import argparse
import csv
import dataclasses
import os
import sys
import tempfile

import numpy as np
from progress import mean_and_spread, measure_each

from mmkeras.datasets import build_avmnist, build_emoji, build_flickr8k, build_ham10000
from mmkeras.evaluation import evaluate_run
from mmkeras.quickstart import AVMNIST_DEGRADATION
from mmkeras.spec.data import ImageAugmentation
from mmkeras.tasks.dual_encoder import HEADLINE_RECALL
from mmkeras.training import train


def with_text_split(spec, split):
    """The spec with every text feature split this way."""
    features = [
        dataclasses.replace(f, split=split) if f.modality == "text" else f for f in spec.data.features
    ]
    return dataclasses.replace(spec, data=dataclasses.replace(spec.data, features=features))


DATASETS = {
    "avmnist": lambda folder: build_avmnist(folder, **AVMNIST_DEGRADATION),
    "emoji": build_emoji,
    "ham10000": build_ham10000,
    "flickr8k": build_flickr8k,
    "flickr8k_zh": lambda folder: build_flickr8k(folder, language="zh"),
    # What the Chinese captions give when split on whitespace only: one token a caption.
    "flickr8k_zh_whitespace": lambda folder: with_text_split(
        build_flickr8k(folder, language="zh"), "whitespace"
    ),
}

# The mild augmentation `--augment` measures.
AUGMENTATION = {"rotation": 0.02, "zoom": 0.1, "contrast": 0.1}


def with_augmentation(spec):
    """The spec with `AUGMENTATION` on every image feature."""
    augment = ImageAugmentation(**AUGMENTATION)
    features = [
        dataclasses.replace(f, augment=augment) if f.modality == "image" else f for f in spec.data.features
    ]
    return dataclasses.replace(spec, data=dataclasses.replace(spec.data, features=features))


def previous_settings(spec):
    """The spec with every default this benchmark measures turned off."""
    return dataclasses.replace(
        spec,
        model=dataclasses.replace(
            spec.model,
            fusion={**spec.model.fusion, "modality_dropout": 0.0},
            balance=dataclasses.replace(spec.model.balance, head_weight=0.0, switch_off=False),
        ),
        train=dataclasses.replace(
            spec.train,
            optimizer="adam",
            weight_decay=0.0,
            warmup_epochs=0.0,
            early_stopping_patience=None,
            restore_best_weights=False,
            class_weight=None,
        ),
    )


def headline(report):
    """(name, value) of a run's test report."""
    return report["headline"], report[report["headline"]]


def last_epochs_spread(run_dir, count=3):
    with open(os.path.join(run_dir, "history.csv")) as f:
        # The fused head's loss: `val_loss` also holds the unimodal heads'.
        losses = [float(row.get("val_fused_loss") or row["val_loss"]) for row in csv.DictReader(f)]
    tail = losses[-count:]
    return max(tail) - min(tail)


VARIANTS = ("defaults", "previous")


def measure(name, work, seeds, augment=False, variants=VARIANTS):
    spec = DATASETS[name](os.path.join(work, name, "data"))
    specs = {"defaults": with_augmentation(spec) if augment else spec, "previous": previous_settings(spec)}
    result = {"runs": {}, "spread": {}}
    for variant in variants:
        variant_spec = specs[variant]
        scores, spreads = [], []
        for seed in range(seeds):
            run_dir = os.path.join(work, name, variant, f"seed-{seed}")
            seeded = dataclasses.replace(
                variant_spec, train=dataclasses.replace(variant_spec.train, seed=seed)
            )
            train(seeded, run_dir, overwrite=True, verbose=0)
            first = variant == variants[0] and seed == 0
            report = evaluate_run(run_dir, baselines=first)
            metric, value = headline(report)
            if first:
                result["metric"] = metric
                result["baselines"] = {k: v[metric] for k, v in report.get("baselines", {}).items()}
                if metric == HEADLINE_RECALL:  # the chance of the right picture in the top 10
                    result["baselines"]["chance"] = min(1.0, 10 / report["rows"])
            scores.append(value)
            spreads.append(last_epochs_spread(run_dir))
            print(f"{name:<9} {variant:<9} seed {seed}: {metric} {value:.3f}", flush=True)
        result["runs"][variant] = scores
        result["spread"][variant] = spreads
    return result


def table(results):
    lines = [
        "| data set | metric | constant / chance | best linear baseline | previous settings | defaults |"
        " last-3-epoch val-loss spread (defaults) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, result in results.items():
        baselines = dict(result["baselines"])
        constant = baselines.pop("constant", baselines.pop("chance", float("nan")))
        best = max(baselines.items(), key=lambda kv: kv[1]) if baselines else ("-", float("nan"))

        runs = result["runs"]
        spread = result["spread"].get("defaults")
        lines.append(
            f"| {name} | {result['metric']} | {constant:.3f} | {best[1]:.3f} ({best[0]}) | "
            f"{mean_and_spread(runs.get('previous'))} | {mean_and_spread(runs.get('defaults'))} | "
            f"{f'{np.mean(spread):.3f}' if spread else '-'} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--seeds", type=int, default=3, help="runs per setting (default 3)")
    parser.add_argument("--work-dir", help="where data and runs go (default: a temporary folder)")
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--augment", action="store_true", help="add image augmentation to the defaults")
    parser.add_argument(
        "--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS, help="which settings to train"
    )
    args = parser.parse_args(argv)
    work = args.work_dir or tempfile.mkdtemp(prefix="mmkeras-defaults-")
    variants = tuple(args.variants)
    results = measure_each(
        args.datasets, lambda name: measure(name, work, args.seeds, args.augment, variants), args.json
    )
    print()
    print(table(results))
    return results


if __name__ == "__main__":
    sys.exit(0 if main() else 1)

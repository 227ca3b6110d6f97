"""Does the fused model beat its best modality? The balance settings
(`model.balance`) on the fusion testbeds, against each modality alone.

Testbeds:
- `avmnist`: degraded AV-MNIST (the quickstart's), where the picture and the
  sound each carry part of the digit;
- `avmnist_shortcut`: the same rows with a `note` word that names the label
  in 90% of the training rows and is random in validation and test: a model
  that trusts it fails on unseen rows. Its reference is the same spec
  without the note.
- `emoji`, `emoji_shortcut`: emoji names and pictures to their category,
  without and with the same kind of note.
- `ham10000`: dermoscopy pictures and the patient's record (age, sex, body
  site) to the diagnosis, seven imbalanced classes.

Each fused variant and each single-modality model is trained with seeds
0..N-1 and scored on the test split with the task's headline metric; the
fused runs also report each unimodal head's score.

    MMKERAS_DATA=../shared/data python benchmarks/balance.py --seeds 3 --json balance.json
"""

import argparse
import dataclasses
import os
import sys
import tempfile

import numpy as np
from progress import mean_and_spread, measure_each

from mmkeras.datasets import build_avmnist, build_emoji, build_ham10000
from mmkeras.evaluation import evaluate_run
from mmkeras.quickstart import AVMNIST_DEGRADATION, single_modality_spec
from mmkeras.spec.model import BalanceSpec
from mmkeras.training import train

TESTBEDS = {
    "avmnist": lambda folder: build_avmnist(folder, **AVMNIST_DEGRADATION),
    "avmnist_shortcut": lambda folder: build_avmnist(folder, shortcut=0.9, **AVMNIST_DEGRADATION),
    "emoji": lambda folder: build_emoji(folder),
    "emoji_shortcut": lambda folder: build_emoji(folder, shortcut=0.9),
    "ham10000": lambda folder: build_ham10000(folder),
}
SHORTCUT_FEATURE = "note"
# The fused variants: `model.balance` settings over the spec's own.
# The README's figures for freezing and OGM were measured beside `head_weight: 0`.
VARIANTS = {
    "default": {},
    "no switch_off": {"switch_off": False},
    "head_weight_0": {"head_weight": 0.0},
    "head_weight_0, no switch_off": {"head_weight": 0.0, "switch_off": False},
    "gradient_blending": {"head_weight": 1.0, "method": "gradient_blending", "switch_off": False},
    "freeze_after_2": {"head_weight": 0.0, "freeze_after": 2},
    "ogm": {"head_weight": 0.0, "method": "ogm", "switch_off": False},
    "ogm_ge": {"head_weight": 0.0, "method": "ogm_ge", "switch_off": False},
    "ogm_ge_alpha_0.1": {"head_weight": 0.0, "method": "ogm_ge", "ogm_alpha": 0.1, "switch_off": False},
    # Each mitigation on top of the defaults, for the README's table.
    "default + gradient_blending": {"method": "gradient_blending"},
    "default + ogm_ge": {"method": "ogm_ge"},
    "default + freeze_after_2": {"freeze_after": 2},
}


# Every name `models` can give, for `--only`.
MODEL_NAMES = {
    *(f"fused, {name}" for name in VARIANTS),
    "fused without the note",
}


def with_balance(spec, **settings):
    balance = BalanceSpec(**{**dataclasses.asdict(spec.model.balance), **settings})
    return dataclasses.replace(spec, model=dataclasses.replace(spec.model, balance=balance))


def without_feature(spec, name):
    """The spec without one feature (and its encoder)."""
    return dataclasses.replace(
        spec,
        data=dataclasses.replace(spec.data, features=[f for f in spec.data.features if f.name != name]),
        model=dataclasses.replace(
            spec.model, encoders={k: v for k, v in spec.model.encoders.items() if k != name}
        ),
    )


def models(spec):
    """{name: spec} of every model a testbed trains."""
    specs = {f"fused, {name}": with_balance(spec, **settings) for name, settings in VARIANTS.items()}
    specs.update({f"{f.name} alone": single_modality_spec(spec, f) for f in spec.data.features})
    if any(f.name == SHORTCUT_FEATURE for f in spec.data.features):
        specs["fused without the note"] = without_feature(spec, SHORTCUT_FEATURE)
    return specs


def chosen(name, only):
    """Whether `--only` picks the model `name`: an entry equal to a model's
    name picks that model alone; any other, every model whose name holds it."""
    return name in only or any(word in name for word in only if word not in MODEL_NAMES)


def measure(testbed, work, seeds, only=None, first_seed=0):
    spec = TESTBEDS[testbed](os.path.join(work, testbed, "data"))
    results = {}
    for name, model_spec in models(spec).items():
        if only and not chosen(name, only):
            continue
        results[name] = {"scores": [], "heads": []}
        for seed in range(first_seed, first_seed + seeds):
            run_dir = os.path.join(work, testbed, name.replace(", ", "-").replace(" ", "_"), f"seed-{seed}")
            seeded = dataclasses.replace(model_spec, train=dataclasses.replace(model_spec.train, seed=seed))
            train(seeded, run_dir, overwrite=True, verbose=0)
            report = evaluate_run(run_dir, baselines=False)
            value = report[report["headline"]]
            heads = {f: scores[report["headline"]] for f, scores in report.get("unimodal_heads", {}).items()}
            results[name]["scores"].append(value)
            results[name]["heads"].append(heads)
            shown = ", ".join(f"{f} head {v:.3f}" for f, v in heads.items())
            print(
                f"{testbed:<17} {name:<28} seed {seed}: {report['headline']} {value:.3f} {shown}", flush=True
            )
    return results


def table(results):
    lines = ["| testbed | model | test headline (mean ± sd) | unimodal heads (mean) |", "|---|---|---|---|"]
    for testbed, models_run in results.items():
        for name, result in models_run.items():
            heads = {f: np.mean([h[f] for h in result["heads"]]) for f in (result["heads"][0] or {})}
            shown = ", ".join(f"{f} {v:.3f}" for f, v in heads.items()) or "-"
            lines.append(f"| {testbed} | {name} | {mean_and_spread(result['scores'])} | {shown} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--testbeds", nargs="+", default=list(TESTBEDS), choices=list(TESTBEDS))
    parser.add_argument("--seeds", type=int, default=3, help="runs per model (default 3)")
    parser.add_argument("--first-seed", type=int, default=0, help="the first seed (default 0)")
    parser.add_argument(
        "--only",
        nargs="+",
        help="train only these models: a full name (`fused, head_weight_0`) picks that one, "
        "a word (`alone`) every model whose name holds it",
    )
    parser.add_argument("--work-dir", help="where data and runs go (default: a temporary folder)")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args(argv)
    work = args.work_dir or tempfile.mkdtemp(prefix="mmkeras-balance-")
    results = measure_each(
        args.testbeds,
        lambda testbed: measure(testbed, work, args.seeds, args.only, args.first_seed),
        args.json,
    )
    print()
    print(table(results))
    return results


if __name__ == "__main__":
    sys.exit(0 if main() else 1)

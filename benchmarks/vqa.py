"""Visual question answering on easy-VQA: the fused models against the
question alone and the picture alone, trained from the same spec.

`build_easy_vqa` writes the spec (question + picture -> answer); each model
is trained with seeds 0..N-1 and scored on the test pictures' questions:
accuracy over all of them and per question type (yes/no, shape, color),
as `mmkeras evaluate --by question_type` reports it.

    python benchmarks/vqa.py --seeds 3 --json vqa.json

`--fraction` keeps a share of the pictures (and their questions) for a
quicker look.
"""

import argparse
import dataclasses
import os
import sys
import tempfile

from progress import mean_and_spread, measure_each

from mmkeras.datasets import build_easy_vqa
from mmkeras.evaluation import evaluate_run
from mmkeras.quickstart import single_modality_spec
from mmkeras.training import train

TYPES = ("yes/no", "shape", "color")
# The spec's fusion (the two encodings' projections multiplied), the
# question's words attending to the picture's regions (and back), and
# concatenation of the pooled encodings; the spec's other settings kept.
FUSIONS = ("hadamard", "cross_attention", "concat")


def models(spec):
    """{name: spec} of every model trained."""
    specs = {
        f"fused, {kind}": dataclasses.replace(
            spec, model=dataclasses.replace(spec.model, fusion={**spec.model.fusion, "type": kind})
        )
        for kind in FUSIONS
    }
    specs.update({f"{f.name} alone": single_modality_spec(spec, f) for f in spec.data.features})
    return specs


def measure(name, spec, work, seeds, epochs):
    """Test accuracy, overall and per question type, of each seed's run."""
    scores = {"accuracy": [], **{kind: [] for kind in TYPES}}
    for seed in range(seeds):
        run_dir = os.path.join(work, name.replace(", ", "-").replace(" ", "_"), f"seed-{seed}")
        train_section = dataclasses.replace(spec.train, seed=seed, **({"epochs": epochs} if epochs else {}))
        train(dataclasses.replace(spec, train=train_section), run_dir, overwrite=True, verbose=0)
        report = evaluate_run(run_dir, baselines=False, by=("question_type",))
        scores["accuracy"].append(report["accuracy"])
        for kind in TYPES:
            scores[kind].append(report["by"]["question_type"][kind]["accuracy"])
        shown = ", ".join(f"{kind} {scores[kind][-1]:.3f}" for kind in TYPES)
        print(f"{name:<24} seed {seed}: accuracy {report['accuracy']:.3f} ({shown})", flush=True)
    return scores


def table(results):
    lines = [
        "| model | accuracy | " + " | ".join(TYPES) + " |",
        "|---|---:|" + "---:|" * len(TYPES),
    ]
    for name, scores in results.items():
        cells = [mean_and_spread(scores["accuracy"]), *(mean_and_spread(scores[kind]) for kind in TYPES)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=3, help="runs per model (default 3)")
    parser.add_argument(
        "--fraction", type=float, default=1.0, help="share of the pictures kept (default all)"
    )
    parser.add_argument("--epochs", type=int, help="epochs per run (default: the spec's)")
    parser.add_argument("--only", nargs="+", help="train only the models whose names hold one of these words")
    parser.add_argument("--work-dir", help="where data and runs go (default: a temporary folder)")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args(argv)
    work = args.work_dir or tempfile.mkdtemp(prefix="mmkeras-vqa-")
    specs = models(build_easy_vqa(os.path.join(work, "data"), fraction=args.fraction))
    names = [name for name in specs if not args.only or any(word in name for word in args.only)]
    results = measure_each(
        names, lambda name: measure(name, specs[name], work, args.seeds, args.epochs), args.json
    )
    print()
    print(table(results))
    return results


if __name__ == "__main__":
    sys.exit(0 if main() else 1)

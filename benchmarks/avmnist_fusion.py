"""Fusion on degraded AV-MNIST: every fusion type against each modality alone.

Builds AV-MNIST from $MMKERAS_DATA with the quickstart's degradation (99% of
the images' PCA energy removed, audio at 10 dB SNR), trains the spec's
default model with each fusion type and one model per modality, and prints
test accuracy. This is the table in the README.

    MMKERAS_DATA=../shared/data python benchmarks/avmnist_fusion.py --json fusion.json
"""

import argparse
import dataclasses
import os
import sys
import tempfile

from progress import write_json

from mmkeras.datasets import build_avmnist
from mmkeras.evaluation import evaluate_run
from mmkeras.quickstart import AVMNIST_DEGRADATION, single_modality_spec
from mmkeras.training import train

FUSIONS = {
    "concat": {"type": "concat"},
    "late": {"type": "late", "combine": "learned"},
    "gated": {"type": "gated", "hidden_dim": 128},
    "tensor": {"type": "tensor"},
    "low_rank_tensor": {"type": "low_rank_tensor", "output_dim": 128, "rank": 8},
    "cross_attention": {"type": "cross_attention", "hidden_dim": 64, "num_heads": 4},
}


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work-dir", help="where data and runs go (default: a temporary folder)")
    parser.add_argument("--json", help="write the table to this file")
    args = parser.parse_args(argv)
    work = args.work_dir or tempfile.mkdtemp(prefix="mmkeras-avmnist-")
    spec = build_avmnist(os.path.join(work, "data"), **AVMNIST_DEGRADATION)
    variants = {f"{f.name} only": single_modality_spec(spec, f) for f in spec.data.features}
    for name, fusion in FUSIONS.items():
        variants[f"fused ({name})"] = dataclasses.replace(
            spec, model=dataclasses.replace(spec.model, fusion=fusion)
        )
    table = {}
    for name, variant in variants.items():
        run_dir = os.path.join(work, "runs", name.replace(" ", "_").replace("(", "").replace(")", ""))
        train(variant, run_dir, overwrite=True, verbose=0)
        table[name] = evaluate_run(run_dir)["accuracy"]
        print(f"{name:<28} {table[name]:.3f}", flush=True)
    best_single = max(v for k, v in table.items() if k.endswith("only"))
    print(f"\nbest single modality {best_single:.3f}; each fusion's gain over it:")
    for name, value in table.items():
        if name.startswith("fused"):
            print(f"  {name:<26} {100 * (value - best_single):+.1f} points")
    write_json(args.json, table)
    return table


if __name__ == "__main__":
    sys.exit(0 if main() else 1)

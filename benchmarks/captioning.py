"""Captioning quality on Flickr8k, English and Chinese: the model against the
two baselines `mmkeras evaluate` computes with the same code (the most
frequent training caption; the caption of the nearest training image by the
model's own encoder), on the test photographs.

Each decoder is trained from the `build_flickr8k(task="captioning")` spec
with seeds 0..N-1 and scored with corpus BLEU-4 and CIDEr-D against all five
captions of each test photograph.

    MMKERAS_DATA=../shared/data python benchmarks/captioning.py --seeds 3 --json captioning.json

`--width` trains narrower decoders than the defaults (256) and `--image-size`
smaller pictures than the builder's 96 pixels, for a CPU.
"""

import argparse
import dataclasses
import os
import sys
import tempfile

from progress import mean_and_spread, measure_each

from mmkeras.datasets import build_flickr8k
from mmkeras.evaluation import evaluate_run
from mmkeras.training import train

DECODERS = ("transformer", "lstm")
METRICS = ("bleu_4", "cider_d")


def decoder_section(name, width):
    """The spec's `model.decoder` for a decoder type, at its default width or `width`."""
    if width is None:
        return {"type": name}
    if name == "transformer":
        return {"type": name, "hidden_dim": width}
    return {"type": name, "units": width, "embedding_dim": width}


def measure(language, work, decoders, seeds, epochs, fraction, width=None, image_size=96):
    spec = build_flickr8k(
        os.path.join(work, language, "data"),
        language=language,
        fraction=fraction,
        task="captioning",
        image_size=image_size,
    )
    results = {}
    for name in decoders:
        model = dataclasses.replace(spec.model, decoder=decoder_section(name, width))
        results[name] = {"model": [], "baselines": []}
        for seed in range(seeds):
            run_dir = os.path.join(work, language, name, f"seed-{seed}")
            seeded = dataclasses.replace(
                spec, model=model, train=dataclasses.replace(spec.train, seed=seed, epochs=epochs)
            )
            train(seeded, run_dir, overwrite=True, verbose=0)
            report = evaluate_run(run_dir)
            results[name]["model"].append({metric: report[metric] for metric in METRICS})
            results[name]["baselines"].append(
                {
                    baseline: {m: scores[m] for m in METRICS}
                    for baseline, scores in report["baselines"].items()
                }
            )
            shown = ", ".join(
                f"{baseline} {scores['cider_d']:.3f}" for baseline, scores in report["baselines"].items()
            )
            scores = f"BLEU-4 {report['bleu_4']:.3f} CIDEr-D {report['cider_d']:.3f}"
            print(f"{language} {name:<12} seed {seed}: {scores} | baselines' CIDEr-D: {shown}", flush=True)
    return results


def table(results):
    lines = ["| language | model | BLEU-4 | CIDEr-D |", "|---|---|---|---|"]
    for language, decoders in results.items():
        baselines = {}
        for name, result in decoders.items():
            scores = [mean_and_spread([run[m] for run in result["model"]]) for m in METRICS]
            lines.append(f"| {language} | {name} decoder | {' | '.join(scores)} |")
            for run in result["baselines"]:
                for baseline, values in run.items():
                    baselines.setdefault(baseline, []).append(values)
        for baseline, runs in baselines.items():
            scores = [mean_and_spread([run[m] for run in runs]) for m in METRICS]
            lines.append(f"| {language} | {baseline} | {' | '.join(scores)} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--languages", nargs="+", default=["en", "zh"], choices=["en", "zh"])
    parser.add_argument("--decoders", nargs="+", default=list(DECODERS), choices=DECODERS)
    parser.add_argument("--seeds", type=int, default=3, help="runs per decoder (default 3)")
    parser.add_argument("--epochs", type=int, default=20, help="training epochs (default 20; early stopping)")
    parser.add_argument("--fraction", type=float, default=1.0, help="share of the photographs (default all)")
    parser.add_argument(
        "--width", type=int, help="decoder width: Transformer hidden_dim, LSTM units (default 256)"
    )
    parser.add_argument("--image-size", type=int, default=96, help="picture size in pixels (default 96)")
    parser.add_argument("--work-dir", help="where data and runs go (default: a temporary folder)")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args(argv)
    work = args.work_dir or tempfile.mkdtemp(prefix="mmkeras-captioning-")
    results = measure_each(
        args.languages,
        lambda language: measure(
            language, work, args.decoders, args.seeds, args.epochs, args.fraction, args.width, args.image_size
        ),
        args.json,
    )
    print()
    print(table(results))
    return results


if __name__ == "__main__":
    sys.exit(0 if main() else 1)

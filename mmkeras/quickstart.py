"""The quickstart: a dataset, the fused model and each modality alone, compared."""

import dataclasses
import os

from mmkeras.datasets import build_avmnist, build_emoji, build_quickstart
from mmkeras.evaluation import evaluate_run
from mmkeras.training import train

# The MultiBench-style degradation that makes AV-MNIST need both modalities:
# 99% of the images' PCA energy removed, white noise at 10 dB SNR on the audio.
AVMNIST_DEGRADATION = {"image_energy_removed": 0.99, "audio_snr_db": 10.0}


def build_dataset(name, output_dir, rows=600, seed=0):
    if name == "quickstart":
        return build_quickstart(output_dir, num_rows=rows, seed=seed)
    if name == "avmnist":
        return build_avmnist(output_dir, seed=seed, **AVMNIST_DEGRADATION)
    return build_emoji(output_dir, seed=seed)


def single_modality_spec(spec, feature):
    """The same spec reading one feature only."""
    return dataclasses.replace(
        spec,
        data=dataclasses.replace(spec.data, features=[feature]),
        model=dataclasses.replace(
            spec.model,
            encoders={k: v for k, v in spec.model.encoders.items() if k == feature.name},
            fusion={"type": "concat"},
        ),
    )


def train_and_compare(spec, runs_dir, epochs=None):
    """Trains the fused model and one per modality; returns their test accuracy."""
    if epochs:
        spec.train.epochs = epochs
    variants = {"fused": spec}
    for feature in spec.data.features:
        variants[f"{feature.name} only"] = single_modality_spec(spec, feature)
    table = {}
    for name, variant in variants.items():
        run_dir = os.path.join(runs_dir, name.replace(" ", "_"))
        print(f"\nTraining {name} -> {run_dir}")
        train(variant, run_dir, overwrite=True, verbose=2)
        report = evaluate_run(run_dir)
        table[name] = {"accuracy": report["accuracy"], "run_dir": run_dir}
    return table

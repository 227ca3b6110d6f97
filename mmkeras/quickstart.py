"""The quickstart: a dataset, the fused model and each modality alone, compared."""

import dataclasses
import os

from mmkeras.data import build_preprocessor, check_spec, make_dataset
from mmkeras.data.check import print_check_report
from mmkeras.datasets import build_avmnist, build_emoji, build_quickstart
from mmkeras.evaluation import evaluate_run
from mmkeras.export import export_run
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
        report = evaluate_run(run_dir, baselines=name == "fused")
        table[name] = {"accuracy": report["accuracy"], "run_dir": run_dir, "report": report}
    return table


def _print_one_batch(spec, preprocessor):
    inputs, target = next(iter(make_dataset(spec, "train", preprocessor=preprocessor, check=False)))
    print("One batch of the training split:")
    for name, tensor in inputs.items():
        print(f"  {name:<12} {str(tuple(tensor.shape)):<20} {tensor.dtype.name}")
    print(f"  {'target':<12} {str(tuple(target.shape)):<20} {target.dtype.name}")


def run_quickstart(dataset, output_dir, saved_models, rows=600, epochs=None, seed=0, data_only=False):
    """`mmkeras quickstart`: data, a check, the fused model against each modality, an export.

    Writes the dataset to `output_dir/data/<dataset>/`, checks every row,
    trains the fused model and one model per modality under
    `output_dir/runs/<dataset>/`, prints their test accuracy side by side,
    exports the fused model to `saved_models/<dataset>/` and prints the
    commands to look further. Returns the command's exit code.
    """
    data_dir = os.path.join(output_dir, "data", dataset)
    print(f"Writing the {dataset} dataset to {data_dir} ...")
    spec = build_dataset(dataset, data_dir, rows=rows, seed=seed)
    print(f"Spec: {os.path.join(data_dir, 'spec.yaml')}")
    if print_check_report(check_spec(spec), spec):
        return 1
    preprocessor = build_preprocessor(spec, progress=False)
    _print_one_batch(spec, preprocessor)
    print(f"Labels: {', '.join(preprocessor.target.labels)}")
    if data_only:
        return 0
    runs = os.path.join(output_dir, "runs", dataset)
    table = train_and_compare(spec, runs, epochs=epochs)
    print("\nTest accuracy, the fused model against each modality alone:")
    for name, row in table.items():
        print(f"  {name:<24} {row['accuracy']:.3f}   {row['run_dir']}")
    report = table["fused"]["report"]
    metric = report["headline"]
    print(f"Linear baselines on the same test split ({metric}; the fused model's is {report[metric]:.3f}):")
    for name, scores in report["baselines"].items():
        print(f"  {name:<34} {scores[metric]:.3f}")
    fused = table["fused"]["run_dir"]
    exported = export_run(fused, os.path.join(saved_models, dataset))
    root = os.path.dirname(exported.models_config)
    print(f"\nExported for TF Serving: {exported.path} (parity {exported.max_difference:.1e})")
    print(f"TensorBoard:  tensorboard --logdir {runs}")
    print(f"Evaluate:     mmkeras evaluate {fused}")
    print(f"Predict:      mmkeras predict {fused} --data {spec.resolve(spec.data.test)}")
    print(f"Serve:        mmkeras serve {exported.models_config}")
    print(
        f"Production:   docker run -p 8500:8500 -p 8501:8501 -v {root}:/models tensorflow/serving "
        "--model_config_file=/models/models.config --enable_batching "
        "--batching_parameters_file=/models/batching_parameters.txt"
    )
    return 0

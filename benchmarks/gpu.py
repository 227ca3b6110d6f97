"""What only a machine with GPUs can show, in one script (under 8 minutes).

1. Mixed precision: the reference model of `benchmarks/training.py`
   (BiLSTM(128) over 64 tokens + 3-block CNN on 64x64 emoji, Dense(256))
   on one GPU in float32, mixed_float16 and mixed_bfloat16, samples/s from
   the in-memory cached pipeline, timed from each run's second step.
2. Scaling: MirroredStrategy over all GPUs against one GPU, with the same
   per-replica batch; `scaling_efficiency` = rate(n) / (n x rate(1)).
3. Input stall: the uncached file pipeline alone (decode, resize, batch, no
   model) against the demand of the fastest GPU step;
   `stall_fraction` = max(0, 1 - pipeline / demand): the share of a GPU
   step that would wait for input without the cache.
4. One full `mmkeras train` with `mixed_precision: auto` (the policy it
   picked is reported); it must end with a finite loss.

    MMKERAS_DATA=../shared/data python benchmarks/gpu.py --json gpu.json

`--smoke` runs every section on the CPU in a minute, on the generated
quickstart data with a tiny model (two logical CPU devices stand in for two
GPUs): CI runs it so the script keeps working between GPU runs. Its figures
mean nothing.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

SMOKE_DEVICES = "2"
if "--smoke" in sys.argv:
    os.environ.setdefault("MMKERAS_CPU_DEVICES", SMOKE_DEVICES)

from mmkeras.cli import split_cpu  # noqa: E402  (before TensorFlow starts its runtime)

split_cpu()

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
import yaml  # noqa: E402
from progress import write_json  # noqa: E402
from training import StepTimer, emoji_spec  # noqa: E402

from mmkeras.data import build_preprocessor, make_dataset, make_distributed_dataset  # noqa: E402
from mmkeras.datasets import build_quickstart  # noqa: E402
from mmkeras.spec import Spec  # noqa: E402
from mmkeras.tasks import build_task  # noqa: E402
from mmkeras.training.strategy import resolve_strategy  # noqa: E402

POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")
SMOKE_MODEL = {
    "encoders": {
        "caption": {"type": "lstm", "embedding_dim": 8, "units": 8},
        "image": {"type": "cnn", "filters": [8, 8]},
        "audio": {"type": "spectrogram_cnn", "filters": [8, 8]},
    },
    "fusion": {"type": "concat"},
    "head": {"hidden_dims": [16], "dropout_rate": 0.0},
}


def with_changes(spec, folder, name, data=None, model=None, train=None):
    """A copy of `spec` with changed sections, written to `folder`; its path."""
    mapping = spec.to_dict(absolute_paths=True)
    mapping["data"].update(data or {})
    mapping["model"] = model or mapping["model"]
    mapping["train"].update(train or {})
    path = os.path.join(folder, f"{name}.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(mapping, f)
    return path


def reference_spec(folder, smoke, batch_size):
    """The cached spec the step measurements use."""
    if smoke:
        spec = build_quickstart(os.path.join(folder, "quickstart"), num_rows=80)
        changes = {"batch_size": batch_size, "validation_split": None}
        return Spec.from_yaml(with_changes(spec, folder, "cached", data=changes, model=SMOKE_MODEL))
    return emoji_spec(os.path.join(folder, "emoji"), "memory", batch_size=batch_size)


def compiled_task(spec, preprocessor):
    task = build_task(spec, preprocessor)
    task.compile()
    return task


def samples_per_s(spec, preprocessor, policy, steps, strategy=None):
    """Training samples/s of the spec's model under `policy`, on one device or `strategy`."""
    keras.mixed_precision.set_global_policy(policy)
    try:
        if strategy is None:
            model = compiled_task(spec, preprocessor)
            data = make_dataset(spec, "train", training=True, preprocessor=preprocessor, repeat=True)
        else:
            with strategy.scope():
                model = compiled_task(spec, preprocessor)
            data = make_distributed_dataset(strategy, spec, "train", preprocessor, training=True, repeat=True)
        model.fit(data, epochs=1, steps_per_epoch=steps, shuffle=False, verbose=0)  # trace, fill the cache
        timer = StepTimer(spec.data.batch_size)
        model.fit(data, epochs=1, steps_per_epoch=steps, shuffle=False, verbose=0, callbacks=[timer])
        return timer.samples / timer.seconds
    finally:
        keras.mixed_precision.set_global_policy("float32")


def pipeline_images_per_s(spec, preprocessor, steps):
    """The uncached file pipeline alone: decoded, preprocessed rows per second."""
    data = make_dataset(spec, "train", training=True, preprocessor=preprocessor, repeat=True).take(steps + 1)
    iterator = iter(data)
    next(iterator)  # start-up
    start = time.perf_counter()
    rows = sum(int(tf.shape(batch[1])[0]) for batch in iterator)
    return rows / (time.perf_counter() - start)


def full_train(spec, folder, epochs):
    """`mmkeras train` with mixed_precision: auto, in its own process; (policy, final loss)."""
    path = with_changes(
        spec, folder, "auto", train={"epochs": epochs, "mixed_precision": "auto", "tensorboard_examples": 0}
    )
    run_dir = os.path.join(folder, "run")
    result = subprocess.run(
        [sys.executable, "-m", "mmkeras.cli", "train", path, "--output-dir", run_dir],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise SystemExit(f"mmkeras train failed:\n{result.stderr[-3000:]}")
    policy = next(
        line.split("dtype policy ")[-1] for line in result.stderr.splitlines() if "dtype policy" in line
    )
    with open(os.path.join(run_dir, "metrics.json")) as f:
        return policy.strip(), json.load(f)["loss"]


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="every section on the CPU with tiny data (CI)")
    parser.add_argument("--batch-size", type=int, help="per-replica batch (default 256; 8 with --smoke)")
    parser.add_argument("--steps", type=int, help="timed steps per measurement (default 60; 3 with --smoke)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of the full mmkeras train run")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args(argv)
    batch = args.batch_size or (8 if args.smoke else 256)
    steps = args.steps or (3 if args.smoke else 60)
    gpus = tf.config.list_logical_devices("GPU")
    if not gpus and not args.smoke:
        raise SystemExit("no GPU visible: this benchmark measures GPUs (use --smoke to try it on a CPU).")
    devices = gpus or tf.config.list_logical_devices("CPU")

    work = tempfile.mkdtemp(prefix="mmkeras-gpu-bench-")
    spec = reference_spec(work, args.smoke, batch)
    preprocessor = build_preprocessor(spec, progress=False)
    results = {
        "device": tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0]).get(
            "device_name"
        )
        if gpus
        else "CPU (smoke)",
        "devices": len(devices),
        "per_replica_batch": batch,
        "smoke": args.smoke,
    }

    rates = {policy: samples_per_s(spec, preprocessor, policy, steps) for policy in POLICIES}
    for policy, rate in rates.items():
        print(f"one device, {policy:<15} {rate:10.1f} samples/s", flush=True)
    results["samples_per_s"] = rates
    results["mixed_float16_speedup"] = rates["mixed_float16"] / rates["float32"]
    results["mixed_bfloat16_speedup"] = rates["mixed_bfloat16"] / rates["float32"]
    fastest = max(rates, key=rates.get)

    if len(devices) > 1:
        global_spec = Spec.from_yaml(
            with_changes(spec, work, "global", data={"batch_size": batch * len(devices)})
        )
        mirrored = samples_per_s(
            global_spec, preprocessor, fastest, steps, strategy=resolve_strategy("mirrored")
        )
        results["mirrored_samples_per_s"] = mirrored
        results["scaling_efficiency"] = mirrored / (len(devices) * rates[fastest])
        print(
            f"{len(devices)} devices mirrored, {fastest}: {mirrored:.1f} samples/s, "
            f"scaling efficiency {results['scaling_efficiency']:.2f}",
            flush=True,
        )
    else:
        results["mirrored_samples_per_s"] = results["scaling_efficiency"] = None
        print("one device only: no MirroredStrategy scaling to measure", flush=True)

    uncached = Spec.from_yaml(with_changes(spec, work, "uncached", data={"cache": None}))
    pipeline = pipeline_images_per_s(uncached, preprocessor, steps)
    demand = results["mirrored_samples_per_s"] or rates[fastest]  # all devices at their fastest
    results["pipeline_images_per_s"] = pipeline
    results["step_demand_samples_per_s"] = demand
    results["stall_fraction"] = max(0.0, 1 - pipeline / demand)
    print(
        f"uncached pipeline {pipeline:.1f} images/s against a demand of {demand:.1f}: "
        f"stall fraction {results['stall_fraction']:.2f}",
        flush=True,
    )

    policy, loss = full_train(spec, work, args.epochs)
    results["auto_policy"], results["auto_train_loss"] = policy, loss
    print(f"mmkeras train, mixed_precision auto -> {policy}: final loss {loss:.4f}", flush=True)
    if not math.isfinite(loss):
        raise SystemExit(f"the full training run ended with loss {loss}")
    write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()

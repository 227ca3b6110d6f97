"""`mmkeras train` under mixed precision, as a GPU run does it, on tiny data.

Keras runs mixed_float16 and mixed_bfloat16 on a CPU (emulated, slowly), so
every target type and the dual encoder train here under a 16-bit policy:
with image augmentation, masked modalities and float32 outputs.
"""

import csv
import logging
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from mmkeras.datasets import build_emoji
from mmkeras.tasks.losses import SparseCrossentropy
from mmkeras.training import train
from mmkeras.training.callbacks import NaNGuard
from mmkeras.training.strategy import choose_policy, configure_mixed_precision
from tests.conftest import write_spec
from tests.training_helpers import SMALL_MODEL

AUGMENT = {"flip": "horizontal", "rotation": 0.05, "zoom": 0.1, "contrast": 0.1}
FUSIONS = {
    "concat": {"projection_dim": 8},
    "late": {"combine": "learned"},
    "gated": {"hidden_dim": 8, "modality_dropout": 0.3},
    "low_rank_tensor": {"output_dim": 8, "rank": 2},
}
TARGETS = {
    "binary": lambda label, i: label.split("_")[0],
    "multilabel": lambda label, i: label.replace("_", "|"),
    "numeric": lambda label, i: str(i % 7 + 0.5),
}


def _data(quickstart_spec, folder, target_type="categorical"):
    """The quickstart rows with absolute paths, augmentation, and a target of `target_type`."""
    rows = list(csv.DictReader(open(quickstart_spec.resolve("train.csv"))))
    for i, row in enumerate(rows):
        row["target"] = TARGETS[target_type](row["label"], i) if target_type in TARGETS else row["label"]
        for column in ("image", "audio"):
            row[column] = quickstart_spec.resolve(row[column])
    with open(os.path.join(folder, "train.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    data = quickstart_spec.to_dict()["data"]
    data.update(train="train.csv", test=None, target={"column": "target", "type": target_type}, batch_size=16)
    for feature in data["features"]:
        if feature["modality"] == "image":
            feature["augment"] = AUGMENT
    return data


def _train(folder, data, model, mixed_precision, label_smoothing=0.0):
    spec = write_spec(folder, data, model=model)
    spec.train.label_smoothing = label_smoothing
    spec.train.epochs = 1
    spec.train.tensorboard_examples = 0
    spec.train.mixed_precision = mixed_precision
    result = train(spec, os.path.join(folder, "run"), verbose=0)
    assert keras.mixed_precision.global_policy().name == "float32"  # the caller's policy is back
    return result


def _assert_trained_in(result, policy):
    model = result.task
    assert model.dtype_policy.name == policy or any(
        layer.dtype_policy.name == policy for layer in model.layers
    )
    assert all(np.isfinite(v) for v in result.metrics.values()), result.metrics
    assert all(w.dtype == "float32" for w in model.weights)


# Every target type and both 16-bit policies, through `train` (tracing a
# train step on a CPU costs 10-40 s a run); the tensor and cross-attention
# fusions train under bfloat16 in `test_models`, mirrored over two replicas.
CASES = [
    ("concat", "binary", "float16"),
    ("late", "multilabel", "bfloat16"),
    ("gated", "numeric", "float16"),
    ("low_rank_tensor", "categorical", "bfloat16"),
]


@pytest.mark.parametrize("fusion, target_type, precision", CASES)
def test_every_target_type_trains_under_mixed_precision(
    quickstart_spec, tmp_path, fusion, target_type, precision
):
    model = {**SMALL_MODEL, "fusion": {"type": fusion, **FUSIONS[fusion]}}
    data = _data(quickstart_spec, str(tmp_path), target_type)
    # The categorical run smooths its labels: the sparse loss Keras lacks, in 16 bits.
    smoothing = 0.1 if target_type == "categorical" else 0.0
    result = _train(str(tmp_path), data, model, precision, label_smoothing=smoothing)
    _assert_trained_in(result, f"mixed_{precision}")
    assert isinstance(result.task.loss, SparseCrossentropy) == (target_type == "categorical")
    # float16 needs loss scaling; bfloat16 has float32's range and does not.
    assert isinstance(result.task.optimizer, keras.optimizers.LossScaleOptimizer) == (precision == "float16")
    # The fused prediction and each modality's head.
    assert all(output.dtype == "float32" for output in tf.nest.flatten(result.task.output))


def test_dual_encoder_trains_under_mixed_float16(data_root, tmp_path):
    spec = build_emoji(str(tmp_path / "emoji"), data_root_dir=data_root, task="retrieval", fraction=0.25)
    data = spec.to_dict()["data"]
    for split in ("train", "test"):
        data[split] = spec.resolve(data[split])
    data.update(batch_size=64)
    model = {
        "encoders": {"name": {"units": 8, "embedding_dim": 8}, "image": {"filters": [8, 8]}},
        "projection_dim": 16,
    }
    spec = write_spec(str(tmp_path), data, model=model)
    spec.train.epochs = 1
    spec.train.mixed_precision = "float16"
    result = train(spec, str(tmp_path / "run"), verbose=0)
    _assert_trained_in(result, "mixed_float16")
    text = result.task.tower(result.task.text_feature).output
    assert text.dtype == "float32"


def test_policy_by_setting_and_gpu():
    assert choose_policy("auto", []) == "float32"
    assert choose_policy("auto", [(9, 0), (9, 0)]) == "mixed_bfloat16"
    assert choose_policy("auto", [(8, 6), (7, 5)]) == "mixed_float16"  # the oldest GPU decides
    assert choose_policy("auto", [(6, 1)]) == "float32"
    assert choose_policy("on", []) == "mixed_float16"
    assert choose_policy("bfloat16", [(7, 0)]) == "mixed_bfloat16"
    assert choose_policy("off", [(9, 0)]) == "float32"


def test_a_setting_that_cannot_work_here_is_named(caplog):
    try:
        with caplog.at_level(logging.WARNING, logger="mmkeras"):
            assert configure_mixed_precision("on") == "mixed_float16"
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert "train.mixed_precision: on, but this machine has no GPU" in caplog.text
    # A fresh process has one CPU device: mirrored says it runs one replica.
    script = (
        "import logging; logging.basicConfig(); "
        "from mmkeras.training.strategy import resolve_strategy; resolve_strategy('mirrored')"
    )
    warned = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert "train.strategy: mirrored, but this machine shows one device" in warned.stderr


def test_nan_message_names_mixed_precision_when_it_is_on():
    guard = NaNGuard("last.keras", "mixed_float16")
    guard.set_model(keras.Sequential([keras.layers.Dense(1)]))
    guard.on_train_batch_end(0, {"loss": float("nan")})
    assert "computes in mixed_float16" in guard.failure and "mixed_precision: bfloat16" in guard.failure
    plain = NaNGuard("last.keras")
    plain.set_model(keras.Sequential([keras.layers.Dense(1)]))
    plain.on_train_batch_end(0, {"loss": float("nan")})
    assert "mixed" not in plain.failure

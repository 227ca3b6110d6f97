"""Keeping the modalities of a fused model in balance (`model.balance`):
Gradient-Blending's weights, switching off a modality that is a shortcut,
early freezing and on-the-fly gradient modulation."""

import csv
import json
import os
import random

import keras
import numpy as np
import pytest
import tensorflow as tf
import yaml

from mmkeras.data.dataset import build_preprocessor, make_dataset
from mmkeras.datasets import build_quickstart
from mmkeras.evaluation import evaluate_run
from mmkeras.layers import GradientScale
from mmkeras.run_folder import RunFolder, load_task
from mmkeras.spec import Spec
from mmkeras.tasks import build_task
from mmkeras.tasks.update_modulation import modulate_updates, ogm_coefficients
from mmkeras.training import train
from mmkeras.training.modality_dynamics import (
    BEATEN_SHARE,
    LEARNED_SHARE,
    MAX_HEAD_FACTOR,
    NO_BETTER_SHARE,
    EarlyFreezing,
    GradientBlending,
    SwitchOff,
    blend_weights,
)
from tests.training_helpers import SMALL_MODEL

# Training and validation loss per head at two epochs: the image head learns
# what holds on unseen rows, the note head only memorises.
THEN = {"fused": (1.0, 1.2), "image": (1.5, 1.6), "note": (1.0, 2.0)}
NOW = {"fused": (0.5, 0.9), "image": (1.0, 1.1), "note": (0.1, 2.3)}


def test_gradient_blending_weighs_heads_by_generalisation_over_overfitting_squared():
    weights = blend_weights(THEN, NOW)
    fused = 0.3 / 0.2**2  # ΔG 0.3, ΔO 0.2
    image = 0.5 / (0.1 * 0.5) ** 2  # ΔO 0: floored at a tenth of ΔG
    assert weights == pytest.approx(
        {"fused": fused / (fused + image), "image": image / (fused + image), "note": 0}
    )
    worse = {head: (train, validation + 1) for head, (train, validation) in THEN.items()}
    assert blend_weights(THEN, worse) is None  # no head generalised


def _epoch_end(callback, losses, epoch=0):
    """Calls `on_epoch_end` with the logs of {head: (training loss, validation loss)}."""
    logs = {f"{head}_loss": train for head, (train, _) in losses.items()}
    logs.update({f"val_{head}_loss": validation for head, (_, validation) in losses.items()})
    callback.on_epoch_end(epoch, logs)
    return logs


def test_gradient_blending_sets_each_heads_factor_every_window():
    scales = {"image": GradientScale(0.5), "note": GradientScale(0.5)}
    blending = GradientBlending(scales, every=2)
    middle = {head: tuple((a + b) / 2 for a, b in zip(THEN[head], NOW[head])) for head in THEN}
    for losses in (THEN, middle):  # no full window yet: the factors stay
        assert _epoch_end(blending, losses)["note_head_factor"] == 0.5
    logs = _epoch_end(blending, NOW)  # epochs 0 to 2: the first estimate
    assert logs["image_head_factor"] == MAX_HEAD_FACTOR and logs["note_head_factor"] == 0.0
    assert float(scales["note"].scale.numpy()) == 0.0
    # A resumed run picks its window up from the history.
    history = {f"{h}_loss": [THEN[h][0], middle[h][0]] for h in THEN}
    history.update({f"val_{h}_loss": [THEN[h][1], middle[h][1]] for h in THEN})
    resumed = GradientBlending({"image": GradientScale(0.5), "note": GradientScale(0.5)}, 2, history)
    assert _epoch_end(resumed, NOW)["note_head_factor"] == 0.0


@pytest.fixture(scope="module")
def shortcut_dir(tmp_path_factory):
    """The quickstart's pictures with a `note` column that names the label
    in every training row and is random in the validation and test rows."""
    folder = str(tmp_path_factory.mktemp("shortcut"))
    build_quickstart(folder, num_rows=400)
    with open(os.path.join(folder, "train.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    labels = sorted({row["label"] for row in rows})
    rng = random.Random(0)
    rng.shuffle(rows)
    with open(os.path.join(folder, "test.csv"), newline="") as f:
        splits = {"train": rows[80:], "validation": rows[:80], "test": list(csv.DictReader(f))}
    for split, split_rows in splits.items():
        for row in split_rows:
            row["note"] = row["label"] if split == "train" else rng.choice(labels)
        with open(os.path.join(folder, f"{split}.csv"), "w", newline="") as f:
            writer = csv.DictWriter(f, ["image", "note", "label"], extrasaction="ignore")
            writer.writeheader()
            writer.writerows(split_rows)
    mapping = Spec.from_yaml(os.path.join(folder, "spec.yaml")).to_dict()
    mapping["data"].update(
        validation="validation.csv",
        validation_split=None,
        features=[
            next(f for f in mapping["data"]["features"] if f["name"] == "image"),
            {"name": "note", "modality": "text", "column": "note", "max_tokens": 20, "sequence_length": 2},
        ],
    )
    mapping["model"] = {
        "encoders": {
            "image": SMALL_MODEL["encoders"]["image"],
            "note": {"type": "lstm", "embedding_dim": 16, "units": 16},
        },
        "fusion": {"type": "concat"},
        "head": {"hidden_dims": [32], "dropout_rate": 0.1},
        # Each encoder also learns on its own: the note head learns its
        # shortcut within a few epochs.
        "balance": {"switch_off": True, "head_weight": 1.0},
    }
    mapping["train"].update(epochs=6, tensorboard_examples=0)
    with open(os.path.join(folder, "spec.yaml"), "w") as f:
        yaml.safe_dump(mapping, f)
    return folder


def test_switch_off_waits_for_two_shortcut_epochs_and_keeps_the_last_modality(shortcut_dir):
    spec = Spec.from_yaml(os.path.join(shortcut_dir, "spec.yaml"))
    task = build_task(spec, build_preprocessor(spec, progress=False))
    switches = []
    switch = SwitchOff(task.backbone, constant_loss=1.0, on_switch_off=lambda: switches.append(1))
    learned = LEARNED_SHARE - 0.05

    def shortcut(epoch, image=(0.5, 0.8)):
        """The note head fits its training rows while its validation loss,
        at the constant's or above, climbs epoch by epoch."""
        return {"image": image, "note": (learned, NO_BETTER_SHARE + 0.1 * epoch)}

    # The first epoch has nothing to climb from, and one epoch alone is not enough.
    for epoch in (0, 1):
        assert _epoch_end(switch, shortcut(epoch), epoch)["note_on"] == 1.0
    # A head that does a little better than the constant on unseen rows
    # carries some signal, and one whose validation loss falls is still
    # learning: either way the count starts over.
    some_signal = {"image": (0.5, 0.8), "note": (learned, NO_BETTER_SHARE - 0.05)}
    assert _epoch_end(switch, some_signal, epoch=2)["note_on"] == 1.0
    assert _epoch_end(switch, shortcut(3), epoch=3)["note_on"] == 1.0
    falling = {"image": (0.5, 0.8), "note": (learned, NO_BETTER_SHARE + 0.2)}
    assert _epoch_end(switch, falling, epoch=4)["note_on"] == 1.0
    assert _epoch_end(switch, shortcut(5), epoch=5)["note_on"] == 1.0
    assert not switches
    # A head that never fit its training rows is slow, not a shortcut.
    logs = _epoch_end(switch, shortcut(6, image=(LEARNED_SHARE + 0.05, 1.5)), epoch=6)
    assert (logs["note_on"], logs["image_on"]) == (0.0, 1.0)
    assert task.backbone.switched_off == ["note"]
    assert switches == [1]  # the best checkpoint and early stopping start over
    # The last modality on stays on, shortcut or not.
    for epoch in (7, 8, 9):
        both = {"image": (learned, NO_BETTER_SHARE + epoch), "note": (learned, NO_BETTER_SHARE + epoch)}
        assert _epoch_end(switch, both, epoch)["image_on"] == 1.0


def test_a_head_that_once_beat_the_constant_is_overfitting_not_a_shortcut(shortcut_dir):
    spec = Spec.from_yaml(os.path.join(shortcut_dir, "spec.yaml"))
    task = build_task(spec, build_preprocessor(spec, progress=False))
    learned = LEARNED_SHARE - 0.05
    climbing = [NO_BETTER_SHARE + 0.1 * epoch for epoch in range(4)]
    # Below BEATEN_SHARE of the constant once, then climbing above it: kept.
    switch = SwitchOff(task.backbone, constant_loss=1.0)
    _epoch_end(switch, {"image": (0.5, 0.8), "note": (learned, BEATEN_SHARE - 0.01)}, epoch=0)
    for epoch, validation in enumerate(climbing, start=1):
        assert (
            _epoch_end(switch, {"image": (0.5, 0.8), "note": (learned, validation)}, epoch)["note_on"] == 1.0
        )
    # The same climb, the head's earlier best read from a resumed run's history: kept.
    resumed = SwitchOff(
        task.backbone, 1.0, history={"val_note_loss": [BEATEN_SHARE - 0.01], "val_image_loss": [0.8]}
    )
    for epoch, validation in enumerate(climbing, start=1):
        assert (
            _epoch_end(resumed, {"image": (0.5, 0.8), "note": (learned, validation)}, epoch)["note_on"] == 1.0
        )
    # Never below BEATEN_SHARE: the same climb switches it off.
    fresh = SwitchOff(task.backbone, constant_loss=1.0)
    _epoch_end(fresh, {"image": (0.5, 0.8), "note": (learned, BEATEN_SHARE + 0.01)}, epoch=0)
    states = [
        _epoch_end(fresh, {"image": (0.5, 0.8), "note": (learned, validation)}, epoch)["note_on"]
        for epoch, validation in enumerate(climbing, start=1)
    ]
    assert states[-1] == 0.0 and task.backbone.switched_off == ["note"], states


def test_the_constant_prediction_is_the_training_class_shares_weighed_as_training_weighs_them(shortcut_dir):
    spec = Spec.from_yaml(os.path.join(shortcut_dir, "spec.yaml"))
    task = build_task(spec, build_preprocessor(spec, progress=False))
    task.compile()  # the loss it scores with
    # Half class 0, half class 1 in training: 0.5 on each, whatever the row.
    loss = task.constant_loss(np.array([0, 0, 1, 1]), np.array([0, 1, 1]))
    assert loss == pytest.approx(np.log(2), rel=1e-4)
    # Weighed by class as training weighs rows: class 1, one row in four
    # weighing three times as much, has half the weight and half the share;
    # the loss weighs each row the same way (Keras: the sum over the rows).
    weights = {0: 1.0, 1: 3.0}
    loss = task.constant_loss(np.array([0, 0, 0, 1]), np.array([0, 1]), weights)
    assert loss == pytest.approx((1.0 + 3.0) * np.log(2) / 2, rel=1e-4)
    unweighted = task.constant_loss(np.array([0, 0, 0, 1]), np.array([0, 1]))
    assert unweighted == pytest.approx(-(np.log(0.75) + np.log(0.25)) / 2, rel=1e-4)


def test_a_shortcut_is_switched_off_in_training_and_in_the_saved_model(shortcut_dir, tmp_path):
    spec = Spec.from_yaml(os.path.join(shortcut_dir, "spec.yaml"))
    run = train(spec, str(tmp_path / "run"), verbose=0)
    history = RunFolder(run.run_dir).read_history()
    assert history["note_on"][0] == 1.0 and history["note_on"][-1] == 0.0, history["note_on"]
    assert set(history["image_on"]) == {1.0}
    # The saved model (the best epoch after the switch) ignores the note.
    task = load_task(RunFolder(run.run_dir).model)
    assert task.backbone.switched_off == ["note"]
    assert run.switched_off == ["note"]
    assert json.load(open(RunFolder(run.run_dir).metrics))["switched_off"] == ["note"]
    report = evaluate_run(run.run_dir, baselines=False)
    assert report["switched_off"] == ["note"]
    ablation = report["modality_ablation"]
    assert ablation["without note"] == ablation["all modalities"]
    validation = make_dataset(spec, "validation", preprocessor=task.preprocessor, batch_size=80)
    inputs, _ = next(iter(validation))
    other_notes = dict(inputs, note=np.roll(inputs["note"], 1, axis=0))
    assert not np.array_equal(other_notes["note"], inputs["note"])
    np.testing.assert_array_equal(task.predict_on_batch(inputs), task.predict_on_batch(other_notes))


def test_early_freezing_freezes_the_modality_whose_validation_loss_stalls(shortcut_dir):
    spec = Spec.from_yaml(os.path.join(shortcut_dir, "spec.yaml"))
    task = build_task(spec, build_preprocessor(spec, progress=False))
    freezing = EarlyFreezing(task.backbone, patience=2)
    # The image head keeps improving; the note head's best is its first epoch.
    epochs = [
        {"image": (1.0, 1.0), "note": (0.8, 1.0)},
        {"image": (0.9, 0.9), "note": (0.5, 1.1)},
        {"image": (0.8, 0.8), "note": (0.3, 1.05)},
    ]
    assert _epoch_end(freezing, epochs[0], 0)["note_learns"] == 1.0
    assert _epoch_end(freezing, epochs[1], 1)["note_learns"] == 1.0  # one epoch without a better loss
    logs = _epoch_end(freezing, epochs[2], 2)
    assert (logs["note_learns"], logs["image_learns"]) == (0.0, 1.0)
    assert task.backbone.frozen == ["note"]
    # A resumed run counts on from its history.
    resumed_task = build_task(spec, task.preprocessor)
    history = {f"val_{head}_loss": [e[head][1] for e in epochs[:2]] for head in ("image", "note")}
    resumed = EarlyFreezing(resumed_task.backbone, patience=2, history=history)
    assert _epoch_end(resumed, epochs[2], 2)["note_learns"] == 0.0


def test_a_frozen_encoder_gets_no_gradient_from_the_fusion_or_its_head(shortcut_dir):
    spec = Spec.from_yaml(os.path.join(shortcut_dir, "spec.yaml"))
    task = build_task(spec, build_preprocessor(spec, progress=False))
    task.compile()  # Adam: a variable without gradient does not move
    inputs, targets = next(iter(make_dataset(spec, "train", preprocessor=task.preprocessor)))
    task.backbone.freeze("note")
    encoders = task.backbone.encoders
    before = {name: [w.numpy() for w in encoder.trainable_weights] for name, encoder in encoders.items()}
    for _ in range(2):
        task.train_on_batch(inputs, targets)
    after = {name: [w.numpy() for w in encoder.trainable_weights] for name, encoder in encoders.items()}
    assert all(np.array_equal(b, a) for b, a in zip(before["note"], after["note"]))
    assert not all(np.array_equal(b, a) for b, a in zip(before["image"], after["image"]))
    head = task.get_layer("note_prediction")  # the note's own head is not frozen with its encoder
    assert head.trainable_weights and task.backbone.frozen == ["note"]


def test_a_run_with_early_freezing_logs_and_names_the_frozen_encoder(shortcut_dir, tmp_path):
    mapping = yaml.safe_load(open(os.path.join(shortcut_dir, "spec.yaml")))
    mapping["model"]["balance"] = {"switch_off": False, "head_weight": 1.0, "freeze_after": 1}
    mapping["train"]["epochs"] = 4
    spec = Spec.from_dict(mapping, base_dir=shortcut_dir)
    run = train(spec, str(tmp_path / "run"), verbose=0)
    history = RunFolder(run.run_dir).read_history()
    assert history["note_learns"][0] == 1.0 and history["note_learns"][-1] == 0.0, history
    frozen = json.load(open(RunFolder(run.run_dir).metrics))["frozen"]
    assert "note" in frozen and all(history[f"{f}_learns"][-1] == 0.0 for f in frozen)


def test_ogm_slows_only_the_modality_ahead_by_the_papers_factor():
    # Two modalities: the paper's discrepancy ratio, score over score.
    factors = ogm_coefficients(tf.constant([0.1, 1.0]), alpha=0.5).numpy()
    ratio = np.exp(-0.1) / np.exp(-1.0)
    np.testing.assert_allclose(factors, [1 - np.tanh(0.5 * ratio), 1.0], rtol=1e-6)
    # More: each against the mean of the others' scores.
    factors = ogm_coefficients(tf.constant([0.2, 0.2, 2.0]), alpha=0.5).numpy()
    leader = np.exp(-0.2) / ((np.exp(-0.2) + np.exp(-2.0)) / 2)
    np.testing.assert_allclose(factors, [1 - np.tanh(0.5 * leader)] * 2 + [1.0], rtol=1e-6)
    assert (ogm_coefficients(tf.constant([0.7, 0.7]), alpha=0.5).numpy() == 1.0).all()  # a tie slows none


def test_ogm_scales_the_update_once_however_often_the_optimizer_is_wrapped():
    variable, other = keras.Variable([1.0]), keras.Variable([1.0])
    optimizer = keras.optimizers.SGD(learning_rate=1.0)
    factors = keras.Variable([0.5], trainable=False)
    for _ in range(2):  # a task compiled twice with one optimizer
        modulate_updates(optimizer, [[variable]], factors, noise=False)
    optimizer.apply([tf.constant([1.0]), tf.constant([1.0])], [variable, other])
    # SGD steps by rate x gradient, times the factor where one applies.
    assert (float(variable.numpy()[0]), float(other.numpy()[0])) == (0.5, 0.0)


def _one_step_deltas(spec, preprocessor, inputs, targets):
    """{variable path: change} after one training step from seeded weights, and the task."""
    keras.utils.set_random_seed(0)
    task = build_task(spec, preprocessor)
    task.compile()
    before = {v.path: v.numpy() for v in task.trainable_variables}
    task.train_on_batch(inputs, targets)
    return {v.path: v.numpy() - before[v.path] for v in task.trainable_variables}, task


@pytest.mark.parametrize("method", ["ogm", "ogm_ge"])
def test_ogm_scales_each_encoders_update_by_its_modalitys_factor(shortcut_dir, method):
    mapping = yaml.safe_load(open(os.path.join(shortcut_dir, "spec.yaml")))
    # Nothing random in the step but OGM-GE's noise: no dropout of any kind.
    mapping["model"]["fusion"]["modality_dropout"] = 0.0
    mapping["model"]["head"]["dropout_rate"] = 0.0
    plain = Spec.from_dict(mapping, base_dir=shortcut_dir)
    mapping["model"]["balance"]["method"] = method
    modulated = Spec.from_dict(mapping, base_dir=shortcut_dir)
    preprocessor = build_preprocessor(plain, progress=False)
    inputs, targets = next(iter(make_dataset(plain, "train", preprocessor=preprocessor)))
    expected, _ = _one_step_deltas(plain, preprocessor, inputs, targets)
    deltas, task = _one_step_deltas(modulated, preprocessor, inputs, targets)

    factors = dict(zip(task.feature_names, task.update_factors.numpy()))
    assert sorted(factors.values())[0] < 1.0 == sorted(factors.values())[1], factors  # one leads
    for feature, factor in factors.items():
        for variable in task.backbone.encoders[feature].trainable_variables:
            # Adam's first step is linear in the rate: the update times the factor.
            scaled = factor * expected[variable.path]
            if method == "ogm":
                np.testing.assert_allclose(deltas[variable.path], scaled, rtol=1e-4, atol=1e-7)
            elif np.abs(expected[variable.path]).max() > 0:  # noise as wide as the gradient: none without one
                assert not np.allclose(deltas[variable.path], scaled, rtol=1e-4, atol=1e-7)  # GE's noise
    encoder_paths = {v.path for e in task.backbone.encoders.values() for v in e.trainable_variables}
    for path in set(expected) - encoder_paths:  # the fusion and the heads learn as before
        np.testing.assert_allclose(deltas[path], expected[path], rtol=1e-4, atol=1e-7)
    assert set(expected) - encoder_paths

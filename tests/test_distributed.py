"""Several replicas and several workers train as one device does.

MirroredStrategy runs on two logical CPU devices (MMKERAS_CPU_DEVICES=2) and
MultiWorkerMirroredStrategy on two worker processes on 127.0.0.1.
"""

import csv
import json
import os
import re
import signal
import time

import numpy as np
import pytest

from mmkeras.data import build_preprocessor, make_dataset
from mmkeras.datasets import build_quickstart
from mmkeras.run_folder import load_run
from mmkeras.spec import Spec
from mmkeras.training.run import _class_weight
from tests.training_helpers import SMALL_MODEL, finish_workers, run_cli, start_workers, write_train_spec

# Weighting one class of four makes a weighted loss about 1.7x an unweighted one,
# far outside the tolerance below: a strategy that dropped the weights would show.
CLASS_WEIGHT = {"circle_high": 4.0}


@pytest.fixture(scope="module")
def quickstart_dir(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("quickstart"))
    build_quickstart(folder, num_rows=200)
    return folder


def _history(run_dir):
    path = os.path.join(run_dir, "history.csv")
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_class_weights_travel_with_each_row(quickstart_dir):
    spec = Spec.from_yaml(os.path.join(quickstart_dir, "spec.yaml"))
    preprocessor = build_preprocessor(spec, progress=False)
    index = preprocessor.target.labels.index("circle_high")
    weights = {i: (4.0 if i == index else 1.0) for i in range(len(preprocessor.target.labels))}
    inputs, target, weight = next(
        iter(make_dataset(spec, "train", preprocessor=preprocessor, class_weight=weights))
    )
    np.testing.assert_array_equal(weight.numpy(), np.where(target.numpy() == index, 4.0, 1.0))
    assert (target.numpy() == index).any() and (target.numpy() != index).any()


@pytest.mark.long(200)
def test_default_mirrored_and_multi_worker_agree_on_the_first_epoch(quickstart_dir, tmp_path):
    # Under float16, which adds loss scaling to every strategy's step; float32
    # under both strategies is trained by the fusion and resume tests. OGM-GE
    # sets its factors in the step and adds noise in the update: every
    # replica must apply the same (the two workers' weights end identical).
    base = os.path.join(quickstart_dir, "spec.yaml")
    model = {**SMALL_MODEL, "balance": {"method": "ogm_ge"}}
    common = dict(
        epochs=1, mixed_precision="float16", class_weight=CLASS_WEIGHT, tensorboard_examples=0, seed=3
    )
    histories, steps = {}, {}
    for strategy, replicas in (("default", 1), ("mirrored", 2)):
        spec_path = write_train_spec(base, model, strategy=strategy, **common)
        result = run_cli(
            "train", spec_path, "--output-dir", str(tmp_path / strategy), env={"MMKERAS_CPU_DEVICES": "2"}
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert f"{replicas} replica(s)" in result.stderr + result.stdout
        assert "ran out of data" not in result.stderr
        steps[strategy] = re.findall(r"^(\d+/\d+) - ", result.stdout, re.MULTILINE)
        histories[strategy] = _history(tmp_path / strategy)[0]
    # An epoch is one pass over the data split across the replicas, not one pass per replica.
    assert steps["mirrored"] == steps["default"] and len(steps["default"]) == 1, steps
    run_dir = str(tmp_path / "multi_worker")
    digests = finish_workers(
        start_workers(write_train_spec(base, model, strategy="multi_worker", **common), run_dir)
    )
    assert digests[0] == digests[1]
    histories["multi_worker"] = _history(run_dir)[0]

    # The same rows, weights and seed; the two workers shard the rows and so
    # see them in another order, and 16-bit compute adds rounding.
    default = histories["default"]
    assert float(default["fused_loss"]) > 1.8, default  # the class weight is in the loss
    assert 0 < min(float(default[f"{f}_update_factor"]) for f in ("caption", "image", "audio")) < 1, default
    for strategy in ("mirrored", "multi_worker"):
        row = histories[strategy]
        assert set(row) == set(default), (strategy, row)  # the same compiled metrics, train and validation
        for name in ("fused_loss", "val_fused_loss"):
            assert float(row[name]) == pytest.approx(float(default[name]), rel=0.08), (
                strategy,
                name,
                row,
                default,
            )
        for name in ("accuracy", "val_accuracy"):
            assert abs(float(row[name]) - float(default[name])) <= 0.15, (strategy, name, row, default)

    # The multi-worker metrics are reduced over both workers: exactly what one
    # process measures on the whole validation split with the saved model,
    # its loss weighed by class as training weighs it.
    run = load_run(run_dir)
    preprocessor = run.task.preprocessor
    weights = _class_weight(run.spec, preprocessor)
    expected, unweighted = (
        run.task.evaluate(
            make_dataset(run.spec, "validation", preprocessor=preprocessor, class_weight=class_weight),
            return_dict=True,
            verbose=0,
        )
        for class_weight in (weights, None)
    )
    reported = json.load(open(os.path.join(run_dir, "metrics.json")))
    assert reported["accuracy"] == pytest.approx(expected["accuracy"], abs=1e-6)
    assert reported["loss"] == pytest.approx(expected["loss"], rel=1e-3)
    assert reported["loss"] != pytest.approx(unweighted["loss"], rel=1e-2)


@pytest.mark.long(160)
def test_killed_workers_resume_from_the_last_finished_epoch(quickstart_dir, tmp_path):
    # Gradient-Blending re-estimates the heads' factors every epoch, and early
    # freezing decides which encoders still learn, on every worker from the
    # same reduced losses; both pick up where they were on resume.
    # Starting from factor 0, so the first estimate is what gives a head weight.
    blending = {"method": "gradient_blending", "blend_every": 1, "freeze_after": 1, "head_weight": 0.0}
    spec_path = write_train_spec(
        os.path.join(quickstart_dir, "spec.yaml"),
        model={**SMALL_MODEL, "balance": blending},
        data={"batch_size": 8},  # 16 steps an epoch: time to land a kill inside one
        epochs=4,
        strategy="multi_worker",
        tensorboard_examples=0,
    )
    run_dir = str(tmp_path / "run")
    workers = start_workers(spec_path, run_dir)
    deadline = time.time() + 240
    while len(_history(run_dir)) < 1 and time.time() < deadline and all(w.poll() is None for w in workers):
        time.sleep(0.05)
    time.sleep(0.5)  # into the next epoch
    for worker in workers:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    finished_before_kill = [int(row["epoch"]) for row in _history(run_dir)]
    assert 1 <= len(finished_before_kill) < 4, finished_before_kill
    assert os.path.isdir(os.path.join(run_dir, "backup"))

    digests = finish_workers(start_workers(spec_path, run_dir))
    assert digests[0] == digests[1]
    history = _history(run_dir)
    assert [int(row["epoch"]) for row in history] == [0, 1, 2, 3]  # none repeated, none missing
    assert all("accuracy" in row and "val_accuracy" in row for row in history)
    factors = [[float(row[f"{f}_head_factor"]) for f in ("caption", "image", "audio")] for row in history]
    assert all(value == 0.0 for value in factors[0])  # `head_weight` until the first window closes
    assert any(value > 0.0 for value in factors[-1]), factors  # the generalising heads got weight
    for feature in ("caption", "image", "audio"):  # a frozen encoder stays frozen, across the kill too
        learns = [float(row[f"{feature}_learns"]) for row in history]
        assert learns == sorted(learns, reverse=True), (feature, learns)
    assert os.path.exists(os.path.join(run_dir, "model.keras")) and not os.path.exists(
        os.path.join(run_dir, "backup")
    )


def test_multi_worker_needs_a_run_folder_every_worker_names(quickstart_dir):
    from mmkeras.errors import SpecError
    from mmkeras.training import train

    spec = Spec.from_yaml(os.path.join(quickstart_dir, "spec.yaml"))
    spec.train.strategy = "multi_worker"
    with pytest.raises(SpecError, match="multi_worker needs --output-dir"):
        train(spec)

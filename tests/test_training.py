import collections
import csv
import dataclasses
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mmkeras.datasets import build_quickstart
from mmkeras.errors import TrainingError
from mmkeras.run_folder import RunFolder
from mmkeras.spec import Spec
from mmkeras.training import train
from mmkeras.training.callbacks import FiniteModelCheckpoint, NaNGuard
from tests.training_helpers import SMALL_MODEL, run_cli, write_train_spec


@pytest.fixture(scope="module")
def quickstart_dir(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("quickstart"))
    build_quickstart(folder, num_rows=400)
    return folder


@pytest.fixture(scope="module")
def trained_run(quickstart_dir, tmp_path_factory):
    spec = Spec.from_yaml(
        write_train_spec(os.path.join(quickstart_dir, "spec.yaml"), epochs=6, profile_batches=[2, 4])
    )
    run_dir = str(tmp_path_factory.mktemp("run") / "fused")
    return train(spec, run_dir, verbose=0)


def _accumulator(folder):
    accumulator = EventAccumulator(folder, size_guidance={"tensors": 0, "scalars": 0, "images": 0})
    accumulator.Reload()
    return accumulator


def test_run_folder_is_complete(trained_run):
    run = trained_run.run_dir
    for name in (
        "spec.yaml",
        "model.keras",
        "checkpoints/best.keras",
        "checkpoints/last.keras",
        "history.csv",
        "metrics.json",
    ):
        assert os.path.exists(os.path.join(run, name)), name
    assert not os.path.exists(os.path.join(run, "backup"))  # removed once the run finished
    rows = list(csv.DictReader(open(os.path.join(run, "history.csv"))))
    assert [int(r["epoch"]) for r in rows] == list(range(6))
    metrics = json.load(open(os.path.join(run, "metrics.json")))
    assert metrics["accuracy"] >= 0.8  # the fused model sees shape and pitch
    # The run ends on its best validation epoch of the fused head's loss, whichever epoch that was.
    assert metrics["fused_loss"] == pytest.approx(min(float(r["val_fused_loss"]) for r in rows), rel=1e-3)
    # Each modality's head is logged apart; `loss` is what was minimised, their sum.
    heads = ("fused", "caption", "image", "audio")
    for row in rows:
        parts = sum(float(row[f"val_{head}_loss"]) for head in heads)
        assert float(row["val_loss"]) == pytest.approx(parts, rel=1e-3)
    assert all(row[f"{head}_ogr"] == "nan" for row in rows[:1] for head in heads)  # no window yet
    assert any(float(row["audio_ogr"]) >= 0 for row in rows[1:])
    assert all(float(rows[-1][f"{head}_loss"]) < float(rows[0][f"{head}_loss"]) for head in heads)
    # Shape and pitch each decide half the label: the fused model beats every head.
    assert metrics["fusion_check"]["fused_is_best"] and metrics["fusion_check"]["message"] is None
    written = Spec.from_yaml(os.path.join(run, "spec.yaml")).train
    assert written.early_stopping_patience == 3 and written.warmup_epochs == 0.6  # `auto` resolved
    # The spec copy is usable from anywhere: its paths are absolute.
    assert os.path.isabs(Spec.from_yaml(os.path.join(run, "spec.yaml")).data.train)


def test_tensorboard_shows_scalars_pictures_text_audio_projector_hparams_profile(trained_run):
    logs = os.path.join(trained_run.run_dir, "logs")
    train_scalars = _accumulator(os.path.join(logs, "train"))
    losses = [
        e.tensor_proto.float_val[0]
        if e.tensor_proto.float_val
        else float(np.frombuffer(e.tensor_proto.tensor_content, np.float32)[0])
        for e in train_scalars.Tensors("epoch_loss")
    ]
    assert len(losses) == 6 and losses[-1] < losses[0]
    assert "epoch_learning_rate" in train_scalars.Tags()["tensors"]
    assert {"epoch_fused_loss", "epoch_image_loss", "epoch_image_ogr"} <= set(train_scalars.Tags()["tensors"])
    validation_tags = set(_accumulator(os.path.join(logs, "validation")).Tags()["tensors"])
    assert {"epoch_accuracy", "epoch_audio_loss", "epoch_caption_loss"} <= validation_tags

    examples = _accumulator(os.path.join(logs, "examples"))
    tags = examples.Tags()["tensors"]
    assert {"confusion_matrix", "examples", "worst_misclassified", "audio_clips"} <= set(tags)
    plugins = {tag: examples.SummaryMetadata(tag).plugin_data.plugin_name for tag in tags}
    assert plugins["confusion_matrix"] == "images" and plugins["examples"] == "images"
    assert plugins["worst_misclassified"] == "text" and plugins["audio_clips"] == "audio"
    confusion = examples.Tensors("confusion_matrix")
    assert len(confusion) == 6  # one per epoch
    width, height = (int(v) for v in confusion[-1].tensor_proto.string_val[:2])
    assert width > 100 and height > 100
    table = examples.Tensors("worst_misclassified")[-1].tensor_proto.string_val[0].decode()
    assert table.startswith("| row | true | predicted | confidence |")

    assert "projector_config.pbtxt" in os.listdir(logs)
    metadata = open(os.path.join(logs, "metadata.tsv")).read().splitlines()
    assert metadata[0] == "label\ttext\trow" and len(metadata) > 10
    assert os.path.getsize(os.path.join(logs, "sprite.png")) > 1000
    hparams = _accumulator(os.path.join(logs, "hparams"))
    assert any(
        hparams.SummaryMetadata(tag).plugin_data.plugin_name == "hparams" for tag in hparams.Tags()["tensors"]
    )
    assert "final/accuracy" in hparams.Tags()["tensors"]
    profiles = os.path.join(logs, "train", "plugins", "profile")
    assert os.path.isdir(profiles) and os.listdir(profiles)


def test_evaluate_writes_metrics_plots_ablation_and_baselines(trained_run, quickstart_dir, tmp_path):
    result = run_cli("evaluate", trained_run.run_dir, "--output-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    report = json.load(open(tmp_path / "metrics.json"))
    assert report["accuracy"] >= 0.8
    assert set(report["per_class"]) == {"circle_high", "circle_low", "square_high", "square_low"}
    assert np.array(report["confusion_matrix"]).sum() == report["rows"]
    ablation = report["modality_ablation"]
    assert set(ablation) == {"all modalities", "without caption", "without image", "without audio"}
    # Shape and pitch both matter: masking either picture or sound costs accuracy.
    assert ablation["without audio"]["accuracy"] < ablation["all modalities"]["accuracy"] - 0.2
    assert ablation["without image"]["accuracy"] < ablation["all modalities"]["accuracy"] - 0.1
    plots = ("confusion_matrix.png", "per_class_f1.png", "modality_ablation.png", "baselines.png")
    for plot in (*plots, "training_curves.png", "unimodal_heads.png", "head_curves.png"):
        assert open(tmp_path / plot, "rb").read(4) == b"\x89PNG"
    # Each modality's own head: the picture tells the shape, the sound the
    # pitch, so none alone gets near the fused model.
    alone = {name: scores["accuracy"] for name, scores in report["unimodal_heads"].items()}
    assert set(alone) == {"caption", "image", "audio"}
    assert all(value <= report["accuracy"] - 0.2 for value in alone.values()), alone
    assert report["fusion_check"]["fused_is_best"] and "Each modality's own head:" in result.stdout

    # Linear baselines trained on the same training split, scored on the same rows.
    assert "Baselines on the same split" in result.stdout
    baselines = report["baselines"]
    assert list(baselines) == [
        "constant",
        "caption: TF-IDF + linear",
        "image: pixels + linear",
        "audio: mel statistics + linear",
    ]
    # The constant baseline predicts the training split's majority class.
    labels = {
        split: [row["label"] for row in csv.DictReader(open(os.path.join(quickstart_dir, f"{split}.csv")))]
        for split in ("train", "test")
    }
    counts = collections.Counter(labels["train"])
    majority = [label for label, count in counts.items() if count == max(counts.values())]
    shares = [labels["test"].count(label) / len(labels["test"]) for label in majority]
    assert any(baselines["constant"]["accuracy"] == pytest.approx(share) for share in shares)
    # Shape and pitch together decide the label: no single modality's linear model gets close.
    for name, lead in report["above_baselines"].items():
        assert lead == pytest.approx(report["accuracy"] - baselines[name]["accuracy"])
        assert lead > 0.2, (name, report)


def test_predict_adds_columns_and_names_bad_rows(trained_run, quickstart_dir, tmp_path):
    rows = open(os.path.join(quickstart_dir, "test.csv")).read().splitlines()
    header, good, broken = rows[0], rows[1:6], rows[6].split(",")
    broken[1] = "images/missing.png"
    manifest = tmp_path / "rows.csv"
    # Relative paths resolve against the manifest's folder: make them absolute.
    fixed = []
    for line in good + [",".join(broken)]:
        caption, image, audio, label = line.split(",")
        fixed.append(
            ",".join(
                [caption, os.path.join(quickstart_dir, image), os.path.join(quickstart_dir, audio), label]
            )
        )
    manifest.write_text("\n".join([header, *fixed]) + "\n")
    result = run_cli("predict", trained_run.run_dir, "--data", str(manifest))
    assert result.returncode == 0, result.stderr
    written = list(csv.DictReader(open(tmp_path / "rows.predictions.csv")))
    assert len(written) == 6
    assert all(
        r["predicted_label"] in {"circle_high", "circle_low", "square_high", "square_low"}
        for r in written[:5]
    )
    assert sum(r["predicted_label"] == r["label"] for r in written[:5]) >= 3
    assert written[5]["predicted_label"] == "" and "missing file" in written[5]["error"]
    assert (
        abs(
            sum(
                float(written[0][f"probability_{c}"])
                for c in ("circle_high", "circle_low", "square_high", "square_low")
            )
            - 1
        )
        < 1e-4
    )


@pytest.mark.long(120)
def test_training_under_several_seeds_reports_mean_and_spread(quickstart_dir, tmp_path):
    spec_path = write_train_spec(os.path.join(quickstart_dir, "spec.yaml"), epochs=1, tensorboard_examples=0)
    result = run_cli("train", spec_path, "--output-dir", str(tmp_path), "--seeds", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Validation over 2 seeds" in result.stdout and "±" in result.stdout
    summary = json.load(open(tmp_path / "seeds.json"))
    seed = Spec.from_yaml(spec_path).train.seed
    assert list(summary["runs"]) == [str(seed), str(seed + 1)]
    runs = [os.path.join(tmp_path, f"seed-{s}") for s in (seed, seed + 1)]
    assert [Spec.from_yaml(os.path.join(run, "spec.yaml")).train.seed for run in runs] == [seed, seed + 1]
    losses = [json.load(open(os.path.join(run, "metrics.json")))["loss"] for run in runs]
    assert losses[0] != losses[1]  # another seed, another model
    loss = summary["summary"]["loss"]
    assert loss["values"] == losses and loss["mean"] == pytest.approx(np.mean(losses))
    assert loss["std"] == pytest.approx(np.std(losses, ddof=1))
    # The headline comes first: the task's own metric on the validation split, per seed.
    headline = summary["headline"]
    assert list(summary["summary"])[0] == headline and f"{headline:<18}" in result.stdout
    evaluations = [os.path.join(run, "evaluation", "validation", "metrics.json") for run in runs]
    scores = [json.load(open(path))[headline] for path in evaluations]
    assert summary["summary"][headline]["values"] == scores


def test_run_folder_of_an_older_version_is_named(trained_run, tmp_path):
    old = tmp_path / "old_run"
    old.mkdir()
    shutil.copy(os.path.join(trained_run.run_dir, "spec.yaml"), old / "spec.yaml")
    shutil.copy(os.path.join(trained_run.run_dir, "model.keras"), old / "model.keras")
    (old / "preprocessor.json").write_text("{}")  # how runs were laid out before Tasks
    result = run_cli("evaluate", str(old))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "was written by an older version of mmkeras" in result.stderr
    assert "mmkeras train" in result.stderr


def test_finished_run_is_not_overwritten_by_accident(trained_run, quickstart_dir):
    result = run_cli(
        "train", os.path.join(trained_run.run_dir, "spec.yaml"), "--output-dir", trained_run.run_dir
    )
    assert result.returncode == 2 and "holds a finished run" in result.stderr


def test_nan_loss_stops_with_a_message_and_keeps_the_last_checkpoint(tmp_path):
    def fresh_model():
        inputs = keras.Input((2,))
        model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
        model.compile(optimizer="sgd", loss="mse")
        return model

    x = np.ones((40, 2), "float32")
    clean = np.ones((40, 1), "float32")
    poisoned = clean.copy()
    poisoned[25] = np.nan  # batch 3 of 4 (batch size 10)
    last = str(tmp_path / "last.keras")

    guard = NaNGuard(last)
    fresh_model().fit(
        x,
        poisoned,
        batch_size=10,
        epochs=3,
        shuffle=False,
        verbose=0,
        callbacks=[guard, FiniteModelCheckpoint(last)],
    )
    assert (
        guard.failure and "epoch 1, batch 3" in guard.failure and "Lower train.learning_rate" in guard.failure
    )
    assert not os.path.exists(last)  # a diverged model is never written as "last"

    model = fresh_model()
    model.fit(
        x, clean, batch_size=10, epochs=1, shuffle=False, verbose=0, callbacks=[FiniteModelCheckpoint(last)]
    )
    good = keras.saving.load_model(last).get_weights()
    guard = NaNGuard(last)
    model.fit(
        x,
        poisoned,
        batch_size=10,
        epochs=1,
        shuffle=False,
        verbose=0,
        callbacks=[guard, FiniteModelCheckpoint(last)],
    )
    assert guard.failure and last in guard.failure
    kept = keras.saving.load_model(last).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(good, kept))  # the last good epoch survives


def test_training_error_reaches_the_command_line(quickstart_dir, tmp_path):
    spec_path = write_train_spec(
        os.path.join(quickstart_dir, "spec.yaml"), epochs=2, learning_rate=1e12, optimizer="sgd"
    )
    result = run_cli("train", spec_path, "--output-dir", str(tmp_path / "nan"))
    assert result.returncode == 2
    assert "error: the loss became nan" in result.stderr.lower()
    assert isinstance(TrainingError("x"), RuntimeError)


def _history_epochs(path):
    if not os.path.exists(path):
        return []
    return [int(r["epoch"]) for r in csv.DictReader(open(path))]


@pytest.mark.long(260)
def test_killed_training_resumes_from_the_last_finished_epoch(quickstart_dir, tmp_path):
    # A cosine schedule ends each run in a settled state, so two runs compare.
    spec_path = write_train_spec(
        os.path.join(quickstart_dir, "spec.yaml"), epochs=4, seed=7, schedule="cosine"
    )
    spec = Spec.from_yaml(spec_path)
    import yaml

    mapping = yaml.safe_load(open(spec_path))
    mapping["data"]["batch_size"] = 8  # 40 steps an epoch: time to land a kill inside one
    mapping["data"]["train"] = spec.resolve(mapping["data"]["train"])
    mapping["data"]["test"] = spec.resolve(mapping["data"]["test"])
    yaml.safe_dump(mapping, open(tmp_path / "spec.yaml", "w"))
    run_dir = str(tmp_path / "run")
    command = [
        sys.executable,
        "-m",
        "mmkeras.cli",
        "train",
        str(tmp_path / "spec.yaml"),
        "--output-dir",
        run_dir,
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    history = os.path.join(run_dir, "history.csv")
    deadline = time.time() + 240
    while len(_history_epochs(history)) < 2 and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)  # into the third epoch
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished_before_kill = _history_epochs(history)
    assert 2 <= len(finished_before_kill) < 4, finished_before_kill
    assert os.path.isdir(os.path.join(run_dir, "backup"))

    resumed = subprocess.run(command, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert _history_epochs(history) == [0, 1, 2, 3]  # no epoch repeated, none missing
    resumed_accuracy = json.load(open(os.path.join(run_dir, "metrics.json")))["accuracy"]

    straight = subprocess.run(command[:-1] + [str(tmp_path / "straight")], capture_output=True, text=True)
    assert straight.returncode == 0, straight.stderr[-2000:]
    straight_accuracy = json.load(open(tmp_path / "straight" / "metrics.json"))["accuracy"]
    assert abs(resumed_accuracy - straight_accuracy) <= 0.15, (resumed_accuracy, straight_accuracy)


def _quickstart_results(stdout):
    """The quickstart's two printed tables: {model: test accuracy}, {baseline: score}."""
    tables = {"Test accuracy, the fused model": {}, "Linear baselines on the same test split": {}}
    section = None
    for line in stdout.splitlines():
        starts = [table for title, table in tables.items() if line.startswith(title)]
        if starts:
            section = starts[0]
        elif section is not None and line.startswith("  ") and line.strip():
            parts = line.split()
            # Model rows end with their run folder; baseline names may hold spaces.
            is_model = section is tables["Test accuracy, the fused model"]
            value = parts[-2] if is_model else parts[-1]
            section[" ".join(parts[:-2] if is_model else parts[:-1])] = float(value)
        else:
            section = None
    return tuple(tables.values())


@pytest.mark.long(440)
def test_quickstart_main_job(tmp_path):
    result = run_cli(
        "quickstart",
        "--dataset",
        "quickstart",
        "--output-dir",
        str(tmp_path),
        "--saved-models",
        str(tmp_path / "saved_models"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    table, baselines = _quickstart_results(result.stdout)
    assert set(table) == {"fused", "caption only", "image only", "audio only"}, result.stdout
    assert table["fused"] >= 0.9
    assert all(table["fused"] > value + 0.25 for name, value in table.items() if name != "fused")
    assert "Linear baselines on the same test split (accuracy;" in result.stdout
    assert {"constant", "caption: TF-IDF + linear"} <= set(baselines), result.stdout
    assert "tensorboard --logdir" in result.stdout
    assert os.path.exists(tmp_path / "saved_models" / "quickstart" / "1" / "saved_model.pb")
    assert "docker run -p 8500:8500 -p 8501:8501" in result.stdout and "mmkeras serve" in result.stdout


# The real-data regression check of the defaults (see the README's table):
# the default spec's fused model must beat every linear baseline by this much
# of the headline metric, and its validation accuracy must have settled: the
# last three epochs within this spread. Emoji's margin is smaller: its names
# alone give TF-IDF 0.55-0.61 balanced accuracy (its training varies from run
# to run), and the defaults measured 0.684 ± 0.023 over three seeds.
BASELINE_MARGIN = 0.10
EMOJI_BASELINE_MARGIN = 0.01
VALIDATION_SPREAD = 0.15


def _train_and_evaluate(spec_path, run):
    """`mmkeras train` then `mmkeras evaluate` on the test split, as a user
    would run them; the evaluation report."""
    result = run_cli("train", str(spec_path), "--output-dir", str(run))
    assert result.returncode == 0, result.stderr[-3000:]
    result = run_cli("evaluate", str(run))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Baselines on the same split" in result.stdout
    return json.load(open(run / "evaluation" / "test" / "metrics.json"))


def _last_validation_accuracies(run, count=3):
    return [float(row["val_accuracy"]) for row in csv.DictReader(open(run / "history.csv"))][-count:]


@pytest.mark.long(450)
def test_defaults_beat_each_modality_head_and_the_baselines_on_degraded_avmnist(data_root, tmp_path):
    # The quickstart's real data in its default configuration: the
    # degradation leaves neither modality enough on its own. The fused model
    # is held against each modality's own head, trained beside it on the
    # same encoder; separate single-modality models (what the quickstart
    # prints, three trainings instead of one) are the README's benchmarks.
    from mmkeras.datasets import build_avmnist
    from mmkeras.quickstart import AVMNIST_DEGRADATION

    # As `mmkeras quickstart --dataset avmnist` writes it.
    build_avmnist(str(tmp_path / "data" / "avmnist"), data_root_dir=data_root, **AVMNIST_DEGRADATION)
    run = tmp_path / "run"
    report = _train_and_evaluate(tmp_path / "data" / "avmnist" / "spec.yaml", run)
    assert report["headline"] == "accuracy"
    heads = {feature: scores["accuracy"] for feature, scores in report["unimodal_heads"].items()}
    assert set(heads) == {"image", "audio"}, heads
    assert report["accuracy"] >= max(heads.values()) + 0.03, (report["accuracy"], heads)
    baselines = {"constant", "image: pixels + linear", "audio: mel statistics + linear"}
    assert set(report["baselines"]) == baselines
    leads = report["above_baselines"]
    assert all(lead >= BASELINE_MARGIN for lead in leads.values()), (report["accuracy"], leads)
    last = _last_validation_accuracies(run)
    assert max(last) - min(last) <= VALIDATION_SPREAD, last


@pytest.mark.long(300)
def test_defaults_beat_the_baselines_on_emoji(data_root, tmp_path):
    # The second real data set: emoji names and pictures, an imbalanced
    # category target, trained and evaluated as a user would from the CLI.
    from mmkeras.datasets import build_emoji

    build_emoji(str(tmp_path / "data"), data_root_dir=data_root)
    run = tmp_path / "run"
    report = _train_and_evaluate(tmp_path / "data" / "spec.yaml", run)
    assert report["headline"] == "balanced_accuracy"  # the categories are imbalanced
    assert set(report["baselines"]) == {"constant", "name: TF-IDF + linear", "image: pixels + linear"}
    leads = report["above_baselines"]
    assert all(lead >= EMOJI_BASELINE_MARGIN for lead in leads.values()), (report["balanced_accuracy"], leads)
    last = _last_validation_accuracies(run)
    assert max(last) - min(last) <= VALIDATION_SPREAD, last


def test_a_grouped_validation_split_trains_and_the_log_shows_the_splits(quickstart_dir, tmp_path):
    # Every four rows share a group (a user, say): validation holds whole groups out.
    with open(os.path.join(quickstart_dir, "train.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    with open(os.path.join(quickstart_dir, "grouped.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*rows[0], "user"])
        writer.writeheader()
        writer.writerows({**row, "user": f"user{i // 4}"} for i, row in enumerate(rows))
    spec_path = write_train_spec(
        os.path.join(quickstart_dir, "spec.yaml"),
        data={"train": "grouped.csv", "validation_split": {"fraction": 0.25, "group_by": "user"}},
        epochs=1,
        tensorboard_examples=0,
    )
    result = run_cli("train", spec_path, "--output-dir", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert "validation is 25% of the `user` groups of train, whole" in log, log[-3000:]
    held = re.search(r"validation: 0 of its (\d+) `user` groups are also in train", log)
    assert held, log[-3000:]
    groups = (len(rows) + 3) // 4
    assert 0.2 * groups <= int(held.group(1)) <= 0.3 * groups
    assert re.search(r"validation\s+\d+ rows, 0 bad; circle_high", log)
    written = Spec.from_yaml(str(tmp_path / "run" / "spec.yaml")).data.validation_split
    assert (written.fraction, written.group_by) == (0.25, "user")
    history = list(csv.DictReader(open(tmp_path / "run" / "history.csv")))
    assert len(history) == 1 and float(history[0]["val_loss"]) > 0


def test_auto_class_weights_only_for_imbalanced_targets(tmp_path, quickstart_dir):
    from mmkeras.data import build_preprocessor
    from mmkeras.training.defaults import resolve_training_defaults
    from mmkeras.training.run import _class_weight

    rows = open(os.path.join(quickstart_dir, "train.csv")).read().splitlines()
    header, body = rows[0], rows[1:]
    # Keep every circle_high row but only a fifth of the others: imbalanced.
    kept = [r for i, r in enumerate(body) if r.endswith("circle_high") or i % 5 == 0]
    absolute = []
    for line in kept:
        caption, image, audio, label = line.split(",")
        absolute.append(
            ",".join(
                [caption, os.path.join(quickstart_dir, image), os.path.join(quickstart_dir, audio), label]
            )
        )
    (tmp_path / "train.csv").write_text("\n".join([header, *absolute]) + "\n")
    import yaml

    mapping = yaml.safe_load(open(os.path.join(quickstart_dir, "spec.yaml")))
    mapping["data"].update(train="train.csv", test=None, validation_split=None)
    mapping["train"].pop("class_weight", None)  # the default: auto
    yaml.safe_dump(mapping, open(tmp_path / "spec.yaml", "w"))
    spec = Spec.from_yaml(str(tmp_path / "spec.yaml"))
    preprocessor = build_preprocessor(spec, progress=False)
    resolved = resolve_training_defaults(spec, preprocessor, has_validation=False)
    weights = _class_weight(resolved, preprocessor)
    counts = {label: sum(line.endswith(label) for line in kept) for label in preprocessor.target.labels}
    assert max(counts.values()) >= 3 * min(counts.values())
    for index, label in enumerate(preprocessor.target.labels):
        assert weights[index] == pytest.approx(len(kept) / (4 * counts[label]), rel=1e-3)
        assert resolved.train.class_weight[label] == pytest.approx(weights[index])  # in spec.yaml
    assert weights[preprocessor.target.labels.index("circle_high")] < min(
        w for i, w in weights.items() if preprocessor.target.labels[i] != "circle_high"
    )
    assert resolved.train.early_stopping_patience is None  # nothing to stop on

    balanced = Spec.from_yaml(os.path.join(quickstart_dir, "spec.yaml"))
    balanced_preprocessor = build_preprocessor(balanced, progress=False)
    assert balanced_preprocessor.target.imbalance < 3
    kept_default = resolve_training_defaults(balanced, balanced_preprocessor, has_validation=True)
    assert kept_default.train.class_weight is None
    assert kept_default.train.early_stopping_patience == 3
    assert 0 < kept_default.train.warmup_epochs <= 1
    forced = dataclasses.replace(balanced, train=dataclasses.replace(balanced.train, class_weight="balanced"))
    assert resolve_training_defaults(forced, balanced_preprocessor, True).train.class_weight is not None


def test_warm_up_ramps_to_the_peak_then_follows_the_schedule():
    from mmkeras.spec.train import TrainSpec
    from mmkeras.training.optimizer import WarmUp, learning_rate_schedule

    def rates(schedule, steps):
        restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
        values = [float(schedule(step)) for step in steps]
        assert values == pytest.approx([float(restored(step)) for step in steps])  # saved with the model
        return values

    constant = learning_rate_schedule(TrainSpec(epochs=10, learning_rate=0.01, warmup_epochs=1), 10)
    assert isinstance(constant, WarmUp)
    assert rates(constant, [0, 4, 9, 10, 99]) == pytest.approx([0.001, 0.005, 0.01, 0.01, 0.01])
    cosine = learning_rate_schedule(
        TrainSpec(epochs=10, learning_rate=0.01, warmup_epochs=1, schedule="cosine"), 10
    )
    values = rates(cosine, [0, 9, 10, 55, 99])
    assert values[:3] == pytest.approx([0.001, 0.01, 0.01])
    assert values[2] > values[3] > values[4] >= 0 and values[4] < 0.0001  # decays to 0 after the ramp
    assert learning_rate_schedule(TrainSpec(learning_rate=0.01, warmup_epochs=0), 10) == 0.01


def test_balanced_accuracy_is_the_mean_recall_of_the_present_classes():
    from mmkeras.reporting.metrics import classification_report

    true = [0] * 8 + [1] * 2
    report = classification_report(true, [0] * 10, ["common", "rare", "absent"])
    assert report["accuracy"] == 0.8 and report["balanced_accuracy"] == 0.5


def test_run_ends_on_its_best_validation_epoch_not_its_last(quickstart_dir, tmp_path):
    # Validation rows with every label swapped for another: the better the
    # model learns the training rows, the worse its validation loss, so the
    # best validation epoch is an early one and the last epoch is not it.
    # Every modality then looks like a shortcut; switching one off would
    # start the search for the best epoch over, so the switch stays off.
    swap = {"circle_high": "square_low", "square_low": "circle_high", "circle_low": "square_high"}
    swap["square_high"] = "circle_low"
    lines = open(os.path.join(quickstart_dir, "test.csv")).read().splitlines()
    wrong = [lines[0]] + [line.rsplit(",", 1)[0] + "," + swap[line.rsplit(",", 1)[1]] for line in lines[1:]]
    (open(os.path.join(quickstart_dir, "validation_swapped.csv"), "w")).write("\n".join(wrong) + "\n")
    spec_path = write_train_spec(
        os.path.join(quickstart_dir, "spec.yaml"),
        model={**SMALL_MODEL, "balance": {"switch_off": False}},
        data={"validation": "validation_swapped.csv", "validation_split": None},
        epochs=4,
        early_stopping_patience=None,
        tensorboard_examples=0,
    )
    result = train(Spec.from_yaml(spec_path), str(tmp_path / "run"), verbose=0)
    rows = csv.DictReader(open(tmp_path / "run" / "history.csv"))
    history = [float(r["val_fused_loss"]) for r in rows]
    assert len(history) == 4 and history.index(min(history)) < 3, history  # the last is not the best
    assert result.metrics["fused_loss"] == pytest.approx(min(history), rel=1e-3)
    saved = keras.saving.load_model(tmp_path / "run" / "model.keras").get_weights()
    best = keras.saving.load_model(tmp_path / "run" / "checkpoints" / "best.keras").get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(saved, best))


def test_history_reads_a_column_an_epoch_did_not_log_as_nan(tmp_path):
    # Keras's CSV logger writes "NA" where an epoch's logs lack a column.
    (tmp_path / "history.csv").write_text("epoch,loss,val_loss\n0,1.5,NA\n1,1.25,1.0\n")
    history = RunFolder(str(tmp_path)).read_history()
    assert history["loss"] == [1.5, 1.25]
    assert math.isnan(history["val_loss"][0]) and history["val_loss"][1] == 1.0

"""`mmkeras tune`: a KerasTuner search over the spec's `tune:` space, each trial a run."""

import csv
import os

import pytest
import yaml

from mmkeras.errors import SpecError
from mmkeras.spec import Spec
from mmkeras.tune import tune
from tests.training_helpers import SMALL_MODEL, run_cli

SPACE = {
    "train.learning_rate": {"min": 0.0003, "max": 0.01, "log": True},
    "model.fusion.type": {"choice": ["concat", "gated"]},
    "model.encoders.image.filters": {"choice": [[8, 16], [16]]},
}


def _tune_spec(quickstart_spec, folder, space=None, **tune_section):
    mapping = quickstart_spec.to_dict(absolute_paths=True)
    mapping["model"] = {**SMALL_MODEL, "fusion": {"type": "concat"}}
    mapping["train"] = {"epochs": 1, "tensorboard_examples": 0}
    mapping["tune"] = {"algorithm": "bayesian", "max_trials": 2, "space": space or SPACE, **tune_section}
    path = os.path.join(folder, "tune.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(mapping, f)
    return path


def _trials(folder):
    with open(os.path.join(folder, "trials.csv"), newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.long(45)
def test_a_search_trains_runs_writes_the_best_spec_and_resumes(quickstart_spec, tmp_path):
    spec_path = _tune_spec(quickstart_spec, tmp_path)
    output = str(tmp_path / "search")
    result = tune(Spec.from_yaml(spec_path), output, verbose=0)
    assert [row["trial"] for row in result.trials] == ["0", "1"]
    # The first trial trains the spec's own values.
    first = result.trials[0]
    assert (first["train.learning_rate"], first["model.fusion.type"]) == (0.001, "concat")
    assert first["model.encoders.image.filters"] == [8, 16]
    for row in result.trials:
        run = os.path.join(output, f"trial_{row['trial']}")
        trained = Spec.from_yaml(os.path.join(run, "spec.yaml"))
        assert trained.train.learning_rate == pytest.approx(row["train.learning_rate"])
        assert trained.model.fusion["type"] == row["model.fusion.type"]
        assert os.path.exists(os.path.join(run, "metrics.json"))
    best = Spec.from_yaml(result.best_spec)
    chosen = next(row for row in result.trials if row["trial"] == result.best_trial)
    assert best.tune is None and best.model.fusion["type"] == chosen["model.fusion.type"]
    assert chosen["accuracy"] == max(row["accuracy"] for row in result.trials)
    assert any(name.startswith("trial_") for name in os.listdir(os.path.join(output, "logs")))

    finished = os.path.getmtime(os.path.join(output, "trial_0", "metrics.json"))
    again = run_cli("tune", spec_path, "--output-dir", output, "--trials", "3")
    assert again.returncode == 0, again.stderr
    assert [row["trial"] for row in _trials(output)] == ["0", "1", "2"]  # one more, not three
    assert os.path.getmtime(os.path.join(output, "trial_0", "metrics.json")) == finished
    assert f"mmkeras train {result.best_spec}" in again.stdout


@pytest.mark.parametrize(
    "space, message",
    [
        ({}, "`space` is empty"),
        (
            {"train.learning_rate": {"min": 0.01, "max": 0.001}},
            r"learning_rate: `min` \(0.01\) must be below",
        ),
        ({"train.learning_rat": {"min": 0.001, "max": 0.01}}, "Did you mean `learning_rate`"),
        (
            {"model.fusion.type": {"choice": ["concat", "fusion_of_dreams"]}},
            "model.fusion.type='fusion_of_dreams' does not fit",
        ),
        ({"model.fusion.type": {"choice": []}}, "`choice` must be a non-empty list"),
        ({"train.epochs.first": {"choice": [1, 2]}}, "its parent is a value"),
        ({"epochs": {"choice": [1, 2]}}, "a search path starts with data, model, train"),
        # Each value is tried in the spec as it is: gated fusion takes no projection_dim.
        (
            {"model.fusion.projection_dim": {"choice": [8, 16]}, "model.fusion.type": {"choice": ["gated"]}},
            "GatedFusion has no argument",
        ),
    ],
)
def test_a_wrong_search_space_names_the_entry_before_any_trial(quickstart_spec, tmp_path, space, message):
    mapping = yaml.safe_load(open(_tune_spec(quickstart_spec, tmp_path)))
    mapping["tune"]["space"] = space
    output = tmp_path / "search"
    with pytest.raises(SpecError, match=message):
        tune(Spec.from_dict(mapping, str(tmp_path)), str(output))
    assert not output.exists()

"""Visual question answering on easy-VQA: the builder, answers folded into
`[other]`, and scores per question type."""

import csv
import os

import pytest

from mmkeras.cli import main
from mmkeras.data import build_preprocessor, check_spec
from mmkeras.datasets import build_easy_vqa
from mmkeras.datasets.easy_vqa import QUESTION_LENGTH
from mmkeras.errors import SpecError
from mmkeras.evaluation import evaluate_run
from mmkeras.spec import Spec
from mmkeras.tasks.classifier import OTHER_LABEL, LabelEncoder
from mmkeras.training import train
from tests.conftest import write_spec
from tests.training_helpers import write_train_spec

SMALL_VQA_MODEL = {
    "encoders": {
        "question": {"type": "lstm", "embedding_dim": 16, "units": 16},
        "image": {"type": "cnn", "filters": [8, 16]},
    },
    "fusion": {"type": "concat", "projection_dim": 32},
    "head": {"hidden_dims": [32]},
}


def _read(path):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def vqa_dir(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("easy_vqa"))
    build_easy_vqa(folder, fraction=0.05)
    return folder


def test_easy_vqa_is_split_by_picture_with_each_question_typed(vqa_dir):
    splits = {name: _read(os.path.join(vqa_dir, f"{name}.csv")) for name in ("train", "validation", "test")}
    pictures = {name: {row["image"] for row in rows} for name, rows in splits.items()}
    assert not pictures["train"] & pictures["validation"] and not pictures["train"] & pictures["test"]
    assert len(pictures["train"]) == pytest.approx(0.9 * 0.05 * 4000, abs=2)
    assert len(pictures["test"]) == 50  # 5% of the 1,000 test pictures
    for row in splits["train"]:
        if row["question_type"] == "yes/no":
            assert row["answer"] in ("yes", "no"), row
        elif row["question_type"] == "shape":
            assert row["answer"] in ("circle", "rectangle", "triangle"), row
        else:
            assert row["question_type"] == "color" and row["answer"] not in ("yes", "no"), row
    assert {row["question_type"] for row in splits["test"]} == {"yes/no", "shape", "color"}
    assert max(len(row["question"].split()) for rows in splits.values() for row in rows) <= QUESTION_LENGTH
    spec = Spec.from_yaml(os.path.join(vqa_dir, "spec.yaml"))
    assert [f.name for f in spec.data.features] == ["question", "image"]
    assert spec.data.target.column == "answer" and spec.data.target.min_count == 5


def test_rare_and_unseen_answers_fold_into_other(vqa_dir, tmp_path):
    encoder = LabelEncoder("categorical", min_count=2)
    encoder.adapt(["yes", "yes", "no", "no", "no", "blue"])
    assert encoder.labels == [OTHER_LABEL, "no", "yes"]
    assert encoder.counts == {OTHER_LABEL: 1, "no": 3, "yes": 2}
    assert encoder(["yes", "blue", "purple", "no"]).numpy().tolist() == [2, 0, 0, 1]
    assert encoder.problem("purple") is None  # an unseen answer is no bad row
    assert LabelEncoder.from_config(encoder.get_config())(["purple", "yes"]).numpy().tolist() == [0, 2]
    # Nothing folded: `[other]` has no training rows, so it neither counts
    # towards the imbalance nor gets an inverse-frequency weight.
    nothing_rare = LabelEncoder("categorical", min_count=1)
    nothing_rare.adapt(["a", "b", "b"])
    assert nothing_rare.imbalance == 2.0 and nothing_rare.inverse_frequency_weights() == {
        0: 1.0,
        1: 1.5,
        2: 0.75,
    }

    # A test row whose answer training never saw passes the data check.
    data = Spec.from_yaml(os.path.join(vqa_dir, "spec.yaml")).to_dict()["data"]
    test = _read(os.path.join(vqa_dir, "test.csv"))[:10]
    test[0]["answer"] = "purple"
    test_csv = tmp_path / "test.csv"
    with open(test_csv, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(test[0]))
        writer.writeheader()
        writer.writerows(test)
    data.update(
        {key: os.path.join(vqa_dir, data[key]) for key in ("train", "validation")}, test=str(test_csv)
    )
    spec = write_spec(tmp_path, data)
    assert check_spec(spec, progress=False)["test"].bad == []
    assert build_preprocessor(spec, progress=False).target.labels[0] == OTHER_LABEL
    unfolded = dict(data, target={"column": "answer", "type": "categorical"})
    assert [r.reason for r in check_spec(write_spec(tmp_path, unfolded), progress=False)["test"].bad] == [
        "unknown label `purple` (the training labels are: black, blue, brown, circle, gray, green, no, "
        "rectangle, red, teal, triangle, yellow, yes)"
    ]

    for target, message in (
        ({"type": "numeric"}, "`min_count` folds rare labels of a categorical target, not a numeric one."),
        ({"labels": ["yes", "no"]}, "give it or `labels`, not both."),
        ({"min_count": 0}, "`min_count` must be a positive number, got 0."),
    ):
        with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
            write_spec(tmp_path, dict(data, target={"column": "answer", "min_count": 5, **target}))


@pytest.mark.long(60)
def test_a_vqa_model_is_scored_on_each_question_type(vqa_dir, tmp_path, capsys):
    spec_path = write_train_spec(
        os.path.join(vqa_dir, "spec.yaml"), SMALL_VQA_MODEL, epochs=2, tensorboard_examples=0
    )
    spec = Spec.from_yaml(spec_path)
    run = train(spec, str(tmp_path / "run"), verbose=0)

    report = evaluate_run(run.run_dir, baselines=False, by=("question_type", "answer"))
    types = report["by"]["question_type"]
    assert set(types) == {"yes/no", "shape", "color"}
    assert sum(group["rows"] for group in types.values()) == report["rows"]
    # Grouped by the answer itself, each group's accuracy is that class's
    # recall: the groups line up with the rows they name.
    for answer, group in report["by"]["answer"].items():
        assert group["accuracy"] == pytest.approx(report["per_class"][answer]["recall"], abs=1e-6), answer
        assert group["rows"] == report["per_class"][answer]["support"]
    assert {"by_question_type.png", "by_answer.png"} <= set(os.listdir(report["output_dir"]))

    assert main(["evaluate", run.run_dir, "--no-baselines", "--by", "question_type"]) == 0
    out = capsys.readouterr().out
    assert "By question_type:" in out and "yes/no" in out
    assert main(["evaluate", run.run_dir, "--no-baselines", "--by", "colour"]) == 2
    assert "test.csv has no column `colour`; its columns are: image, question, answer, question_type." in (
        capsys.readouterr().err
    )

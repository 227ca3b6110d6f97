import os

import pytest

from mmkeras.data import open_split
from mmkeras.errors import DataError, SpecError
from mmkeras.spec import Spec
from tests.conftest import write_spec

FEATURES = [
    {"name": "caption", "modality": "text", "column": "caption", "max_tokens": 100, "sequence_length": 8},
    {"name": "photo", "modality": "image", "column": "image_path", "size": [16, 16]},
    {"name": "voice", "modality": "audio", "column": "wav_path", "sample_rate": 8000},
]


def _write_manifest(folder, header="caption,image_path,wav_path,label", rows=("a cat,a.png,a.wav,cat",)):
    path = os.path.join(folder, "train.csv")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join([header, *rows]) + "\n")
    return path


def test_yaml_loads_with_defaults_and_resolves_paths(tmp_path):
    _write_manifest(tmp_path)
    spec = write_spec(tmp_path, {"train": "train.csv", "features": FEATURES, "target": {"column": "label"}})
    assert [f.modality for f in spec.data.features] == ["text", "image", "audio"]
    assert spec.data.features[1].size == (16, 16)
    assert spec.data.features[2].max_hz == 4000
    assert spec.data.target.type == "categorical"
    assert spec.resolve(spec.data.train) == str(tmp_path / "train.csv")
    # Paths inside the manifest resolve against the manifest's folder.
    source = open_split(spec, "train")
    assert source.column("image_path") == [str(tmp_path / "a.png")]


def test_round_trip_through_yaml(tmp_path):
    _write_manifest(tmp_path)
    spec = write_spec(tmp_path, {"train": "train.csv", "features": FEATURES, "target": {"column": "label"}})
    spec.to_yaml(str(tmp_path / "again.yaml"))
    assert Spec.from_yaml(str(tmp_path / "again.yaml")) == spec


@pytest.mark.parametrize(
    "change, expected",
    [
        (
            lambda d: d["features"][0].update(modality="video"),
            r"features\[0\].*`modality` must be one of text, image, audio",
        ),
        (lambda d: d["features"][1].update(name="caption"), r"features\[1\].*`caption` is used twice"),
        (
            lambda d: d["features"][0].update(max_token=5),
            r"unknown field `max_token`. Did you mean `max_tokens`",
        ),
        (lambda d: d.update(validation="v.csv", validation_split=0.1), "either `validation`"),
        (lambda d: d.update(test="t.csv", test_split=0.1), "either `test`"),
        (lambda d: d.update(validation_split=1.5), r"data.validation_split: `fraction` must be in \(0, 1\)"),
        (
            lambda d: d.update(validation_split={"fraction": 0.1, "group_by": "a", "order_by": "b"}),
            "`group_by` or `order_by`, not both",
        ),
        (
            lambda d: d.update(test_split={"fraction": 0.1, "groupby": "user"}),
            r"data.test_split: unknown field `groupby`. Did you mean `group_by`",
        ),
        (lambda d: d["target"].update(type="ordinal"), r"data.target: `type` must be one of"),
        (lambda d: d["features"][1].update(size=[16]), r"`size` must be \[height, width\]"),
        (lambda d: d.update(on_bad_record="ignore"), "`on_bad_record` must be `error` or `skip`"),
        (lambda d: d.update(features=[]), "list at least one feature"),
    ],
)
def test_spec_mistakes_name_the_field(tmp_path, change, expected):
    data = {"train": "train.csv", "features": [dict(f) for f in FEATURES], "target": {"column": "label"}}
    change(data)
    with pytest.raises(SpecError, match=expected):
        write_spec(tmp_path, data)


def test_column_missing_from_manifest_is_named_with_a_suggestion(tmp_path):
    _write_manifest(tmp_path, header="caption,image_pth,wav_path,label")
    spec = write_spec(tmp_path, {"train": "train.csv", "features": FEATURES, "target": {"column": "label"}})
    with pytest.raises(
        SpecError, match=r"column `image_path` is not in .*train.csv. Did you mean `image_pth`"
    ):
        open_split(spec, "train")


def test_empty_manifest_is_an_error(tmp_path):
    _write_manifest(tmp_path, rows=())
    spec = write_spec(tmp_path, {"train": "train.csv", "features": FEATURES, "target": {"column": "label"}})
    with pytest.raises(DataError, match="has no rows"):
        open_split(spec, "train")


def test_malformed_jsonl_line_is_named(tmp_path):
    (tmp_path / "train.jsonl").write_text(
        '{"caption": "a", "image_path": "a.png", "wav_path": "a.wav", "label": "x"}\n{oops\n'
    )
    spec = write_spec(tmp_path, {"train": "train.jsonl", "features": FEATURES, "target": {"column": "label"}})
    with pytest.raises(DataError, match=r"train.jsonl:2: not a JSON object"):
        open_split(spec, "train")


def test_missing_validation_is_explained(tmp_path):
    _write_manifest(tmp_path)
    spec = write_spec(tmp_path, {"train": "train.csv", "features": FEATURES, "target": {"column": "label"}})
    with pytest.raises(SpecError, match="validation_split: 0.1"):
        open_split(spec, "validation")

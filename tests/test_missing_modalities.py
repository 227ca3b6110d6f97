"""Rows that lack a modality (`missing: mask`): the data check, training,
`predict`, the exported SavedModel and `mmkeras serve` treat them alike."""

import csv
import json

import numpy as np
import pytest
import yaml

from mmkeras.data import make_dataset
from mmkeras.data.check import check_spec, data_report_lines
from mmkeras.data.splits import open_split
from mmkeras.datasets import build_quickstart
from mmkeras.evaluation.predict import predict_run
from mmkeras.preprocessing.preprocessor import MODALITY_MASK
from mmkeras.spec import Spec
from mmkeras.training import train
from tests.serving_helpers import export_and_serve_raw, instances, start_server, stop_server
from tests.training_helpers import SMALL_MODEL

FEATURES = ("caption", "image", "audio")


def _blank(row, index):
    """Every third row without its picture, every fourth without its caption
    (a caption of spaces is no caption), so some rows lack both."""
    if index % 3 == 0:
        row["image"] = ""
    if index % 4 == 1:
        row["caption"] = "   "
    return row


@pytest.fixture(scope="module")
def gappy_spec(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gappy")
    build_quickstart(str(folder), num_rows=160)
    for split in ("train", "test"):
        path = folder / f"{split}.csv"
        rows = [_blank(row, i) for i, row in enumerate(csv.DictReader(open(path)))]
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    mapping = yaml.safe_load(open(folder / "spec.yaml"))
    for feature in mapping["data"]["features"]:
        if feature["name"] in ("caption", "image"):
            feature["missing"] = "mask"
    mapping["model"] = SMALL_MODEL
    mapping["train"].update(epochs=1, tensorboard_examples=0)
    return Spec.from_dict(mapping, base_dir=str(folder))


def test_empty_cells_are_missing_modalities_not_bad_rows(gappy_spec):
    results = check_spec(gappy_spec, progress=False)
    assert all(not result.bad for result in results.values()), results
    test_rows = results["test"].rows  # every third picture and every fourth caption
    assert results["test"].missing == {"image": (test_rows + 2) // 3, "caption": (test_rows + 2) // 4}
    lines = data_report_lines(results, gappy_spec)
    test_line = next(i for i, line in enumerate(lines) if line.startswith("  test "))
    assert lines[test_line + 1].strip() == "rows missing a modality (masked): caption 8, image 11"
    inputs, _ = next(iter(make_dataset(gappy_spec, "test", batch_size=12, check=False)))
    expected = [[float(i % 4 != 1), float(i % 3 != 0), 1.0] for i in range(12)]
    np.testing.assert_array_equal(inputs[MODALITY_MASK].numpy(), expected)
    assert not inputs["image"].numpy()[0].any()  # no picture: zeros, masked out of the fusion


def test_the_default_keeps_an_empty_cell_a_named_bad_row(gappy_spec, tmp_path):
    mapping = gappy_spec.to_dict()
    for feature in mapping["data"]["features"]:
        feature.pop("missing", None)
        for split in ("train", "test"):
            mapping["data"][split] = gappy_spec.resolve(mapping["data"][split])
    strict = Spec.from_dict(mapping, base_dir=str(tmp_path))
    bad = check_spec(strict, progress=False)["test"].bad
    reasons = {(r.location.rsplit(":", 1)[1], r.column): r.reason for r in bad}
    assert "no file path given; if some rows lack `image`, set `missing: mask`" in reasons[("2", "image")]
    assert reasons[("3", "caption")].startswith("empty text; if some rows lack `caption`")


def test_a_row_with_every_modality_empty_is_bad(gappy_spec, tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text(f"caption,image,audio\n ,,\nhello,,{open_split(gappy_spec, 'test').column('audio')[0]}\n")
    mapping = gappy_spec.to_dict()
    for feature in mapping["data"]["features"]:
        feature["missing"] = "mask"
    mapping["data"].update(train=str(path), test=None, target=None, validation_split=None)
    spec = Spec.from_dict(mapping, base_dir=str(tmp_path))
    [bad] = check_spec(spec, progress=False)["train"].bad
    assert bad.location.endswith(":2") and "every feature is empty" in bad.reason


@pytest.mark.long(90)
def test_rows_missing_modalities_train_predict_export_and_serve_alike(gappy_spec, tmp_path):
    run = train(gappy_spec, str(tmp_path / "run"), verbose=0)
    task = run.task
    test = make_dataset(gappy_spec, "test", preprocessor=task.preprocessor, batch_size=12)
    inputs, _ = next(iter(test))
    expected = task.predict_on_batch(inputs)

    # `mmkeras predict` on the manifest, empty cells and all.
    predictions = list(csv.DictReader(open(predict_run(run.run_dir, gappy_spec.resolve("test.csv")))))
    labels = task.preprocessor.target.labels
    assert not any(row["error"] for row in predictions)
    written = [[float(row[f"probability_{label}"]) for label in labels] for row in predictions[:12]]
    np.testing.assert_allclose(written, expected, atol=1e-5)

    # The SavedModel on raw values: an empty string is a missing modality.
    source = open_split(gappy_spec, "test")
    raw = {f.name: [source.fetch(i, f) for i in range(12)] for f in gappy_spec.data.features}
    assert raw["image"][0] == b"" and raw["caption"][1].strip() == ""
    root = tmp_path / "saved_models"
    served = export_and_serve_raw(run.run_dir, root, "gappy", raw)["probabilities"]
    np.testing.assert_allclose(served.numpy(), expected, atol=1e-5)

    # And over REST, as TF Serving's clients send it.
    with open(tmp_path / "server.log", "w") as log:
        server = start_server(root, log)
        try:
            status, answer = server.post(
                "/v1/models/gappy:predict", json.dumps({"instances": instances(raw, range(12))})
            )
        finally:
            stop_server(server)
    assert status == 200, answer
    np.testing.assert_allclose([p["probabilities"] for p in answer["predictions"]], expected, atol=1e-5)

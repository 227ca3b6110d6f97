"""Records beside images: numeric and categorical columns, from the spec
through the data check, training, `predict`, export and `mmkeras serve`."""

import csv
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from mmkeras.data import make_dataset
from mmkeras.data.check import check_spec
from mmkeras.data.splits import open_split
from mmkeras.errors import SpecError
from mmkeras.evaluation.predict import predict_run
from mmkeras.preprocessing.preprocessor import MODALITY_MASK
from mmkeras.preprocessing.record import RecordPreprocessor
from mmkeras.spec import Spec
from mmkeras.training import train
from tests.serving_helpers import export_and_serve_raw, instances, start_server, stop_server

COLUMNS = [
    {"name": "age", "type": "numeric"},
    {"name": "income", "type": "numeric", "clip": [0.0, 1000.0], "log": True},
    {"name": "site", "type": "categorical"},
]


@pytest.fixture
def record():
    layer = RecordPreprocessor(COLUMNS, name="record")
    layer.adapt(
        {
            "age": ["40", "60", "", "nan", "50"],
            "income": ["0", "99", "5000", "", "-3"],
            "site": ["back", "back", "face", "face", "ear"],
        }
    )
    return layer


def test_numbers_are_standardised_with_a_missing_flag_and_categories_one_hot(record):
    age, income, site = record.columns
    # age: 40, 60 and 50 are numbers (mean 50, std sqrt(200/3)); "" and nan are missing.
    assert age["mean"] == pytest.approx(50.0) and age["std"] == pytest.approx((200 / 3) ** 0.5)
    # income: clipped into [0, 1000], then log(1 + x): 0, log 100, log 1001, 0.
    logs = np.log1p([0.0, 99.0, 1000.0, 0.0])
    assert income["mean"] == pytest.approx(logs.mean()) and income["std"] == pytest.approx(logs.std())
    # `ear` was seen once (min_count 2): it shares the out-of-vocabulary slot.
    assert site["vocabulary"] == ["back", "face"]
    rows = record(
        {
            "age": tf.constant(["60", " 40 ", "", "inf", "NaN", "1e999"]),
            "income": tf.constant(["99", "2000", "", "1", "-5", "0"]),
            "site": tf.constant(["face", "back", "", "ear", "moon", " back "]),
        }
    ).numpy()
    z = (60 - 50) / age["std"]
    income_z = (logs - income["mean"]) / income["std"]
    # age value, missing | income value, missing | site: missing, unknown, back, face
    expected = [
        [z, 0, income_z[1], 0, 0, 0, 0, 1],
        [-z, 0, income_z[2], 0, 0, 0, 1, 0],
        [0, 1, 0, 1, 1, 0, 0, 0],
        [0, 1, (np.log1p(1) - income["mean"]) / income["std"], 0, 0, 1, 0, 0],
        [0, 1, income_z[0], 0, 0, 1, 0, 0],  # -5 is clipped to 0
        [0, 1, income_z[0], 0, 0, 0, 1, 0],  # 1e999 is infinite in float32: missing
    ]
    np.testing.assert_allclose(rows, expected, rtol=1e-5, atol=1e-6)


def test_a_record_runs_alike_direct_mapped_batched_unbatched_and_reloaded(record):
    raw = {
        "age": tf.constant(["33", "", "71.5"]),
        "income": tf.constant(["10", "20", ""]),
        "site": tf.constant(["back", "chin", ""]),
    }
    direct = record(raw).numpy()
    unbatched = np.stack(list(tf.data.Dataset.from_tensor_slices(raw).map(record).as_numpy_iterator()))
    batched = next(tf.data.Dataset.from_tensor_slices(raw).batch(3).map(record).as_numpy_iterator())
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(record)))
    reloaded = keras.saving.deserialize_keras_object(config, safe_mode=True)
    for other in (unbatched, batched, reloaded(raw).numpy()):
        np.testing.assert_allclose(direct, other, rtol=1e-6)
    assert direct.shape == (3, record.output_size) == (3, 8)


def test_text_in_a_numeric_column_stops_the_graph_naming_the_column(record):
    with pytest.raises(tf.errors.InvalidArgumentError, match="record column `age` takes numbers"):
        record(
            {
                "age": tf.constant(["12", "twelve"]),
                "income": tf.constant(["1", "2"]),
                "site": tf.constant(["a", "b"]),
            }
        )


def _spec(folder, rows, missing="error"):
    path = folder / "rows.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        f.write("age,site,label\n" + "".join(f"{row}\n" for row in rows))
    return Spec.from_dict(
        {
            "data": {
                "train": str(path),
                "features": [
                    {
                        "name": "patient",
                        "modality": "record",
                        "missing": missing,
                        "columns": [
                            {"name": "age", "type": "numeric"},
                            {"name": "site", "type": "categorical"},
                        ],
                    }
                ],
                "target": {"column": "label"},
            }
        },
        base_dir=str(folder),
    )


def test_the_data_check_names_cells_that_are_not_numbers_and_empty_records(tmp_path):
    rows = ["40,back,a", "forty,back,b", "nan,,a", "inf,face,b", ",,a"]
    bad = check_spec(_spec(tmp_path, rows), progress=False)["train"].bad
    found = {(r.location.rsplit(":", 1)[1], r.column): r.reason for r in bad}
    assert found == {
        ("3", "age"): "`forty` is not a number; leave the cell empty where the value is missing",
        ("6", "age, site"): "every cell of the record is empty; if some rows lack `patient`, "
        "set `missing: mask` on it to train on them",
    }
    masked = check_spec(_spec(tmp_path, rows, missing="mask"), progress=False)["train"]
    # Masked, the empty record is a missing modality, but the row has no other.
    assert [(r.location.rsplit(":", 1)[1], r.reason) for r in masked.bad][1:] == [
        ("6", "every feature is empty: nothing to predict from")
    ]
    assert masked.missing == {"patient": 1}


@pytest.mark.parametrize(
    "column, message",
    [
        ({"name": "age", "type": "number"}, "`type` must be one of numeric, categorical"),
        ({"name": "site", "type": "categorical", "log": True}, "`clip` and `log` apply to numeric columns"),
        ({"name": "age", "type": "numeric", "clip": [5, 1]}, "`clip` must be [low, high] with low < high"),
        ({"name": "caption", "type": "categorical"}, "raw input name(s) caption used twice"),
    ],
)
def test_record_columns_are_checked_when_the_spec_loads(column, message):
    features = [
        {"name": "caption", "modality": "text"},
        {"name": "r", "modality": "record", "columns": [column]},
    ]
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        Spec.from_dict({"data": {"train": "t.csv", "features": features, "target": {"column": "y"}}})


def test_ham10000_writes_the_record_columns_and_leaves_out_how_the_diagnosis_was_made(ham_spec):
    record = next(f for f in ham_spec.data.features if f.modality == "record")
    assert [(c.name, c.type) for c in record.columns] == [
        ("age", "numeric"),
        ("sex", "categorical"),
        ("localization", "categorical"),
    ]
    header = next(csv.reader(open(ham_spec.resolve("train.csv"))))
    assert {"age", "sex", "localization"} <= set(header) and "dx_type" not in header


@pytest.mark.long(120)
def test_image_and_record_train_predict_export_and_serve_alike(ham_spec, tmp_path):
    run = train(ham_spec, str(tmp_path / "run"), verbose=0)
    task = run.task
    source = open_split(ham_spec, "test")
    count = 8
    raw = {
        name: [source.fetch(i, feature, column) for i in range(count)]
        for feature in ham_spec.data.features
        for name, column in feature.inputs.items()
    }
    # Some of what a clinic sends: no age, a body site never seen, no record at all.
    raw["age"][0] = ""
    raw["localization"][1] = "elbow"
    for name in ("age", "sex", "localization"):
        raw[name][2] = ""
    inputs = task.preprocessor({name: tf.constant(values) for name, values in raw.items()})
    assert inputs[MODALITY_MASK].numpy()[:3].tolist() == [[1, 1], [1, 1], [1, 0]]
    expected = task.predict_on_batch(inputs)

    # `mmkeras predict` on a manifest holding the same rows.
    manifest = tmp_path / "rows.csv"
    images = source.column("image")[:count]
    with open(manifest, "w", newline="") as f:
        writer = csv.DictWriter(f, ["image", "age", "sex", "localization"])
        writer.writeheader()
        writer.writerows(
            {"image": images[i], **{name: raw[name][i] for name in ("age", "sex", "localization")}}
            for i in range(count)
        )
    predictions = list(csv.DictReader(open(predict_run(run.run_dir, str(manifest)))))
    labels = task.preprocessor.target.labels
    written = [[float(row[f"probability_{label}"]) for label in labels] for row in predictions]
    np.testing.assert_allclose(written, expected, atol=1e-5)

    # The SavedModel takes the image bytes and the record values as text.
    root = tmp_path / "saved_models"
    assert task.documented_inputs()["serving_default"] == ["image", "age", "sex", "localization"]
    served = export_and_serve_raw(run.run_dir, root, "ham", raw)["probabilities"]
    np.testing.assert_allclose(served.numpy(), expected, atol=1e-5)

    # Over REST: the same answers; text in the age column is a 400 naming
    # it, and the server goes on answering.
    with open(tmp_path / "server.log", "w") as log:
        server = start_server(root, log)
        try:
            status, answer = server.post(
                "/v1/models/ham:predict", json.dumps({"instances": instances(raw, range(count))})
            )
            bad = instances(raw, range(1))
            bad[0]["age"] = "forty"
            url = "/v1/models/ham:predict"
            bad_status, bad_answer = server.post(url, json.dumps({"instances": bad}))
            bad[0]["age"] = 63  # TF Serving's JSON: a string input takes a JSON string
            number_status, number_answer = server.post(url, json.dumps({"instances": bad}))
            again, _ = server.post(url, json.dumps({"instances": instances(raw, [3])}))
        finally:
            stop_server(server)
    assert status == 200, answer
    np.testing.assert_allclose([p["probabilities"] for p in answer["predictions"]], expected, atol=1e-5)
    assert bad_status == 400 and "record column `age` takes numbers" in bad_answer["error"], bad_answer
    assert "forty" in bad_answer["error"] and again == 200
    assert number_status == 400 and 'number too: "63"' in number_answer["error"], number_answer
    batch, _ = next(iter(make_dataset(ham_spec, "test", preprocessor=task.preprocessor, batch_size=4)))
    assert batch["record"].shape == (4, task.preprocessor.features["record"].output_size)

"""`mmkeras serve` as a real process on 127.0.0.1, queried with the official
TF Serving gRPC stub, plain HTTP and `mmkeras.serving.Client`."""

import json
import re
import struct
import subprocess
import sys
import threading
import time
import zlib

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from mmkeras.data.splits import open_split
from mmkeras.datasets import build_flickr8k
from mmkeras.export import export_run
from mmkeras.export.server_config import BatchingParameters
from mmkeras.run_folder import load_run
from mmkeras.serving import Client, ServingError, ServingLimits
from mmkeras.serving.batching import Batcher
from mmkeras.serving.limits import image_size
from mmkeras.serving.registry import ModelRegistry, ModelSource
from mmkeras.training import train
from tests.serving_helpers import MAX_REQUEST_BYTES, b64, instances, start_server, stop_server

ROWS = 8


@pytest.fixture(scope="module")
def served(gated_export):
    _, root = gated_export
    with open(root / "server.log", "w") as log:
        server = start_server(root, log)
        yield server
        stop_server(server)


@pytest.fixture(scope="module")
def rows(gated_run):
    """Real validation rows (raw) and the trained model's answers for them."""
    run = load_run(gated_run)
    spec, preprocessor, model = run.spec, run.task.preprocessor, run.task
    source = open_split(spec, "validation")
    raw = {f.name: [source.fetch(i, f) for i in range(ROWS)] for f in spec.data.features}
    raw["image"][1] = b""  # a row without its picture, as modality dropout allows
    expected = model.predict(preprocessor({k: tf.constant(v) for k, v in raw.items()}), verbose=0)
    labels = [preprocessor.target.labels[i] for i in expected.argmax(axis=1)]
    return raw, expected, labels


def test_official_grpc_stub_gets_the_trained_models_predictions(served, rows):
    raw, expected, labels = rows
    channel = grpc.insecure_channel(served.grpc)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "quick"
    request.model_spec.signature_name = "serving_default"
    for name, values in raw.items():
        request.inputs[name].CopyFrom(
            tf.make_tensor_proto([tf.compat.as_bytes(v) for v in values], dtype=tf.string)
        )
    response = stub.Predict(request, timeout=60)
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["probabilities"]), expected, atol=1e-5)
    assert [v.decode() for v in tf.make_ndarray(response.outputs["label"])] == labels
    assert response.model_spec.version.value == 1

    metadata = stub.GetModelMetadata(
        get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec={"name": "quick"}, metadata_field=["signature_def"]
        ),
        timeout=60,
    )
    signatures = get_model_metadata_pb2.SignatureDefMap()
    metadata.metadata["signature_def"].Unpack(signatures)
    assert set(signatures.signature_def) == {"serving_default", "preprocessed", "embed"}
    assert set(signatures.signature_def["serving_default"].inputs) == {"caption", "image", "audio"}

    status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
        get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "quick"}), timeout=60
    )
    assert [(s.version, s.state) for s in status.model_version_status] == [
        (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE)
    ]
    channel.close()


def test_rest_row_and_columnar_formats(served, rows):
    raw, expected, labels = rows
    status, answer = served.post(
        "/v1/models/quick:predict", json.dumps({"instances": instances(raw, range(ROWS))})
    )
    assert status == 200, answer
    np.testing.assert_allclose([p["probabilities"] for p in answer["predictions"]], expected, atol=1e-5)
    assert [p["label"] for p in answer["predictions"]] == labels

    columns = {name: [b64(v) for v in values] for name, values in raw.items()}
    for path in ("/v1/models/quick/versions/1:predict", "/v1/models/quick/labels/stable:predict"):
        status, answer = served.post(path, json.dumps({"inputs": columns}))
        assert status == 200, answer
        np.testing.assert_allclose(answer["outputs"]["probabilities"], expected, atol=1e-5)
        assert answer["outputs"]["label"] == labels

    status, answer = served.post(
        "/v1/models/quick:predict", json.dumps({"signature_name": "embed", "instances": instances(raw, [0])})
    )
    assert status == 200 and len(answer["predictions"][0]) == 16  # one output: bare values per row

    assert served.get("/v1/models/quick") == (
        200,
        {
            "model_version_status": [
                {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
            ]
        },
    )
    status, metadata = served.get("/v1/models/quick/metadata")
    assert metadata["model_spec"] == {"name": "quick", "signature_name": "", "version": "1"}
    inputs = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]
    assert {name: spec["dtype"] for name, spec in inputs.items()} == dict.fromkeys(
        ["caption", "image", "audio"], "DT_STRING"
    )


def _png_header(width, height):
    """A PNG that claims width x height pixels: a few hundred bytes, gigabytes once decoded."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + header
    return (
        b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(header)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    )


def _bad_requests(raw):
    good = instances(raw, [0])[0]

    def row(**changes):
        return json.dumps({"instances": [{**good, **changes}]})

    return [
        ("malformed JSON", "/v1/models/quick:predict", '{"instances": [', 400, "malformed JSON"),
        (
            "both formats",
            "/v1/models/quick:predict",
            json.dumps({"instances": [good], "inputs": {}}),
            400,
            "both",
        ),
        ("neither format", "/v1/models/quick:predict", json.dumps({"rows": [good]}), 400, "neither"),
        ("unknown model", "/v1/models/nope:predict", row(), 404, "model `nope`"),
        ("unknown version", "/v1/models/quick/versions/9:predict", row(), 404, "version 9"),
        ("unknown label", "/v1/models/quick/labels/beta:predict", row(), 404, "labelled `beta`"),
        ("unknown input", "/v1/models/quick:predict", row(photo=""), 400, "unknown input(s) ['photo']"),
        ("wrong dtype", "/v1/models/quick:predict", row(caption=3.5), 400, "input `caption` takes strings"),
        (
            "rows of different shapes",
            "/v1/models/quick:predict",
            json.dumps({"instances": [good, {**good, "caption": ["two", "words"]}]}),
            400,
            "different shapes",
        ),
        (
            "invalid base64",
            "/v1/models/quick:predict",
            row(image={"b64": "not base64!"}),
            400,
            "invalid base64",
        ),
        (
            "non-image bytes",
            "/v1/models/quick:predict",
            row(image=b64(b"<html>not a picture</html>")),
            400,
            "Unknown image file format",
        ),
        (
            "decompression bomb",
            "/v1/models/quick:predict",
            row(image=b64(_png_header(60000, 60000))),
            400,
            "60000 x 60000",
        ),
        ("empty batch", "/v1/models/quick:predict", json.dumps({"instances": []}), 400, "empty"),
        (
            "unknown signature",
            "/v1/models/quick:predict",
            json.dumps({"signature_name": "x", "instances": [good]}),
            400,
            "signature name `x`",
        ),
    ]


def test_bad_requests_get_a_clear_4xx_and_the_server_goes_on(served, rows):
    raw, expected, _ = rows
    good = json.dumps({"instances": instances(raw, [0])})
    for what, path, body, status, fragment in _bad_requests(raw):
        answer_status, answer = served.post(path, body)
        assert answer_status == status, (what, answer)
        assert fragment in answer["error"], (what, answer)
        status_after, after = served.post("/v1/models/quick:predict", good)
        assert status_after == 200, (what, after)
        np.testing.assert_allclose(after["predictions"][0]["probabilities"], expected[0], atol=1e-5)

    # An oversized body is refused from its Content-Length, without being held in memory.
    status, answer = served.post("/v1/models/quick:predict", b"x" * (MAX_REQUEST_BYTES + 1))
    assert status == 413 and "--max-request-bytes" in answer["error"]

    # gRPC: a float tensor where text is expected, and an unknown model.
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(served.grpc))
    request = predict_pb2.PredictRequest(model_spec={"name": "quick"})
    for name in raw:
        request.inputs[name].CopyFrom(tf.make_tensor_proto([1.0]))
    with pytest.raises(grpc.RpcError) as error:
        stub.Predict(request, timeout=60)
    assert (
        error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "expects strings" in error.value.details()
    )
    request.model_spec.name = "nope"
    with pytest.raises(grpc.RpcError) as error:
        stub.Predict(request, timeout=60)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND

    # Many rounds of bad requests leave the process alive and its memory flat:
    # after a warm-up (allocator pools, first error paths), ten more rounds
    # must not keep growing it.
    def rounds(count):
        for _ in range(count):
            for _, path, body, _, _ in _bad_requests(raw):
                served.post(path, body)
        return served.rss_bytes()

    rounds(5)
    middle = rounds(10)
    assert rounds(10) - middle < 16 * 1024 * 1024
    assert served.process.poll() is None


def test_a_port_in_use_is_a_clear_error(served):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mmkeras.cli",
            "serve",
            str(served.root / "quick"),
            "--rest-port",
            served.rest.split(":")[1],
            "--grpc-port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "Pick another --rest-port" in result.stderr


def test_client_over_rest_and_grpc(served, rows):
    raw, expected, labels = rows
    row_dicts = [{name: values[i] for name, values in raw.items()} for i in range(ROWS)]
    for address in (f"http://{served.rest}", f"grpc://{served.grpc}"):
        with Client(address, model="quick") as client:
            answers = client.predict(row_dicts)
            assert [a["label"] for a in answers] == labels
            np.testing.assert_allclose([a["probabilities"] for a in answers], expected, atol=1e-5)
            assert client.predict(row_dicts[:2], signature_name="embed")[0]["embedding"].shape == (16,)
            assert client.status()[0]["state"] == "AVAILABLE"
            with pytest.raises(ServingError, match="Unknown image file format"):
                client.predict([{**row_dicts[0], "image": b"GIF? no"}])


def test_concurrent_requests_each_get_their_own_answer(served, rows):
    raw, expected, labels = rows
    results, errors = {}, []

    def ask(i):
        try:
            with Client(f"http://{served.rest}", model="quick") as client:
                for _ in range(3):
                    results[i] = client.predict([{name: values[i] for name, values in raw.items()}])[0]
        except Exception as error:  # collected for the assertion below
            errors.append(error)

    threads = [threading.Thread(target=ask, args=(i % ROWS,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for i, answer in results.items():
        assert answer["label"] == labels[i]
        np.testing.assert_allclose(answer["probabilities"], expected[i], atol=1e-5)


def test_a_new_version_takes_over_without_a_failed_request(served, gated_run, rows):
    raw, expected, _ = rows
    request = predict_pb2.PredictRequest(model_spec={"name": "quick"})
    for name, values in raw.items():
        request.inputs[name].CopyFrom(
            tf.make_tensor_proto([tf.compat.as_bytes(v) for v in values[:2]], dtype=tf.string)
        )
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(served.grpc))
    seen, failures, stop = [], [], threading.Event()

    def loop():
        while not stop.is_set():
            try:
                seen.append(stub.Predict(request, timeout=60).model_spec.version.value)
            except grpc.RpcError as error:
                failures.append(error)

    client = threading.Thread(target=loop)
    client.start()
    try:
        export_run(gated_run, str(served.root / "quick"))  # version 2, labelled canary
        deadline = time.time() + 120
        while 2 not in seen and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(1)
    finally:
        stop.set()
        client.join()
    assert not failures
    assert seen[0] == 1 and seen[-1] == 2
    assert seen.index(2) > 0 and 1 not in seen[seen.index(2) :]  # switched once, never back
    # The config keeps stable on version 1 beside the canary.
    with Client(f"http://{served.rest}", model="quick") as client:
        versions = {s["version"] for s in client.status()}
        assert versions == {"1", "2"}
        assert client.predict([{n: v[0] for n, v in raw.items()}], label="stable")[0]["label"]


def test_batcher_batches_concurrent_requests_and_isolates_a_bad_one():
    calls = []

    def run(inputs):
        values = inputs["x"]
        calls.append(len(values))
        if (values < 0).any():
            raise ServingError("negative input")
        time.sleep(0.05)  # long enough for the other requests to queue up
        return {"y": values * 2}

    batcher = Batcher(run, BatchingParameters(max_batch_size=8, num_batch_threads=1))
    answers, errors = {}, {}

    def submit(i):
        try:
            answers[i] = batcher.submit({"x": np.array([i], dtype=np.float32)}, 1)["y"]
        except ServingError as error:
            errors[i] = error

    threads = [threading.Thread(target=submit, args=(i,)) for i in [*range(1, 12), -1]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    batcher.stop()
    assert {i: float(a[0]) for i, a in answers.items()} == {i: 2.0 * i for i in range(1, 12)}
    assert list(errors) == [-1]
    assert max(calls) > 1 and max(calls) <= 8  # batched, and never above the limit


def test_image_sizes_are_read_from_headers():
    picture = tf.zeros([30, 50, 3], tf.uint8)
    assert image_size(tf.io.encode_png(picture).numpy()) == (50, 30)
    assert image_size(tf.io.encode_jpeg(picture).numpy()) == (50, 30)
    assert image_size(b"GIF89a" + struct.pack("<HH", 640, 480) + b"\x00" * 8) == (640, 480)
    assert image_size(b"BM" + b"\x00" * 12 + struct.pack("<Iii", 40, 320, -200) + b"\x00" * 8) == (320, 200)
    assert image_size(_png_header(60000, 60000)) == (60000, 60000)
    assert image_size(b"plain text") is None
    assert image_size(b"BMX bike tricks in the park at dusk") is None  # text, not a bitmap
    assert ServingLimits().max_image_pixels < 60000 * 60000


def test_a_version_unloaded_by_the_policy_loads_again_when_wanted_back(tmp_path):
    class Doubler(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def serve(self, x):
            return {"y": x * 2}

    for version in (1, 2):
        module = Doubler()
        tf.saved_model.save(
            module, str(tmp_path / "m" / str(version)), signatures={"serving_default": module.serve}
        )
    source = ModelSource("m", str(tmp_path / "m"), latest=1)
    registry = ModelRegistry(lambda: [source], ServingLimits())
    registry.refresh()
    assert registry.servable("m").version == 2
    source.specific = [1]  # e.g. `stable` moved back to version 1
    registry.refresh()
    assert registry.servable("m").version == 1
    source.specific = []
    registry.refresh()
    assert registry.servable("m").version == 2
    states = {s.version: s.state for s in registry.status("m").model_version_status}
    assert states == {
        1: get_model_status_pb2.ModelVersionStatus.END,
        2: get_model_status_pb2.ModelVersionStatus.AVAILABLE,
    }


def test_chinese_captions_search_pictures_and_are_served_over_rest(data_root, tmp_path):
    # Chinese puts no spaces between words: the default split makes each
    # character a token, in training and in the exported graph alike.
    spec = build_flickr8k(
        str(tmp_path / "data"), data_root_dir=data_root, image_size=32, language="zh", fraction=0.1
    )
    spec.model.encoders = {"caption": {"units": 16, "embedding_dim": 16}, "image": {"filters": [8, 16]}}
    spec.model.projection_dim = 16
    spec.train.epochs = 1
    spec.train.tensorboard_examples = 0
    run = train(spec, str(tmp_path / "run"), verbose=0)
    text = run.task.preprocessor.features["caption"]
    han = [token for token in text.vocabulary if re.search("[\u4e00-\u9fff]", token)]
    assert len(han) > 100 and all(len(token) == 1 for token in han), han[:20]

    root = tmp_path / "saved_models"
    export_run(run.run_dir, str(root / "zh"))
    captions = ["一群人在看金鱼。", "两只狗在草地上奔跑", "a dog 在 snow 里"]
    expected = run.task.encode_text(text(tf.constant(captions)).numpy())
    with open(tmp_path / "server.log", "w") as log:
        server = start_server(root, log)
        try:
            body = {"signature_name": "encode_text", "instances": [{"caption": c} for c in captions]}
            status, answer = server.post(
                "/v1/models/zh:predict", json.dumps(body, ensure_ascii=False).encode()
            )
        finally:
            stop_server(server)
    assert status == 200, answer
    np.testing.assert_allclose(answer["predictions"], expected, atol=1e-5)

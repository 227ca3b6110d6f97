"""`Client`: predictions from TF Serving (or `mmkeras serve`) over REST or gRPC.

    client = Client("http://127.0.0.1:8501", model="quickstart")
    client.predict([{"caption": "a red circle", "image": open("a.png", "rb").read(), "audio": b""}])
    # [{"label": "circle-low", "probabilities": array([...]), "class_index": 3}]

Text is a Python str, images and audio are the file's bytes (b"" for a
missing modality). Rows come back as dicts of output name to value: a str
for labels, a NumPy array for vectors, a Python number for scalars.
"""

import base64
import http.client
import json
import urllib.parse

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from mmkeras.serving.errors import ServingError
from mmkeras.serving.json_codec import proto_json

DEFAULT_SIGNATURE = "serving_default"


def _value(value):
    """One row's output as the Client returns it: str, NumPy array or number."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, list):
        return np.asarray(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


class Client:
    """A TF Serving client for one model.

    Args:
        address: str. `http://HOST:PORT` for REST or `grpc://HOST:PORT`.
        model: str. The model's name.
        timeout: float. Seconds to wait for an answer.
    """

    def __init__(self, address, model, timeout=30.0):
        parsed = urllib.parse.urlparse(address)
        if parsed.scheme not in ("http", "grpc"):
            raise ValueError(f"address must start with http:// (REST) or grpc:// (gRPC), got {address!r}.")
        self.protocol = "rest" if parsed.scheme == "http" else "grpc"
        self.model = model
        self.timeout = timeout
        if self.protocol == "rest":
            self._connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=timeout)
        else:
            self._channel = grpc.insecure_channel(parsed.netloc)
            self._prediction = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
            self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)

    def _path(self, version, label):
        path = f"/v1/models/{self.model}"
        if version is not None:
            path += f"/versions/{version}"
        elif label:
            path += f"/labels/{label}"
        return path

    def _rest(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode("utf-8")
        self._connection.request(method, path, body=data, headers={"Content-Type": "application/json"})
        response = self._connection.getresponse()
        answer = json.loads(response.read() or b"{}")
        if response.status != 200:
            raise ServingError(f"HTTP {response.status}: {answer.get('error', answer)}")
        return answer

    def _grpc(self, method, request):
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as error:
            raise ServingError(f"{error.code().name}: {error.details()}", error.code()) from None

    def _model_spec(self, spec, version, label, signature_name=""):
        spec.name = self.model
        spec.signature_name = signature_name
        if version is not None:
            spec.version.value = version
        elif label:
            spec.version_label = label

    def predict(self, rows, signature_name=DEFAULT_SIGNATURE, version=None, label=None):
        """Predictions for a list of rows (dicts of input name to str or bytes).

        Args:
            rows: list. One dict per row: text as str, file contents as bytes.
            signature_name: str.
            version: int. Pin a version (default: the latest the server has).
            label: str. Or pick one by label, e.g. "stable".
        """
        if self.protocol == "rest":
            return self._predict_rest(rows, signature_name, version, label)
        return self._predict_grpc(rows, signature_name, version, label)

    def _predict_rest(self, rows, signature_name, version, label):
        instances = [
            {
                name: {"b64": base64.b64encode(v).decode()} if isinstance(v, bytes) else v
                for name, v in row.items()
            }
            for row in rows
        ]
        # The columnar answer names every output, even when there is only one.
        columns = {name: [row[name] for row in instances] for name in instances[0]}
        answer = self._rest(
            "POST",
            self._path(version, label) + ":predict",
            {"signature_name": signature_name, "inputs": columns},
        )["outputs"]
        if not isinstance(answer, dict):
            answer = {self._only_output(signature_name, version, label): answer}
        return [{name: _value(values[i]) for name, values in answer.items()} for i in range(len(rows))]

    def _only_output(self, signature_name, version, label):
        signature = self.metadata(version, label)["signature_def"]["signature_def"][signature_name]
        return next(iter(signature["outputs"]))

    def _predict_grpc(self, rows, signature_name, version, label):
        request = predict_pb2.PredictRequest()
        self._model_spec(request.model_spec, version, label, signature_name)
        for name in rows[0]:
            values = [v.encode("utf-8") if isinstance(v, str) else v for v in (row[name] for row in rows)]
            request.inputs[name].CopyFrom(tf.make_tensor_proto(values, dtype=tf.string))
        response = self._grpc(self._prediction.Predict, request)
        outputs = {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}
        return [{name: _value(values[i]) for name, values in outputs.items()} for i in range(len(rows))]

    def status(self, version=None, label=None):
        """[{"version": "1", "state": "AVAILABLE", ...}] as TF Serving reports it."""
        if self.protocol == "rest":
            return self._rest("GET", self._path(version, label))["model_version_status"]
        request = get_model_status_pb2.GetModelStatusRequest()
        self._model_spec(request.model_spec, version, label)
        response = self._grpc(self._models.GetModelStatus, request)
        return proto_json(response)["model_version_status"]

    def metadata(self, version=None, label=None):
        """The model's signatures: {"signature_def": {"signature_def": {...}}}."""
        if self.protocol == "rest":
            return self._rest("GET", self._path(version, label) + "/metadata")["metadata"]
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        self._model_spec(request.model_spec, version, label)
        response = self._grpc(self._prediction.GetModelMetadata, request)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signatures)
        return {"signature_def": proto_json(signatures)}

    def close(self):
        if self.protocol == "rest":
            self._connection.close()
        else:
            self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

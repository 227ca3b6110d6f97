"""TF Serving's gRPC API from the `tensorflow-serving-api` protos.

`PredictionService.Predict` and `GetModelMetadata`, and
`ModelService.GetModelStatus`, so `prediction_service_pb2_grpc.PredictionServiceStub`
works unchanged. Classify, Regress and MultiInference answer UNIMPLEMENTED
(the protos' default), as TF Serving does for models without such signatures.
"""

import concurrent.futures
import logging

import grpc
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from mmkeras.serving.errors import ServingError

log = logging.getLogger("mmkeras.serving")


def _model_spec(spec):
    """(name, version or None, label or None) of a request's ModelSpec."""
    choice = spec.WhichOneof("version_choice")
    return spec.name, spec.version.value if choice == "version" else None, spec.version_label or None


def _answering(method):
    """Turns ServingErrors (and bugs) into gRPC status codes; the server goes on."""

    def wrapped(self, request, context):
        try:
            return method(self, request, context)
        except ServingError as error:
            context.abort(error.code, error.message)
        except Exception as error:
            log.exception("internal error in %s", method.__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"internal server error: {error}")

    return wrapped


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, registry):
        self.registry = registry

    @_answering
    def Predict(self, request, context):
        servable = self.registry.servable(*_model_spec(request.model_spec))
        signature = servable.signature(request.model_spec.signature_name)
        try:
            inputs = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
        except (TypeError, ValueError) as error:
            raise ServingError(f"an input TensorProto could not be read: {error}") from None
        outputs = signature(inputs)
        wanted = set(request.output_filter) or set(outputs)
        unknown = wanted - set(outputs)
        if unknown:
            raise ServingError(
                f"output_filter names unknown output(s) {sorted(unknown)}; outputs: {sorted(outputs)}."
            )
        response = predict_pb2.PredictResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = signature.name
        for name in sorted(wanted):
            response.outputs[name].CopyFrom(tf.make_tensor_proto(outputs[name]))
        return response

    @_answering
    def GetModelMetadata(self, request, context):
        if list(request.metadata_field) != ["signature_def"]:
            raise ServingError(
                f"metadata_field must be ['signature_def'], got {list(request.metadata_field)}."
            )
        servable = self.registry.servable(*_model_spec(request.model_spec))
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.metadata["signature_def"].Pack(servable.signature_defs)
        return response


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, registry):
        self.registry = registry

    @_answering
    def GetModelStatus(self, request, context):
        return self.registry.status(*_model_spec(request.model_spec))


def make_grpc_server(registry, limits, host, port, threads=16):
    """A started-on-demand grpc.Server; returns (server, bound port)."""
    server = grpc.server(
        concurrent.futures.ThreadPoolExecutor(max_workers=threads),
        options=[
            ("grpc.max_receive_message_length", limits.max_request_bytes),
            ("grpc.max_send_message_length", limits.max_request_bytes),
            ("grpc.so_reuseport", 0),  # a second server on the same port must fail, not share it
        ],
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(registry), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(registry), server)
    port = server.add_insecure_port(f"{host}:{port}")
    return server, port

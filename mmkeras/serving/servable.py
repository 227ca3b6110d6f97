"""One loaded version of a model: its signatures, input checks and warmup."""

import os
import re

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import get_model_metadata_pb2

from mmkeras.export.warmup import read_warmup_requests
from mmkeras.serving.batching import Batcher
from mmkeras.serving.errors import ServingError
from mmkeras.serving.limits import check_image_sizes

try:
    import tensorflow_text  # noqa: F401  (registers the ops of models with KerasHub tokenizers)
except ImportError:
    pass

DEFAULT_SIGNATURE = "serving_default"


_TF_NOISE = ("Graph execution error", "Detected at node", "<stack traces unavailable>", "[[")


def _reason(error):
    """The line of a TF runtime error that says what was wrong, without graph noise."""
    lines = [line.strip() for line in error.message.splitlines()]
    reason = " ".join(line for line in lines if line and not line.startswith(_TF_NOISE))
    return re.sub(r"\s*\[Op:[^\]]*\]$", "", reason)


def _describe(spec):
    dims = ", ".join("?" if d is None else str(d) for d in spec.shape.as_list())
    return f"{spec.dtype.name} [{dims}]"


class Signature:
    """A signature of a loaded SavedModel that checks its inputs before running.

    Args:
        name: str. The signature's name.
        function: the loaded concrete function.
        limits: ServingLimits.
        batching: BatchingParameters, or None to run each request alone.
    """

    def __init__(self, name, function, limits, batching=None):
        self.name = name
        self.function = function
        self.inputs = function.structured_input_signature[1]
        self.limits = limits
        batchable = all(
            spec.shape.rank and spec.shape[1:].is_fully_defined() for spec in self.inputs.values()
        )
        self.batcher = Batcher(self.run, batching) if batching and batchable else None

    def run(self, inputs):
        """Calls the function on checked NumPy inputs; TF errors become 400s."""
        try:
            outputs = self.function(
                **{name: tf.constant(value, self.inputs[name].dtype) for name, value in inputs.items()}
            )
        except (tf.errors.InvalidArgumentError, tf.errors.OutOfRangeError) as error:
            raise ServingError(
                f"signature `{self.name}` could not run on this request: {_reason(error)}"
            ) from None
        return {name: value.numpy() for name, value in outputs.items()}

    def check(self, inputs):
        """Names, dtypes and shapes against the signature; returns the batch size."""
        unknown = sorted(set(inputs) - set(self.inputs))
        if unknown:
            raise ServingError(
                f"unknown input(s) {unknown} for signature `{self.name}`; it takes {sorted(self.inputs)}."
            )
        missing = sorted(set(self.inputs) - set(inputs))
        if missing:
            raise ServingError(
                f"missing input(s) {missing} for signature `{self.name}`; it takes {sorted(self.inputs)}."
            )
        sizes = set()
        for name, value in inputs.items():
            spec = self.inputs[name]
            if spec.dtype == tf.string:
                if value.dtype != object:
                    raise ServingError(
                        f"input `{name}` expects strings ({_describe(spec)}), got {value.dtype}."
                    )
                check_image_sizes(name, value.reshape(-1), self.limits)
            elif (
                not np.can_cast(value.dtype, spec.dtype.as_numpy_dtype, casting="same_kind")
                or value.dtype == object
            ):
                raise ServingError(f"input `{name}` expects {_describe(spec)}, got {value.dtype}.")
            if not spec.shape.is_compatible_with(value.shape):
                raise ServingError(
                    f"input `{name}` expects shape {_describe(spec)}, got {list(value.shape)}."
                )
            sizes.add(value.shape[0] if value.ndim else None)
        if 0 in sizes:
            raise ServingError(f"the request has no rows (an empty batch) for signature `{self.name}`.")
        if self.batcher and len(sizes) > 1:
            raise ServingError(f"every input needs the same number of rows; got {sorted(sizes)}.")
        return sizes.pop()

    def __call__(self, inputs):
        rows = self.check(inputs)
        if self.batcher is None:
            return self.run(inputs)
        return self.batcher.submit(inputs, rows)


class Servable:
    """A SavedModel version loaded for serving.

    Args:
        name: str. The model's name.
        version: int.
        path: str. The version folder.
        limits: ServingLimits.
        batching: BatchingParameters, or None.
    """

    def __init__(self, name, version, path, limits, batching=None):
        self.name = name
        self.version = version
        self.path = path
        self.loaded = tf.saved_model.load(path)
        self.signatures = {
            key: Signature(key, function, limits, batching)
            for key, function in self.loaded.signatures.items()
        }
        self.signature_defs = self._signature_defs(path)

    @staticmethod
    def _signature_defs(path):
        proto = saved_model_pb2.SavedModel()
        with open(os.path.join(path, "saved_model.pb"), "rb") as f:
            proto.ParseFromString(f.read())
        defs = get_model_metadata_pb2.SignatureDefMap()
        for key, signature_def in proto.meta_graphs[0].signature_def.items():
            if not key.startswith("__"):  # TF's own init signature is not for clients
                defs.signature_def[key].CopyFrom(signature_def)
        return defs

    def signature(self, name):
        key = name or DEFAULT_SIGNATURE
        if key not in self.signatures:
            raise ServingError(
                f"serving signature name `{key}` not found in model {self.name} version {self.version}; "
                f"it has {sorted(self.signatures)}.",
                grpc.StatusCode.INVALID_ARGUMENT,
            )
        return self.signatures[key]

    def warm_up(self):
        """Replays the version's `tf_serving_warmup_requests`; returns how many ran."""
        requests = read_warmup_requests(self.path)
        for request in requests:
            inputs = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
            self.signature(request.model_spec.signature_name).run(inputs)
        return len(requests)

    def retire(self):
        """Stops batching; requests already queued still get their answers."""
        for signature in self.signatures.values():
            if signature.batcher:
                signature.batcher.stop()

"""TF Serving's configuration files, written beside the models' folders.

`models.config` is a text `ModelServerConfig` (`--model_config_file`): one
entry per model folder, a `specific` version policy listing the labelled
versions, and version labels (`stable`, `canary`). Its base paths are where
the `tensorflow/serving` image sees them (`/models/NAME` when the folder
holding the models is mounted at `/models`); `mmkeras serve` maps them back
to the config file's own folder.

`batching_parameters.txt` is a text `BatchingParameters`
(`--batching_parameters_file`). Its proto is not in the
`tensorflow-serving-api` package, so it is written and read here as the
flat `name { value: N }` text format TF Serving parses.
"""

import dataclasses
import os
import re

import grpc
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from mmkeras.errors import ServingError

MODELS_CONFIG = "models.config"
BATCHING_PARAMETERS = "batching_parameters.txt"
CONTAINER_ROOT = "/models"


@dataclasses.dataclass
class BatchingParameters:
    """Dynamic batching with no timeout, as TF Serving's batching guide starts
    a CPU server: a lone request runs at once, and requests that arrive while
    a batch runs form the next batch.

    One batch thread, because TensorFlow's intra-op pool already spreads a
    batch over every core: on 2 cores a second thread made batches smaller
    (10 rows against 16 with 32 clients) for the same throughput.
    """

    max_batch_size: int = 32
    batch_timeout_micros: int = 0
    num_batch_threads: int = 1
    max_enqueued_batches: int = 100

    def to_text(self):
        return "".join(
            f"{field.name} {{ value: {getattr(self, field.name)} }}\n" for field in dataclasses.fields(self)
        )

    @classmethod
    def from_text(cls, text, source="batching parameters"):
        names = {field.name for field in dataclasses.fields(cls)}
        values = {}
        for name, value in re.findall(r"(\w+)\s*\{\s*value\s*:\s*(\d+)\s*\}", text):
            if name not in names:
                raise ServingError(
                    f"{source}: unknown batching parameter `{name}`; known: {sorted(names)}.",
                    grpc.StatusCode.FAILED_PRECONDITION,
                )
            values[name] = int(value)
        return cls(**values)


def read_batching_parameters(path):
    with open(path, encoding="utf-8") as f:
        return BatchingParameters.from_text(f.read(), source=path)


def read_models_config(path):
    """The `ModelServerConfig` in a text file, with a message naming the file on a syntax error."""
    config = model_server_config_pb2.ModelServerConfig()
    with open(path, encoding="utf-8") as f:
        try:
            text_format.Parse(f.read(), config)
        except text_format.ParseError as error:
            raise ServingError(
                f"{path}: not a ModelServerConfig text proto: {error}", grpc.StatusCode.FAILED_PRECONDITION
            ) from error
    return config


def _model_entry(config, name):
    for entry in config.model_config_list.config:
        if entry.name == name:
            return entry
    entry = config.model_config_list.config.add()
    entry.name = name
    entry.base_path = f"{CONTAINER_ROOT}/{name}"
    entry.model_platform = "tensorflow"
    return entry


def record_version(base_dir, version, label):
    """Adds `version` under `label` to the models.config beside `base_dir`.

    The policy serves every labelled version, so `stable` keeps answering
    while a `canary` is tried; a label moved to a new version stops pinning
    the old one. Other models' entries are left as they are.
    """
    root = os.path.dirname(os.path.abspath(base_dir))
    path = os.path.join(root, MODELS_CONFIG)
    config = read_models_config(path) if os.path.exists(path) else model_server_config_pb2.ModelServerConfig()
    entry = _model_entry(config, os.path.basename(os.path.abspath(base_dir)))
    entry.version_labels[label] = version
    entry.model_version_policy.specific.ClearField("versions")
    entry.model_version_policy.specific.versions.extend(sorted(set(entry.version_labels.values())))
    _write_atomically(path, text_format.MessageToString(config))
    batching = os.path.join(root, BATCHING_PARAMETERS)
    if not os.path.exists(batching):
        _write_atomically(batching, BatchingParameters().to_text())
    return path


def default_label(base_dir):
    """`stable` for a model's first version, `canary` for the ones after."""
    path = os.path.join(os.path.dirname(os.path.abspath(base_dir)), MODELS_CONFIG)
    if not os.path.exists(path):
        return "stable"
    name = os.path.basename(os.path.abspath(base_dir))
    entries = [e for e in read_models_config(path).model_config_list.config if e.name == name]
    return "canary" if entries and "stable" in entries[0].version_labels else "stable"


def _write_atomically(path, text):
    staged = f"{path}.tmp-{os.getpid()}"
    with open(staged, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(staged, path)

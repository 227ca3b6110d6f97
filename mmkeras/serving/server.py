"""`mmkeras serve`: a local model server that speaks TF Serving's REST and gRPC APIs."""

import logging
import os
import threading

from mmkeras.export.server_config import BATCHING_PARAMETERS, BatchingParameters, read_batching_parameters
from mmkeras.serving.grpc_service import make_grpc_server
from mmkeras.serving.limits import ServingLimits
from mmkeras.serving.registry import ModelRegistry, sources_for
from mmkeras.serving.rest import make_rest_server

log = logging.getLogger("mmkeras.serving")


def batching_beside(path):
    """The batching_parameters.txt `mmkeras export` wrote next to PATH, if any."""
    folder = os.path.dirname(os.path.abspath(path))
    candidate = os.path.join(folder, BATCHING_PARAMETERS)
    return candidate if os.path.exists(candidate) else None


class ModelServer:
    """Serves the models at `path` (a model folder or a models.config).

    Args:
        path: str. `saved_models/NAME` (its newest version) or a
            models.config (every model, version policy and labels in it).
        host: str. Interface to bind; 127.0.0.1 keeps it off the network.
        rest_port, grpc_port: int. 0 picks free ports; None turns one off.
        batching: BatchingParameters, or None for no dynamic batching.
        limits: ServingLimits.
        poll_seconds: float. How often the disk is checked for new versions.
        model_name: str. Name for a model folder (default: its basename).
    """

    def __init__(
        self,
        path,
        host="127.0.0.1",
        rest_port=8501,
        grpc_port=8500,
        batching=None,
        limits=None,
        poll_seconds=1.0,
        model_name=None,
    ):
        self.limits = limits or ServingLimits()
        self.registry = ModelRegistry(
            lambda: sources_for(path, model_name), self.limits, batching, poll_seconds
        )
        self.host = host
        self._rest_port = rest_port
        self._grpc_port = grpc_port
        self.rest_server = self.grpc_server = None
        self.rest_port = self.grpc_port = None

    def start(self):
        """Binds the ports (a port in use fails at once), loads the models,
        then serves; returns self. Raises OSError naming the port that
        cannot be bound.
        """
        if self._grpc_port is not None:
            try:
                self.grpc_server, self.grpc_port = make_grpc_server(
                    self.registry, self.limits, self.host, self._grpc_port
                )
            except RuntimeError as error:  # grpc's way of saying the bind failed
                raise OSError(
                    f"cannot listen for gRPC on {self.host}:{self._grpc_port} ({error}); "
                    "is another server using it? Pick another --grpc-port."
                ) from None
        if self._rest_port is not None:
            try:
                self.rest_server = make_rest_server(self.registry, self.limits, self.host, self._rest_port)
            except OSError as error:
                raise OSError(
                    f"cannot listen for REST on {self.host}:{self._rest_port} ({error.strerror}); "
                    "is another server using it? Pick another --rest-port."
                ) from None
            self.rest_port = self.rest_server.server_address[1]
        self.registry.start()
        if self.grpc_server:
            self.grpc_server.start()
        if self.rest_server:
            threading.Thread(target=self.rest_server.serve_forever, daemon=True, name="rest").start()
        return self

    def stop(self):
        if self.rest_server:
            self.rest_server.shutdown()
            self.rest_server.server_close()
        if self.grpc_server:
            self.grpc_server.stop(grace=5).wait()
        self.registry.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def load_batching(path, batching_file, enabled):
    """The batching parameters `mmkeras serve` uses, and where they came from."""
    if not enabled:
        return None, "off"
    batching_file = batching_file or batching_beside(path)
    if batching_file:
        return read_batching_parameters(batching_file), batching_file
    return BatchingParameters(), "defaults"

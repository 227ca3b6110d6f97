"""A local model server that speaks TF Serving's REST and gRPC APIs, and a client."""

from mmkeras.serving.client import Client
from mmkeras.serving.errors import ServingError
from mmkeras.serving.limits import ServingLimits
from mmkeras.serving.server import ModelServer

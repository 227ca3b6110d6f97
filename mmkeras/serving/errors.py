"""Errors a request can meet, with the gRPC code and HTTP status TF Serving gives them."""

import grpc

from mmkeras.errors import ServingError

HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 413,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.INTERNAL: 500,
}


def http_status(error):
    """The HTTP status TF Serving's REST API answers `error` with."""
    return HTTP_STATUS.get(error.code, 500)


def not_found(message):
    return ServingError(message, grpc.StatusCode.NOT_FOUND)

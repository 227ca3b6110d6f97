"""TF Serving's REST API on a threaded HTTP server.

    GET  /v1/models/NAME[/versions/N | /labels/L]            status
    GET  /v1/models/NAME[/versions/N | /labels/L]/metadata   signatures
    POST /v1/models/NAME[/versions/N | /labels/L]:predict    predictions

Every failure is `{"error": "..."}` with a 4xx/5xx status; the body size is
checked against the limit from its Content-Length, and an oversized body is
read away in small chunks, never held.
"""

import http.server
import json
import logging
import re

import grpc

from mmkeras.serving.errors import ServingError, http_status, not_found
from mmkeras.serving.json_codec import parse_predict_request, predict_response, proto_json

log = logging.getLogger("mmkeras.serving")

_ROUTE = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
    r"(?P<verb>/metadata|:predict|:classify|:regress)?$"
)


def metadata_json(servable):
    return {
        "model_spec": {"name": servable.name, "signature_name": "", "version": str(servable.version)},
        "metadata": {"signature_def": proto_json(servable.signature_defs)},
    }


def _route(method, path):
    match = _ROUTE.match(path.split("?", 1)[0])
    if not match:
        raise not_found(f"no such endpoint: {method} {path}; see /v1/models/NAME[:predict|/metadata].")
    version = match["version"]
    if version is not None and not version.isdigit():
        raise ServingError(f"the version in the URL must be an integer, got `{version}`.")
    return match["name"], int(version) if version else None, match["label"], match["verb"]


class RestHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse one connection
    # Headers and body go out in two writes; with Nagle's algorithm the second
    # waits for the client's delayed ACK, 40 ms per request.
    disable_nagle_algorithm = True
    server_version = "mmkeras-serving"
    registry = None  # set by make_rest_server
    limits = None

    def log_message(self, format, *args):  # one line per request only at debug level
        log.debug("%s %s", self.address_string(), format % args)

    def _send(self, status, body):
        data = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method):
        try:
            # The body is read first, so an error answer leaves the connection in step.
            body = self._read_body() if method == "POST" else b""
            name, version, label, verb = _route(method, self.path)
            self._send(200, self._answer(method, name, version, label, verb, body))
        except ServingError as error:
            self._send(http_status(error), {"error": error.message})
        except Exception as error:  # a bug must cost one request, never the server
            log.exception("internal error on %s %s", method, self.path)
            self._send(500, {"error": f"internal server error: {error}"})

    def _answer(self, method, name, version, label, verb, body):
        if method == "GET" and verb is None:
            return proto_json(self.registry.status(name, version, label))
        if method == "GET" and verb == "/metadata":
            return metadata_json(self.registry.servable(name, version, label))
        if method == "POST" and verb == ":predict":
            servable = self.registry.servable(name, version, label)
            signature_name, inputs, row_format = parse_predict_request(
                body, lambda key: servable.signature(key).inputs
            )
            return predict_response(servable.signature(signature_name)(inputs), row_format)
        if method == "POST" and verb in (":classify", ":regress"):
            raise ServingError(
                f"{verb[1:]} needs a {verb[1:]} signature; models from mmkeras export answer :predict.",
                grpc.StatusCode.UNIMPLEMENTED,
            )
        raise ServingError(f"{method} is not supported on {self.path}.", grpc.StatusCode.UNIMPLEMENTED)

    def _read_body(self):
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True
            raise ServingError("the request needs a Content-Length header.")
        if int(length) > self.limits.max_request_bytes:
            self.close_connection = True
            self._discard(int(length))
            raise ServingError(
                f"the request body is {int(length):,} bytes, more than this server's limit of "
                f"{self.limits.max_request_bytes:,} (--max-request-bytes); send fewer rows per request.",
                grpc.StatusCode.RESOURCE_EXHAUSTED,
            )
        return self.rfile.read(int(length))

    def _discard(self, length, chunk=64 * 1024):
        """Reads an oversized body away without keeping it: a client still
        sending when the socket closes gets a broken pipe instead of the 413."""
        while length > 0 and (data := self.rfile.read(min(chunk, length))):
            length -= len(data)

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")


def make_rest_server(registry, limits, host, port):
    """A ThreadingHTTPServer bound to host:port (0 picks a free port)."""
    handler = type("BoundRestHandler", (RestHandler,), {"registry": registry, "limits": limits})
    server_class = type(
        "RestServer",
        (http.server.ThreadingHTTPServer,),
        {
            "daemon_threads": True,
            "request_queue_size": 128,  # the default backlog of 5 resets connections under load
        },
    )
    return server_class((host, port), handler)

"""A real `mmkeras serve` process on 127.0.0.1 for tests, the JSON TF
Serving's REST clients send it, and an exported run's raw-input signature."""

import base64
import http.client
import json
import re
import subprocess
import sys
import threading

import tensorflow as tf

from mmkeras.export import export_run

MAX_REQUEST_BYTES = 2_000_000


def export_and_serve_raw(run_dir, root, name, raw):
    """Exports a run as `root/name` and calls its `serving_default` on raw
    columns (input name to values); returns the signature's outputs."""
    exported = export_run(run_dir, str(root / name))
    serving = tf.saved_model.load(exported.path).signatures["serving_default"]
    return serving(**{key: tf.constant(values) for key, values in raw.items()})


class Served:
    def __init__(self, process, rest, grpc_target, root):
        self.process, self.rest, self.grpc, self.root = process, rest, grpc_target, root

    def post(self, path, body, headers=None):
        connection = http.client.HTTPConnection(*self.rest.split(":"), timeout=60)
        connection.request("POST", path, body=body, headers=headers or {})
        response = connection.getresponse()
        answer = (response.status, json.loads(response.read()))
        connection.close()
        return answer

    def get(self, path):
        connection = http.client.HTTPConnection(*self.rest.split(":"), timeout=60)
        connection.request("GET", path)
        response = connection.getresponse()
        answer = (response.status, json.loads(response.read()))
        connection.close()
        return answer

    def rss_bytes(self):
        with open(f"/proc/{self.process.pid}/status") as f:
            return int(re.search(r"VmRSS:\s+(\d+) kB", f.read())[1]) * 1024


def start_server(root, log):
    """`mmkeras serve root/models.config` on free ports, once it listens."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mmkeras.cli",
            "serve",
            str(root / "models.config"),
            "--rest-port",
            "0",
            "--grpc-port",
            "0",
            "--poll-seconds",
            "0.2",
            "--max-request-bytes",
            str(MAX_REQUEST_BYTES),
        ],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    ports = None
    for line in process.stdout:
        if match := re.match(r"serving rest=http://(\S+) grpc=(\S+)", line):
            ports = match.groups()
            break
    assert ports, open(log.name).read()[-3000:]
    threading.Thread(target=process.stdout.read, daemon=True).start()
    return Served(process, ports[0], ports[1], root)


def stop_server(served):
    served.process.terminate()
    served.process.wait(timeout=60)


def b64(value):
    """A REST input value: bytes as `{"b64": ...}`, text as it is."""
    return {"b64": base64.b64encode(value).decode()} if isinstance(value, bytes) else value


def instances(raw, indices):
    """The rows `indices` of raw columns (feature name to values) as REST instances."""
    return [{name: b64(values[i]) for name, values in raw.items()} for i in indices]

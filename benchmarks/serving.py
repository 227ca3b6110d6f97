"""Serving latency and throughput: `mmkeras serve` against calling the SavedModel in process.

The model is the quickstart's fused model (caption + 64x64 picture + 1 s
clip), trained briefly and exported with `mmkeras export`; the rows are its
real validation rows, sent one per request as TF Serving's REST row format
with base64 bytes. The server runs as its own process on 127.0.0.1, once
with dynamic batching (the defaults `mmkeras export` writes) and once with
--no-batching.

- `inprocess_p50_ms` / `inprocess_p99_ms`: `signatures["serving_default"]`
  on one row, in this process.
- `rest_p50_ms` / `rest_p99_ms`: one client, one row per request, keep-alive.
- `overhead_p50_ms`: rest_p50_ms - inprocess_p50_ms (HTTP, JSON, base64,
  queueing).
- `throughput_{batched,unbatched}_rps_at_{1,8,32}`: requests/s with that many
  concurrent clients; `throughput_batched_rps` / `throughput_unbatched_rps`
  are the 32-client figures.
- `inprocess_{batched,unbatched}_rps`: 32 threads calling the same signature
  in this process, through the server's batcher or directly: what batching
  gains before HTTP and JSON take their share of the same cores.
- `profile`: by batch size (1, 8, 32 rows), the ms of one call of
  `serving_default` and of the `preprocessed` signature (the model alone,
  on inputs the run's preprocessor made): their difference is decoding and
  preprocessing. `per_row_ms_at_32` is what a row still costs when 32 share a
  call, and `batched_ceiling_rps` the requests/s one batch thread could
  answer at that cost with no HTTP at all.

    python benchmarks/serving.py --json results.json
"""

import argparse
import base64
import contextlib
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import tensorflow as tf
from progress import write_json

from mmkeras.data.splits import open_split
from mmkeras.datasets import build_quickstart
from mmkeras.export import export_run
from mmkeras.export.server_config import BatchingParameters
from mmkeras.run_folder import load_run
from mmkeras.serving.limits import ServingLimits
from mmkeras.serving.servable import Servable
from mmkeras.training import train

CLIENTS = (1, 8, 32)
PROFILE_BATCHES = (1, 8, 32)


def exported_model(folder):
    spec = build_quickstart(os.path.join(folder, "data"), num_rows=400)
    spec.train.epochs = 2
    spec.train.tensorboard_examples = 0
    run = train(spec, os.path.join(folder, "run"), verbose=0).run_dir
    result = export_run(run, os.path.join(folder, "saved_models", "quickstart"))
    source = open_split(spec, "validation")
    rows = [{f.name: source.fetch(i, f) for f in spec.data.features} for i in range(len(source))]
    return result.path, run, rows


@contextlib.contextmanager
def server(base_dir, batching):
    command = [sys.executable, "-m", "mmkeras.cli", "serve", base_dir, "--rest-port", "0", "--grpc-port", "0"]
    process = subprocess.Popen(
        command + ([] if batching else ["--no-batching"]),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        for line in process.stdout:
            if match := re.match(r"serving rest=http://(\S+) ", line):
                yield match.group(1)
                break
        else:
            raise RuntimeError("the server did not start")
    finally:
        process.terminate()
        process.wait()


def request_bodies(rows):
    encode = lambda v: {"b64": base64.b64encode(v).decode()} if isinstance(v, bytes) else v  # noqa: E731
    return [json.dumps({"instances": [{k: encode(v) for k, v in row.items()}]}).encode() for row in rows]


def rest_latencies(address, bodies, count):
    connection = http.client.HTTPConnection(*address.split(":"))
    latencies = []
    for i in range(count):
        start = time.perf_counter()
        connection.request("POST", "/v1/models/quickstart:predict", body=bodies[i % len(bodies)])
        response = connection.getresponse()
        response.read()
        latencies.append(time.perf_counter() - start)
        assert response.status == 200
    connection.close()
    return np.array(latencies[count // 10 :]) * 1000  # the first tenth warms connections up


def closed_loop_rate(make_client, clients, seconds):
    """Requests/s of `clients` threads, each sending its next request as soon as
    the last one is answered: thread `index` calls `make_client(index)(n)`."""
    done = [0] * clients
    stop = threading.Event()

    def loop(index):
        send = make_client(index)
        while not stop.is_set():
            send(index + done[index] * clients)
            done[index] += 1

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)  # ramp up
    start_count, start = sum(done), time.perf_counter()
    time.sleep(seconds)
    rate = (sum(done) - start_count) / (time.perf_counter() - start)
    stop.set()
    for thread in threads:
        thread.join()
    return rate


def throughput(address, bodies, clients, seconds):
    def make_client(index):
        connection = http.client.HTTPConnection(*address.split(":"))

        def send(n):
            connection.request("POST", "/v1/models/quickstart:predict", body=bodies[n % len(bodies)])
            response = connection.getresponse()
            response.read()
            assert response.status == 200

        return send

    return closed_loop_rate(make_client, clients, seconds)


def inprocess_throughput(path, rows, batching, seconds, clients=CLIENTS[-1]):
    servable = Servable("quickstart", 1, path, ServingLimits(), BatchingParameters() if batching else None)
    servable.warm_up()  # as the server does; 32 threads racing a cold function stall for seconds
    signature = servable.signature("serving_default")
    inputs = [{k: np.array([tf.compat.as_bytes(v)], dtype=object) for k, v in row.items()} for row in rows]
    rate = closed_loop_rate(lambda index: lambda n: signature(inputs[n % len(inputs)]), clients, seconds)
    servable.retire()
    return rate


def inprocess_latencies(path, rows, count):
    signature = tf.saved_model.load(path).signatures["serving_default"]
    inputs = [{k: tf.constant([v]) for k, v in row.items()} for row in rows]
    latencies = []
    for i in range(count):
        start = time.perf_counter()
        signature(**inputs[i % len(inputs)])["probabilities"].numpy()
        latencies.append(time.perf_counter() - start)
    return np.array(latencies[count // 10 :]) * 1000


def median_ms(signature, inputs, repeats):
    """The median ms of `signature(**inputs)`, after three warm-up calls."""
    for _ in range(3):
        signature(**inputs)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        signature(**inputs)
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1000


def per_row_profile(path, run_dir, rows, repeats):
    """Per batch size: ms of one `serving_default` call, of the model alone
    (`preprocessed`), and their difference, the decoding and preprocessing."""
    exported = tf.saved_model.load(path)
    serve, model_only = exported.signatures["serving_default"], exported.signatures["preprocessed"]
    preprocessor = load_run(run_dir).task.preprocessor
    profile = {}
    for size in PROFILE_BATCHES:
        batch = [rows[i % len(rows)] for i in range(size)]
        raw = {name: tf.constant([row[name] for row in batch]) for name in batch[0]}
        inputs = preprocessor(raw)
        call_ms = median_ms(serve, raw, repeats)
        model_ms = median_ms(model_only, inputs, repeats)
        profile[size] = {"call_ms": call_ms, "model_ms": model_ms, "preprocess_ms": call_ms - model_ms}
        print(
            f"batch {size:>2}: call {call_ms:6.2f} ms ({call_ms / size:5.2f} per row), "
            f"model {model_ms:6.2f}, preprocessing {call_ms - model_ms:6.2f}",
            flush=True,
        )
    return profile


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=400, help="batch-1 requests per latency measurement")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each throughput measurement")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        print("training and exporting the quickstart model ...", flush=True)
        path, run_dir, rows = exported_model(folder)
        base_dir = os.path.dirname(path)
        bodies = request_bodies(rows)
        inprocess = inprocess_latencies(path, rows, args.requests)
        profile = per_row_profile(path, run_dir, rows, args.requests // 4)
        largest = profile[PROFILE_BATCHES[-1]]
        results = {
            "inprocess_p50_ms": float(np.percentile(inprocess, 50)),
            "inprocess_p99_ms": float(np.percentile(inprocess, 99)),
            "profile": profile,
            "per_row_ms_at_32": largest["call_ms"] / PROFILE_BATCHES[-1],
            "batched_ceiling_rps": 1000 * PROFILE_BATCHES[-1] / largest["call_ms"],
            "inprocess_batched_rps": inprocess_throughput(path, rows, True, args.seconds),
            "inprocess_unbatched_rps": inprocess_throughput(path, rows, False, args.seconds),
        }
        for batching in (True, False):
            kind = "batched" if batching else "unbatched"
            with server(base_dir, batching) as address:
                if batching:
                    rest = rest_latencies(address, bodies, args.requests)
                    results["rest_p50_ms"] = float(np.percentile(rest, 50))
                    results["rest_p99_ms"] = float(np.percentile(rest, 99))
                for clients in CLIENTS:
                    rate = throughput(address, bodies, clients, args.seconds)
                    results[f"throughput_{kind}_rps_at_{clients}"] = rate
                    print(f"{kind:>9}, {clients:>2} clients: {rate:8.1f} requests/s", flush=True)
    results["overhead_p50_ms"] = results["rest_p50_ms"] - results["inprocess_p50_ms"]
    results["throughput_batched_rps"] = results[f"throughput_batched_rps_at_{CLIENTS[-1]}"]
    results["throughput_unbatched_rps"] = results[f"throughput_unbatched_rps_at_{CLIENTS[-1]}"]
    results["batched_over_unbatched"] = (
        results["throughput_batched_rps"] / results["throughput_unbatched_rps"]
    )
    for name, value in results.items():
        if name != "profile":
            print(f"{name:>36}: {value:10.2f}")
    write_json(args.json, results)


if __name__ == "__main__":
    main()

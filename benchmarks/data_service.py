"""Training-pipeline throughput with tf.data service: 0 (the pipeline in the
trainer), 1 and 2 local workers, each in its own process as
`mmkeras data-service worker` runs it.

The pipeline is the training split's, uncached (every epoch decodes the
files again, what the service is for): Flickr8k's 3,500 training captions
with their JPEG photographs resized to `--image-size` pixels. Batches are
only counted, so the figures are the pipeline's supply, not a model's demand.

    MMKERAS_DATA=../shared/data python benchmarks/data_service.py --json data_service.json

On one machine the workers share its cores with each other and with the
trainer: more workers cannot add cores, only move the work between
processes (plus the cost of sending batches over gRPC). The service pays
when workers run on other machines.
"""

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time

from progress import write_json

from mmkeras.data.dataset import build_preprocessor, make_dataset
from mmkeras.datasets import build_flickr8k
from mmkeras.spec.data_service import DataServiceSpec

EPOCHS = 3


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(*args, port):
    process = subprocess.Popen(
        [sys.executable, "-m", "mmkeras.cli", "data-service", *args, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(120):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"data-service {args[0]} did not start on port {port}")


def rows_per_second(spec, preprocessor):
    """Rows a second over epochs 2 and later (the first includes starting up)."""
    dataset = make_dataset(spec, "train", training=True, preprocessor=preprocessor)
    seconds, rows = [], []
    for _ in range(EPOCHS):
        start, count = time.perf_counter(), 0
        for inputs in dataset:
            count += int(inputs["modality_mask"].shape[0])
        seconds.append(time.perf_counter() - start)
        rows.append(count)
    return sum(rows[1:]) / sum(seconds[1:])


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--image-size", type=int, default=224, help="picture side in pixels (default 224)")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args(argv)
    folder = tempfile.mkdtemp(prefix="mmkeras-data-service-")
    spec = build_flickr8k(folder, image_size=args.image_size)
    spec.data.cache = None
    preprocessor = build_preprocessor(spec, progress=False)
    results = {"local": rows_per_second(spec, preprocessor)}
    port = _free_port()
    processes = [_start("dispatcher", port=port)]
    try:
        for workers in (1, 2):
            processes.append(_start("worker", "--dispatcher", f"127.0.0.1:{port}", port=_free_port()))
            spec.data.service = DataServiceSpec(f"127.0.0.1:{port}")
            results[f"{workers}_workers"] = rows_per_second(spec, preprocessor)
            spec.data.service = None
    finally:
        for process in processes:
            process.kill()
    print(f"cores: {os.cpu_count()}, Flickr8k training rows, pictures {args.image_size} px, uncached")
    for name, value in results.items():
        print(f"  {name:<10} {value:8.0f} rows/s  ({value / results['local']:.2f}x the local pipeline)")
    write_json(args.json, results)
    return results


if __name__ == "__main__":
    sys.exit(0 if main() else 1)

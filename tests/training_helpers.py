"""Helpers the training tests share: small specs, the command line, local workers."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import yaml

from mmkeras.spec import Spec

SMALL_MODEL = {
    "encoders": {
        "caption": {"type": "lstm", "embedding_dim": 8, "units": 8},
        "image": {"type": "cnn", "filters": [8, 16]},
        "audio": {"type": "spectrogram_cnn", "filters": [8, 16]},
    },
    "fusion": {"type": "concat", "projection_dim": 16},
    "head": {"hidden_dims": [32], "dropout_rate": 0.1},
}


def write_train_spec(spec_path, model=None, data=None, **train):
    """A copy of the spec beside it with the small model and `train` changes; its path."""
    mapping = Spec.from_yaml(spec_path).to_dict()
    mapping["model"] = model or SMALL_MODEL
    mapping["data"].update(data or {})
    mapping["train"].update(train)
    key = json.dumps([model, data, train], sort_keys=True)
    path = spec_path.replace("spec.yaml", f"spec_{abs(hash(key))}.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(mapping, f)
    return path


def run_cli(*args, env=None, **kwargs):
    """`mmkeras ARGS` in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "mmkeras.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        **kwargs,
    )


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Trains in a worker process of a two-worker cluster on 127.0.0.1 and prints
# the digest of its final weights.
_WORKER = textwrap.dedent(
    """
    import hashlib, json, os, sys
    ports, index, spec_path, run_dir = json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                                          "task": {"type": "worker", "index": index}})
    import numpy as np
    from mmkeras import Spec
    from mmkeras.training import train
    result = train(Spec.from_yaml(spec_path), run_dir, verbose=0)
    weights = b"".join(np.asarray(w).tobytes() for w in result.task.weights)
    print("DIGEST", hashlib.sha256(weights).hexdigest(), len(result.task.weights))
    """
)


def start_workers(spec_path, run_dir, count=2):
    """Starts `count` training workers of one MultiWorkerMirroredStrategy cluster."""
    ports = json.dumps([free_port() for _ in range(count)])
    return [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, ports, str(index), spec_path, run_dir],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(count)
    ]


def finish_workers(workers, timeout=300):
    """Waits for the workers; asserts they succeeded; returns their weight digests."""
    outputs = [worker.communicate(timeout=timeout) for worker in workers]
    for worker, (_, err) in zip(workers, outputs):
        assert worker.returncode == 0, err[-3000:]
    return [next(line for line in out.splitlines() if line.startswith("DIGEST")) for out, _ in outputs]

"""tf.data service: training input pipelines run by a dispatcher and workers on 127.0.0.1."""

import copy
import os
import socket
import subprocess
import sys
import time

import pytest

from mmkeras.data.dataset import make_dataset
from mmkeras.errors import DataError
from mmkeras.spec.data_service import DataServiceSpec
from tests.training_helpers import finish_workers, free_port, run_cli, start_workers, write_train_spec


def _wait_for(port, process, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        assert process.poll() is None, process.stdout.read()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"nothing listens on port {port}")


def _journal_size(folder):
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def _serve(*args):
    return subprocess.Popen(
        [sys.executable, "-m", "mmkeras.cli", "data-service", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _history_rows(run_dir):
    with open(os.path.join(run_dir, "history.csv")) as f:
        return len(f.read().strip().splitlines()) - 1  # less the header


@pytest.mark.long(120)
def test_training_runs_through_a_dispatcher_and_two_workers(quickstart_spec, tmp_path):
    port, journal = free_port(), tmp_path / "dispatcher"
    dispatcher = _serve("dispatcher", "--port", str(port), "--work-dir", str(journal))
    processes = [dispatcher]
    try:
        _wait_for(port, dispatcher)
        worker_ports = [free_port(), free_port()]
        for worker_port in worker_ports:
            processes.append(
                _serve("worker", "--dispatcher", f"127.0.0.1:{port}", "--port", str(worker_port))
            )
            _wait_for(worker_port, processes[-1])
        base = os.path.join(quickstart_spec.base_dir, "spec.yaml")
        service = {"service": f"127.0.0.1:{port}"}
        train = {"epochs": 2, "tensorboard_examples": 0}
        spec_path = write_train_spec(base, data=service, strategy="mirrored", **train)
        time.sleep(2)  # the workers register with the dispatcher after they listen
        registered = _journal_size(journal)
        # In a process of its own: a second MirroredStrategy in the test process would
        # collide with the other tests' collectives. Two logical CPUs: two replicas.
        run_dir = str(tmp_path / "run")
        result = run_cli("train", spec_path, "--output-dir", run_dir, env={"MMKERAS_CPU_DEVICES": "2"})
        assert result.returncode == 0, result.stderr
        assert os.path.exists(os.path.join(run_dir, "metrics.json"))
        assert _history_rows(run_dir) == 2
        # The dispatcher journalled the jobs the training epochs asked for.
        assert _journal_size(journal) > registered
        # Two trainers of a multi-worker cluster, each taking its shard of the
        # rows through the same service, end with the same weights.
        before = _journal_size(journal)
        spec_path = write_train_spec(base, data=service, strategy="multi_worker", **train)
        run_dir = str(tmp_path / "multi_worker")
        digests = finish_workers(start_workers(spec_path, run_dir))
        assert digests[0] == digests[1]
        assert _history_rows(run_dir) == 2
        assert _journal_size(journal) > before
        assert all(p.poll() is None for p in processes)  # the servers are still up
    finally:
        for process in processes:
            process.kill()
            process.wait()


def test_an_unreachable_dispatcher_is_named_with_the_fix(quickstart_spec):
    spec = copy.deepcopy(quickstart_spec)
    address = f"127.0.0.1:{free_port()}"
    spec.data.service = DataServiceSpec(address)
    with pytest.raises(
        DataError, match=f"no tf.data service dispatcher answers at grpc://{address}.*data-service"
    ):
        make_dataset(spec, "train", training=True)

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
from tests.training_helpers import run_cli, write_train_spec


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


@pytest.mark.long(60)
def test_training_runs_through_a_dispatcher_and_two_workers(quickstart_spec, tmp_path):
    port, journal = _free_port(), tmp_path / "dispatcher"
    dispatcher = _serve("dispatcher", "--port", str(port), "--work-dir", str(journal))
    processes = [dispatcher]
    try:
        _wait_for(port, dispatcher)
        worker_ports = [_free_port(), _free_port()]
        for worker_port in worker_ports:
            processes.append(
                _serve("worker", "--dispatcher", f"127.0.0.1:{port}", "--port", str(worker_port))
            )
            _wait_for(worker_port, processes[-1])
        spec_path = write_train_spec(
            os.path.join(quickstart_spec.base_dir, "spec.yaml"),
            data={"service": f"127.0.0.1:{port}"},
            epochs=2,
            tensorboard_examples=0,
            strategy="mirrored",
        )
        time.sleep(2)  # the workers register with the dispatcher after they listen
        registered = _journal_size(journal)
        # In a process of its own: a second MirroredStrategy in the test process would
        # collide with the other tests' collectives. Two logical CPUs: two replicas.
        run_dir = str(tmp_path / "run")
        result = run_cli("train", spec_path, "--output-dir", run_dir, env={"MMKERAS_CPU_DEVICES": "2"})
        assert result.returncode == 0, result.stderr
        assert os.path.exists(os.path.join(run_dir, "metrics.json"))
        with open(os.path.join(run_dir, "history.csv")) as f:
            assert len(f.read().strip().splitlines()) == 3  # the header and two epochs
        # The dispatcher journalled the jobs the training epochs asked for.
        assert _journal_size(journal) > registered
        assert all(p.poll() is None for p in processes)  # the servers are still up
    finally:
        for process in processes:
            process.kill()
            process.wait()


def test_an_unreachable_dispatcher_is_named_with_the_fix(quickstart_spec):
    spec = copy.deepcopy(quickstart_spec)
    address = f"127.0.0.1:{_free_port()}"
    spec.data.service = DataServiceSpec(address)
    with pytest.raises(
        DataError, match=f"no tf.data service dispatcher answers at grpc://{address}.*data-service"
    ):
        make_dataset(spec, "train", training=True)

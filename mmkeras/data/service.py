"""tf.data service: the training pipeline's decoding and preprocessing on other machines.

A dispatcher hands out the work and any number of workers run the input
pipeline (`mmkeras data-service dispatcher|worker`); the trainer only receives
finished batches. Workers read the manifest's files by the same paths as the
trainer, so they need the same data (a shared volume, or a bucket path).
"""

import socket

import tensorflow as tf

from mmkeras.errors import DataError

# A dispatcher that does not accept a connection within this many seconds is unreachable.
CONNECT_TIMEOUT_S = 5
SHARDING = {
    "distributed_epoch": tf.data.experimental.service.ShardingPolicy.DYNAMIC,
    "parallel_epochs": tf.data.experimental.service.ShardingPolicy.OFF,
}


def check_reachable(service):
    """Raises DataError naming the address when nothing answers there.

    Without this a trainer would wait for the dispatcher without a word.
    Once a job runs, a dispatcher that goes away is waited for: the workers
    and the trainer reconnect when it is back (with `--work-dir`, it
    restores its jobs from there)."""
    host, port = service.host_and_port
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as error:
        raise DataError(
            f"data.service: no tf.data service dispatcher answers at {service.target} ({error}). "
            f"Start one there (mmkeras data-service dispatcher --port {port}) and at least one worker "
            f"(mmkeras data-service worker --dispatcher {host}:{port}), or remove `data.service`."
        ) from None


def distribute(dataset, service):
    """`dataset` produced by the service's workers instead of this process."""
    return dataset.apply(
        tf.data.experimental.service.distribute(
            processing_mode=SHARDING[service.processing_mode], service=service.target
        )
    )


def run_dispatcher(port, work_dir=None):
    """Serves as the dispatcher until killed; with `work_dir` it journals its
    state there and restores it after a restart (fault-tolerant mode)."""
    config = tf.data.experimental.service.DispatcherConfig(
        port=port, work_dir=work_dir, fault_tolerant_mode=work_dir is not None
    )
    server = tf.data.experimental.service.DispatchServer(config)
    print(f"tf.data service dispatcher at {server.target}", flush=True)
    server.join()


def run_worker(dispatcher, port=0, worker_address=None):
    """Serves as a worker of `dispatcher` (HOST:PORT) until killed.

    Args:
        dispatcher: str. The dispatcher's address.
        port: int. This worker's port; 0 picks a free one.
        worker_address: str or None. How the trainers reach this worker
            (HOST:%port%), when not by this machine's name.
    """
    dispatcher = dispatcher.split("://", 1)[-1]
    arguments = {"dispatcher_address": dispatcher, "port": port}
    if worker_address:
        arguments["worker_address"] = worker_address
    server = tf.data.experimental.service.WorkerServer(tf.data.experimental.service.WorkerConfig(**arguments))
    print(f"tf.data service worker of {dispatcher} (port {port or 'chosen by the system'})", flush=True)
    server.join()

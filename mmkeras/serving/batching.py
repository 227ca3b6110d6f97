"""Dynamic batching: concurrent requests to one signature run as one call.

Requests queue up; each batch thread takes the queued requests, up to
`max_batch_size` rows, concatenates them along the batch axis, runs the
signature once and hands each request its own slice of the outputs. With
`batch_timeout_micros` 0 nothing waits for a batch to fill: a request that
finds nothing running and nothing queued runs at once on its own thread (no
handoff, so an idle server answers as fast as an unbatched one), and the
requests that arrive while something runs form the next batch. If a batch
fails (one request has an undecodable image), its requests run one by one so only the bad one gets the error.
"""

import collections
import threading
import time

import grpc
import numpy as np

from mmkeras.serving.errors import ServingError


class _Task:
    def __init__(self, inputs, rows):
        self.inputs = inputs
        self.rows = rows
        self.outputs = None
        self.error = None
        self.done = threading.Event()


class Batcher:
    """Runs `run(inputs) -> outputs` on batches of concurrent requests.

    Args:
        run: callable. Dict of NumPy arrays (batch-first) to dict of NumPy
            arrays with the same batch size.
        parameters: BatchingParameters.
    """

    def __init__(self, run, parameters):
        self._run = run
        self._parameters = parameters
        self._queue = collections.deque()
        self._ready = threading.Condition()
        self._stopped = False
        self._running = 0  # batches (or lone requests) running now
        self._threads = [
            threading.Thread(target=self._work, daemon=True, name=f"batch-{i}")
            for i in range(parameters.num_batch_threads)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, inputs, rows):
        """Blocks until the request's batch has run; returns its outputs."""
        task = _Task(inputs, rows)
        with self._ready:
            stopped = self._stopped  # a retired version finishes stragglers unbatched
            idle = (
                not self._queue
                and self._running < self._parameters.num_batch_threads
                and self._parameters.batch_timeout_micros == 0
            )
            if idle and not stopped:
                self._running += 1
            elif not stopped:
                limit = self._parameters.max_enqueued_batches * self._parameters.max_batch_size
                if sum(t.rows for t in self._queue) + rows > limit:
                    raise ServingError(
                        "the server's batch queue is full; retry shortly", grpc.StatusCode.UNAVAILABLE
                    )
                self._queue.append(task)
                self._ready.notify()
        if stopped:
            return self._run(inputs)
        if idle:
            try:
                return self._run(inputs)
            finally:
                self._finished()
        task.done.wait()
        if task.error is not None:
            raise task.error
        return task.outputs

    def stop(self):
        """Finishes what is queued, then ends the batch threads."""
        with self._ready:
            self._stopped = True
            self._ready.notify_all()

    def _finished(self):
        with self._ready:
            self._running -= 1
            if self._queue:  # waking an idle batch thread for nothing costs the GIL
                self._ready.notify()

    def _take_batch(self):
        with self._ready:
            while (
                not self._queue or self._running >= self._parameters.num_batch_threads
            ) and not self._stopped:
                self._ready.wait()
            if not self._queue:
                return None
            self._running += 1
            deadline = time.monotonic() + self._parameters.batch_timeout_micros / 1e6
            batch = [self._queue.popleft()]
            rows = batch[0].rows
            while rows < self._parameters.max_batch_size:
                if not self._queue:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or self._stopped:
                        break
                    self._ready.wait(remaining)
                    continue
                if rows + self._queue[0].rows > self._parameters.max_batch_size:
                    break
                task = self._queue.popleft()
                batch.append(task)
                rows += task.rows
            return batch

    def _work(self):
        while (batch := self._take_batch()) is not None:
            try:
                self._run_batch(batch)
            finally:
                self._finished()

    def _run_batch(self, batch):
        if len(batch) > 1:
            inputs = {name: np.concatenate([task.inputs[name] for task in batch]) for name in batch[0].inputs}
            try:
                outputs = self._run(inputs)
            except Exception:
                outputs = None  # someone's bad row: run them one by one below
            if outputs is not None:
                start = 0
                for task in batch:
                    task.outputs = {name: value[start : start + task.rows] for name, value in outputs.items()}
                    start += task.rows
                    task.done.set()
                return
        for task in batch:
            try:
                task.outputs = self._run(task.inputs)
            except Exception as error:  # handed to the request's own thread, which reports it
                task.error = error
            task.done.set()

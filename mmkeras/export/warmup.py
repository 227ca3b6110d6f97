"""`assets.extra/tf_serving_warmup_requests`: requests a server replays on load.

TF Serving runs each record (a `PredictionLog` holding a `PredictRequest`)
before it marks a version AVAILABLE, so the first real request does not pay
for lazy initialisation. The records are real validation rows in batches of
1, 2, 4, ... up to the batching limit, so every batch shape a server is
likely to run has been run once.
"""

import os

import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
MAX_WARMUP_ROWS = 1000


def warmup_batch_sizes(num_rows, max_batch_size):
    sizes, size = [], 1
    while size <= min(num_rows, max_batch_size) and sum(sizes) + size <= MAX_WARMUP_ROWS:
        sizes.append(size)
        size *= 2
    return sizes


def write_warmup_requests(saved_model_dir, model_name, signature_name, raw_rows, max_batch_size):
    """Writes the warmup file; returns the number of requests.

    Args:
        saved_model_dir: str. The version folder being exported.
        model_name: str. The model's name in TF Serving.
        signature_name: str. The signature the requests call.
        raw_rows: dict. Input name to a list of raw values (str or bytes).
        max_batch_size: int. The largest batch to warm up.
    """
    num_rows = len(next(iter(raw_rows.values())))
    path = os.path.join(saved_model_dir, WARMUP_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sizes = warmup_batch_sizes(num_rows, max_batch_size)
    with tf.io.TFRecordWriter(path) as writer:
        for size in sizes:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature_name)
            )
            for name, values in raw_rows.items():
                request.inputs[name].CopyFrom(tf.make_tensor_proto(list(values[:size]), dtype=tf.string))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return len(sizes)


def read_warmup_requests(saved_model_dir):
    """The `PredictRequest`s in a version's warmup file (none if it has no file)."""
    path = os.path.join(saved_model_dir, WARMUP_FILE)
    if not os.path.exists(path):
        return []
    requests = []
    for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
        log = prediction_log_pb2.PredictionLog.FromString(record)
        if log.HasField("predict_log"):
            requests.append(log.predict_log.request)
    return requests

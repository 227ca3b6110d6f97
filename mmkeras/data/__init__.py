"""Manifests and TFRecords to tf.data pipelines, and the bad-record check."""

from mmkeras.data.check import BadRecord, check_spec, check_split
from mmkeras.data.dataset import (
    build_preprocessor,
    make_dataset,
    make_distributed_dataset,
)
from mmkeras.data.splits import open_split
from mmkeras.data.tfrecord import write_tfrecords

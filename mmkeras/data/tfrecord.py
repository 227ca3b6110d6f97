"""Sharded TFRecords holding each row's raw bytes, for sequential reads.

A record stores every raw input as bytes (text and record values as UTF-8,
an image or WAV file as its encoded bytes), the raw target, and `__key__`: the manifest and
line the row came from, so errors still name the original row.
"""

import glob
import os

import tensorflow as tf

from mmkeras.data.manifest import FILE_MODALITIES, TARGET_KEY
from mmkeras.errors import BadValue, DataError, SpecError

KEY = "__key__"


def _bytes_feature(value):
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogateescape")
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def write_tfrecords(source, spec, output_prefix, num_shards=8, exclude=(), progress=None):
    """Writes the rows of `source` to `num_shards` TFRecord files.

    Args:
        source: a split source (see `mmkeras.data.open_split`).
        spec: Spec. Names the features and the target.
        output_prefix: str. Files are `{output_prefix}-00000-of-00008.tfrecord`.
        num_shards: int. Rows are dealt round-robin so shards are equal.
        exclude: set. Keys (manifest:line) of rows to leave out.
        progress: callable or None. Called with 1 after each row.

    Returns:
        The glob that matches the written files, to put in a spec.
    """
    data = spec.data
    folder = os.path.dirname(os.path.abspath(output_prefix))
    os.makedirs(folder, exist_ok=True)
    paths = [f"{output_prefix}-{shard:05d}-of-{num_shards:05d}.tfrecord" for shard in range(num_shards)]
    writers = [tf.io.TFRecordWriter(path) for path in paths]
    written = 0
    try:
        for key, values in source.records():
            if key in exclude:
                continue
            features = {KEY: _bytes_feature(key)}
            for name, value in values.items():
                if isinstance(value, BadValue):
                    column = data.input_columns()[name]
                    raise BadValue(f"{key} column {column}: {value}")
                features[name] = _bytes_feature(value)
            example = tf.train.Example(features=tf.train.Features(feature=features))
            writers[written % num_shards].write(example.SerializeToString())
            written += 1
            if progress:
                progress(1)
    finally:
        for writer in writers:
            writer.close()
    return f"{output_prefix}-*-of-{num_shards:05d}.tfrecord"


class TFRecordSource:
    """Reads one split from TFRecords written by `write_tfrecords`."""

    def __init__(self, pattern, spec):
        self.pattern = pattern
        self.spec = spec
        self.name = pattern
        self.files = sorted(glob.glob(pattern))
        if not self.files:
            raise SpecError(
                f"no TFRecord files match {pattern}. Write them with `mmkeras data to-tfrecord SPEC`."
            )
        names = [*spec.data.input_columns(), KEY]
        if spec.data.target is not None:
            names.append(TARGET_KEY)
        self._schema = {name: tf.io.FixedLenFeature([], tf.string) for name in names}
        self._keys = None

    def _stream(self, names):
        """Yields the records' values for `names` as bytes, one record at a time."""
        schema = {name: self._schema[name] for name in names}
        dataset = tf.data.TFRecordDataset(self.files).map(
            lambda serialized: tf.io.parse_single_example(serialized, schema),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        yield from dataset.prefetch(tf.data.AUTOTUNE).as_numpy_iterator()

    def _parse(self, serialized):
        return tf.io.parse_single_example(serialized, self._schema)

    def __len__(self):
        return len(self.keys())

    def keys(self):
        if self._keys is None:
            self._keys = [record[KEY].decode("utf-8", "surrogateescape") for record in self._stream([KEY])]
        return self._keys

    def column(self, column):
        data = self.spec.data
        if data.target is not None and column == data.target.column:
            name = TARGET_KEY
        else:
            names = [name for name, read in data.input_columns().items() if read == column]
            if not names:
                raise DataError(
                    f"{self.name} holds the spec's columns only, not `{column}`: "
                    "read the manifest the records were written from."
                )
            name = names[0]
        return [record[name].decode("utf-8", "surrogateescape") for record in self._stream([name])]

    def records(self):
        """Yields `(key, values)` per record: file contents as bytes, the rest as str."""
        files = {name for f in self.spec.data.features if f.modality in FILE_MODALITIES for name in f.inputs}
        for record in self._stream(list(self._schema)):
            key = record.pop(KEY).decode("utf-8", "surrogateescape")
            yield (
                key,
                {
                    name: value if name in files else value.decode("utf-8", "surrogateescape")
                    for name, value in record.items()
                },
            )

    def rows(self, exclude=(), input_context=None):
        files = tf.data.Dataset.from_tensor_slices(self.files)
        if input_context and len(self.files) >= input_context.num_input_pipelines:
            files = files.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
            input_context = None
        dataset = files.interleave(
            tf.data.TFRecordDataset,
            cycle_length=min(len(self.files), 8),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        ).map(self._parse, num_parallel_calls=tf.data.AUTOTUNE)
        if input_context:
            dataset = dataset.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        if exclude:
            bad = tf.constant(sorted(exclude))
            dataset = dataset.filter(lambda row: tf.logical_not(tf.reduce_any(tf.equal(row[KEY], bad))))
        return dataset

    def load(self, row):
        return row

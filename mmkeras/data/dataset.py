"""`make_dataset`: a spec and a split to a batched, prefetched tf.data pipeline."""

import json
import logging
import os

import tensorflow as tf

from mmkeras.data.check import check_split
from mmkeras.data.check_cache import check_key, load_bad_records, save_bad_records
from mmkeras.data.manifest import TARGET_KEY
from mmkeras.data.service import check_reachable, distribute
from mmkeras.data.splits import open_split
from mmkeras.errors import BadRecordError
from mmkeras.preprocessing.preprocessor import Preprocessor
from mmkeras.tasks import task_class

logger = logging.getLogger("mmkeras")

_checks_cache = {}
_bad_records_cache = {}


def _cache_key(spec, split):
    paths = [spec.resolve(p) for p in (spec.data.train, spec.data.validation, spec.data.test) if p]
    stamps = [os.path.getmtime(p) if os.path.exists(p) else None for p in paths]
    return json.dumps([spec.to_dict(), spec.base_dir, split, stamps], default=str)


def checked_split(spec, split, progress=True):
    """The SplitCheck of `split`: read and checked once per spec and manifest."""
    key = _cache_key(spec, split)
    if key not in _checks_cache:
        _checks_cache[key] = check_split(spec, split, progress=progress)
    return _checks_cache[key]


def bad_records(spec, split, progress=True):
    """The BadRecords of `split`: kept from an earlier check of the same data
    (`check_cache`, by this process or another), else checked now."""
    memo = _cache_key(spec, split)
    if memo not in _bad_records_cache:
        key = check_key(spec, split, open_split(spec, split))
        records = load_bad_records(key)
        if records is None:
            records = checked_split(spec, split, progress).bad
            save_bad_records(key, records)
        _bad_records_cache[memo] = records
    return _bad_records_cache[memo]


def bad_rows(spec, split, progress=True):
    """The keys of the bad rows of `split` (see `bad_records`).

    Raises BadRecordError listing every bad row when the spec says
    `on_bad_record: error`; with `skip` it logs how many rows and which.
    """
    records = bad_records(spec, split, progress)
    if records and spec.data.on_bad_record == "error":
        raise BadRecordError(records)
    if records:
        locations = sorted({record.location for record in records})
        logger.warning(
            "Skipping %d bad row(s) of the %s split: %s%s",
            len(locations),
            split,
            ", ".join(locations[:10]),
            " ..." if len(locations) > 10 else "",
        )
    return frozenset(record.location for record in records)


def good_column(spec, split, column):
    """A manifest column's values on the good rows of `split`, in the order
    `make_dataset` reads them; no file is opened."""
    source = open_split(spec, split)
    exclude = bad_rows(spec, split, progress=False)
    return [value for key, value in zip(source.keys(), source.column(column)) if key not in exclude]


def build_preprocessor(spec, progress: bool = True) -> Preprocessor:
    """A preprocessor whose vocabularies and labels are learned on `train`."""
    target = spec.data.target
    encoder = task_class(target).target_encoder(spec) if target is not None else None
    preprocessor = Preprocessor.from_spec(spec, target=encoder)
    source = open_split(spec, "train")
    exclude = bad_rows(spec, "train", progress=progress)
    keep = [i for i, key in enumerate(source.keys()) if key not in exclude]

    def kept(column):
        values = source.column(column)
        return [values[i] for i in keep]

    features = spec.data.features
    texts = {f.name: kept(f.column) for f in features if f.modality == "text" and not f.tokenizer}
    records = {
        f.name: {name: kept(column) for name, column in f.inputs.items()}
        for f in features
        if f.modality == "record"
    }
    targets = kept(target.column) if target is not None else None
    preprocessor.adapt(texts=texts, records=records, targets=targets)
    return preprocessor


def make_dataset(
    spec,
    split: str,
    input_context: tf.distribute.InputContext | None = None,
    training: bool = False,
    preprocessor: Preprocessor | None = None,
    batch_size: int | None = None,
    check: bool = True,
    repeat: bool = False,
    class_weight: dict | None = None,
) -> tf.data.Dataset:
    """Builds the input pipeline for one split.

    Rows are sharded for this input pipeline, shuffled (seeded) while they are
    still paths, read and decoded in parallel, optionally cached as decoded
    tensors, batched per replica, augmented (training only), each text's
    padding trimmed to its batch's longest text, and prefetched.
    With `data.service`, all of that but the prefetch runs for the training
    split on tf.data service workers (`mmkeras.data.service`): this
    pipeline's shard of the rows is split among them.

    Args:
        spec: Spec. The data description.
        split: str. "train", "validation" or "test".
        input_context: tf.distribute.InputContext or None. Shards the rows and
            turns the global batch size into a per-replica one.
        training: bool. Shuffle, full batches only, and augmentation.
        preprocessor: Preprocessor or None. Adapted on the training split;
            built with `build_preprocessor` when left out.
        batch_size: int or None. Global batch size; `spec.data.batch_size`
            when left out.
        check: bool. Run the bad-record check first (once per manifest), so
            no bad row can fail an epoch halfway.
        repeat: bool. Repeat the split endlessly, reshuffled each pass, for a
            loop that counts its own steps per epoch.
        class_weight: dict or None. Class index to weight: each row then
            carries its class's weight as a sample weight. Applied here, in
            the pipeline, because Keras's own `class_weight` cannot map a
            distributed dataset.

    Returns:
        A `tf.data.Dataset` of `(inputs, target)`, `(inputs, target,
        sample_weight)` with `class_weight`, or `inputs` when the spec has no
        target; `inputs` a dict keyed by feature name.
    """
    data = spec.data
    if preprocessor is None:
        preprocessor = build_preprocessor(spec)
    source = open_split(spec, split)
    exclude = bad_rows(spec, split) if check else frozenset()
    batch_size = batch_size or data.batch_size
    if input_context is not None:
        batch_size = input_context.get_per_replica_batch_size(batch_size)
    has_target = data.target is not None
    seed = data.seed + (input_context.input_pipeline_id if input_context else 0)

    dataset = source.rows(exclude=exclude, input_context=input_context)
    on_service = training and data.service is not None
    # On service workers each epoch is a new job that decodes afresh: nothing to cache.
    caches = data.cache and not on_service
    shuffle_decoded = training and caches
    if training and not shuffle_decoded:
        dataset = dataset.shuffle(data.shuffle_buffer, seed=seed)

    def load_and_preprocess(row):
        row = source.load(row)
        inputs = preprocessor(row)
        if not has_target:
            return inputs
        target = preprocessor.target(row[TARGET_KEY])
        if hasattr(preprocessor.target, "teacher_forced"):  # a sequence the model reads while it learns it
            return preprocessor.target.teacher_forced(inputs, target)
        return inputs, target

    dataset = dataset.map(load_and_preprocess, num_parallel_calls=tf.data.AUTOTUNE)
    if caches:
        dataset = dataset.cache("" if data.cache == "memory" else spec.resolve(data.cache))
    if shuffle_decoded:
        dataset = dataset.shuffle(data.shuffle_buffer, seed=seed)
    dataset = dataset.batch(batch_size, drop_remainder=training, num_parallel_calls=tf.data.AUTOTUNE)
    if training and preprocessor.augmenters:
        # One stateless seed per batch: reproducible, and unlike op-seeded
        # random ops it lets tf.data run batches in parallel.
        seeds = tf.data.Dataset.random(seed=seed).batch(2).map(lambda s: tf.cast(s, tf.int32))
        dataset = tf.data.Dataset.zip(dataset, seeds).map(
            lambda batch, batch_seed: _with_inputs(batch, lambda x: preprocessor.augment(x, batch_seed)),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    if preprocessor.has_text:
        dataset = dataset.map(
            lambda *batch: _with_inputs(batch if has_target else batch[0], preprocessor.trim_padding),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    if class_weight:
        dataset = dataset.map(_class_weighter(class_weight), num_parallel_calls=tf.data.AUTOTUNE)
    if on_service:
        check_reachable(data.service)
        dataset = distribute(dataset, data.service)
    if repeat:
        dataset = dataset.repeat()
    return dataset.prefetch(tf.data.AUTOTUNE)


def _class_weighter(class_weight):
    """`(inputs, target)` to `(inputs, target, weight of the target's class)`."""
    table = tf.constant([float(class_weight[i]) for i in range(len(class_weight))], tf.float32)

    def add_weight(inputs, target):
        return inputs, target, tf.gather(table, tf.cast(tf.reshape(target, [-1]), tf.int32))

    return add_weight


def _with_inputs(batch, function):
    """`batch`, `(inputs, target)` or `inputs` alone, with `function` applied to its inputs."""
    if isinstance(batch, tuple):
        return (function(batch[0]), *batch[1:])
    return function(batch)


def make_distributed_dataset(
    strategy: tf.distribute.Strategy,
    spec,
    split: str,
    preprocessor: Preprocessor,
    training: bool = False,
    **kwargs,
) -> tf.distribute.DistributedDataset:
    """`make_dataset` once per input pipeline of `strategy`, with its input context."""
    return strategy.distribute_datasets_from_function(
        lambda input_context: make_dataset(
            spec,
            split,
            input_context=input_context,
            training=training,
            preprocessor=preprocessor,
            **kwargs,
        )
    )

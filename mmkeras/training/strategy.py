"""Which tf.distribute strategy a run uses, and mixed precision."""

import json
import logging
import os

import keras
import tensorflow as tf

from mmkeras.errors import SpecError

logger = logging.getLogger("mmkeras")


def resolve_strategy(name):
    """The strategy for `train.strategy`.

    - auto: MirroredStrategy over all GPUs when there are several, else the
      default strategy.
    - default: one device.
    - mirrored: MirroredStrategy over all visible GPUs (or the CPU).
    - multi_worker: MultiWorkerMirroredStrategy configured by TF_CONFIG.
    """
    if name == "auto":
        gpus = tf.config.list_logical_devices("GPU")
        name = "mirrored" if len(gpus) > 1 else "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        # All GPUs; on a machine without one, every logical CPU device (one
        # unless the process split its CPU, as tests and tutorials do).
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    config = os.environ.get("TF_CONFIG")
    if not config:
        raise SpecError(
            "train.strategy: multi_worker needs TF_CONFIG, e.g. "
            '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
            '"task": {"type": "worker", "index": 0}} on each machine.'
        )
    try:
        json.loads(config)
    except json.JSONDecodeError as error:
        raise SpecError(f"TF_CONFIG is not valid JSON: {error}") from None
    return tf.distribute.MultiWorkerMirroredStrategy()


def is_multi_worker(strategy):
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def is_chief(strategy):
    """True for the one worker that writes checkpoints, logs and the run folder."""
    return strategy.extended.should_checkpoint


def configure_mixed_precision(setting):
    """Sets the global Keras dtype policy; returns the policy name."""
    use = setting == "on" or (setting == "auto" and tf.config.list_physical_devices("GPU"))
    policy = "mixed_float16" if use else "float32"
    keras.mixed_precision.set_global_policy(policy)
    return policy

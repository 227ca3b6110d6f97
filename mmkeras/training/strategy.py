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
        if len(devices) == 1:
            logger.warning(
                "train.strategy: mirrored, but this machine shows one device (%s): training runs "
                "on one replica, as with `default`. Make more GPUs visible (CUDA_VISIBLE_DEVICES), "
                "or on a CPU set MMKERAS_CPU_DEVICES=2 to try two replicas.",
                devices[0].name,
            )
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


POLICIES = {"on": "mixed_float16", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16", "off": "float32"}


def _compute_capability(gpu):
    capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
    return capability or (0, 0)


def choose_policy(setting, gpu_capabilities):
    """The Keras dtype policy for `train.mixed_precision`.

    Args:
        setting: str. auto, on, off, float16 or bfloat16.
        gpu_capabilities: list of (major, minor). The GPUs' compute capabilities.

    `auto` uses 16-bit compute only where the GPU has fast 16-bit math:
    bfloat16 (no loss scaling needed) from Ampere (8.0), float16 with loss
    scaling from Volta (7.0), float32 on older GPUs and on CPUs.
    """
    if setting != "auto":
        return POLICIES[setting]
    if not gpu_capabilities:
        return "float32"
    oldest = min(gpu_capabilities)
    if oldest >= (8, 0):
        return "mixed_bfloat16"
    return "mixed_float16" if oldest >= (7, 0) else "float32"


def configure_mixed_precision(setting):
    """Sets the global Keras dtype policy for `train.mixed_precision`; returns its name.

    A 16-bit policy asked for on a machine without a GPU is kept (it is
    correct, and how the GPU path is tested) with a warning that it is slow.
    """
    gpus = tf.config.list_physical_devices("GPU")
    policy = choose_policy(setting, [_compute_capability(gpu) for gpu in gpus])
    if policy != "float32" and not gpus:
        logger.warning(
            "train.mixed_precision: %s, but this machine has no GPU: %s runs emulated on the "
            "CPU, several times slower than float32. Use `auto` or `off` to train in float32 here.",
            setting,
            policy,
        )
    keras.mixed_precision.set_global_policy(policy)
    return policy

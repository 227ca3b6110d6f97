import os
import re
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from mmkeras.data.splits import open_split
from mmkeras.datasets import build_emoji
from mmkeras.errors import ExportError
from mmkeras.evaluation import evaluate_run
from mmkeras.export import check_in_fresh_process, export_run, versions
from mmkeras.export.checks import check_listing, signature_listing
from mmkeras.export.publish import next_version, publish, staging_dir
from mmkeras.export.server_config import (
    default_label,
    read_batching_parameters,
    read_models_config,
    record_version,
)
from mmkeras.export.warmup import read_warmup_requests
from mmkeras.run_folder import load_run
from mmkeras.tasks.task import ParityCase
from mmkeras.training import train


@pytest.fixture(scope="module")
def run_dir(gated_run):
    return gated_run


def _raw(spec, count=6):
    source = open_split(spec, "validation")
    return {f.name: tf.constant([source.fetch(i, f) for i in range(count)]) for f in spec.data.features}


def _saved_model_cli_listing(saved_model_dir):
    """{signature: {input: (dtype, shape)}} parsed from `saved_model_cli show --all`."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tensorflow.python.tools.saved_model_cli",
            "show",
            "--dir",
            saved_model_dir,
            "--all",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    listing, signature, name, in_inputs = {}, None, None, False
    for line in (line.strip() for line in result.stdout.splitlines()):
        if match := re.match(r"signature_def\['(.+)'\]:", line):
            signature, in_inputs = match.group(1), False
            listing[signature] = {}
        elif "following input(s)" in line or "following output(s)" in line:
            in_inputs = "input" in line
        elif in_inputs and (match := re.match(r"inputs\['(.+)'\] tensor_info:", line)):
            name = match.group(1)
        elif in_inputs and (match := re.match(r"(dtype|shape): (.+)", line)):
            dtype, shape = listing[signature].get(name, (None, None))
            listing[signature][name] = (
                (match.group(2), shape) if match.group(1) == "dtype" else (dtype, match.group(2))
            )
    return listing


@pytest.fixture(scope="module")
def exported(gated_export):
    result, root = gated_export
    return result, root / "quick"


def test_export_serves_raw_inputs_like_the_trained_model(run_dir, exported):
    result, base = exported
    assert result.version == 1 and result.path == str(base / "1")
    assert result.max_difference <= 1e-5
    run = load_run(run_dir)
    spec, preprocessor, model = run.spec, run.task.preprocessor, run.task
    loaded = tf.saved_model.load(result.path)
    assert set(loaded.signatures) == {"serving_default", "preprocessed", "embed"}
    serving = loaded.signatures["serving_default"]
    inputs = serving.structured_input_signature[1]
    assert {name: (spec.dtype, spec.shape.as_list()) for name, spec in inputs.items()} == {
        "caption": (tf.string, [None]),
        "image": (tf.string, [None]),
        "audio": (tf.string, [None]),
    }
    raw = _raw(spec)
    served = serving(**raw)
    expected = model.predict(preprocessor(raw), verbose=0)
    np.testing.assert_allclose(served["probabilities"].numpy(), expected, atol=1e-5)
    labels = [preprocessor.target.labels[i] for i in expected.argmax(axis=1)]
    assert [v.decode() for v in served["label"].numpy()] == labels
    preprocessed = loaded.signatures["preprocessed"](**preprocessor(raw))
    np.testing.assert_allclose(preprocessed["probabilities"].numpy(), expected, atol=1e-5)
    assert loaded.signatures["embed"](**raw)["embedding"].shape == (6, 16)
    raw_input = ("DT_STRING", "(-1)")
    listing = signature_listing(result.path)
    assert (
        listing["serving_default"]
        == listing["embed"]
        == dict.fromkeys(["audio", "caption", "image"], raw_input)
    )
    assert listing == _saved_model_cli_listing(result.path)  # what the tool itself prints
    with pytest.raises(ExportError, match="signature `serving_default` takes"):
        check_listing(result.path, {"serving_default": {"caption": ("DT_FLOAT", "(-1)")}})
    # A missing modality is an empty string, not an error.
    raw["image"] = tf.constant([b""] * 6)
    without_image = serving(**raw)["probabilities"].numpy()
    np.testing.assert_allclose(without_image.sum(axis=1), 1.0, atol=1e-5)


def test_versions_are_chosen_never_overwritten_silently_and_published_whole(run_dir, tmp_path):
    # One real export; the later versions publish copies of it through the
    # same steps (the serving tests export a real second version).
    base = str(tmp_path / "model")
    seen, incomplete = set(), []
    done = threading.Event()

    def poll():  # what a server polling the base path would see
        while True:
            finished = done.is_set()  # one more full pass after the last publish
            for version in versions(base):
                folder = os.path.join(base, str(version))
                complete = os.path.exists(os.path.join(folder, "saved_model.pb")) and os.path.exists(
                    os.path.join(folder, "variables", "variables.index")
                )
                seen.add(version)
                if not complete:
                    incomplete.append(version)
            if finished:
                return
            time.sleep(0.001)  # leave the publishing thread the GIL

    def publish_copy(version):
        staged = staging_dir(base, version)
        shutil.copytree(os.path.join(base, "1"), staged)
        publish(staged, base, version)
        record_version(base, version, default_label(base))

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        assert export_run(run_dir, base).version == 1
        publish_copy(next_version(base))
        with pytest.raises(ExportError, match="version 2 already exists .* --force"):
            export_run(run_dir, base, version=2)
        before = os.stat(os.path.join(base, "2", "saved_model.pb")).st_ino
        publish_copy(next_version(base, version=2, force=True))
    finally:
        done.set()
        poller.join()
    assert seen == {1, 2} and not incomplete
    assert os.stat(os.path.join(base, "2", "saved_model.pb")).st_ino != before  # replaced
    assert versions(base) == [1, 2]
    assert not [name for name in os.listdir(base) if name.startswith(".")]  # no staging left behind

    # TF Serving's config beside the base path: stable first, then canary.
    (entry,) = read_models_config(str(tmp_path / "models.config")).model_config_list.config
    assert (entry.name, entry.base_path) == ("model", "/models/model")
    assert dict(entry.version_labels) == {"stable": 1, "canary": 2}
    assert list(entry.model_version_policy.specific.versions) == [1, 2]
    assert read_batching_parameters(str(tmp_path / "batching_parameters.txt")).max_batch_size == 32


def test_warmup_requests_are_real_validation_rows(run_dir, exported):
    result, _ = exported
    requests = read_warmup_requests(result.path)
    sizes = [len(tf.make_ndarray(r.inputs["caption"])) for r in requests]
    assert sizes == [1, 2, 4, 8, 16, 32] and result.warmup_requests == len(requests)
    spec = load_run(run_dir).spec
    source = open_split(spec, "validation")
    largest = requests[-1]
    assert largest.model_spec.name == "quick" and largest.model_spec.signature_name == "serving_default"
    for feature in spec.data.features:
        sent = [
            v if isinstance(v, bytes) else v.encode() for v in tf.make_ndarray(largest.inputs[feature.name])
        ]
        expected = [source.fetch(i, feature) for i in range(32)]
        assert sent == [v if isinstance(v, bytes) else v.encode() for v in expected]
    signature = tf.saved_model.load(result.path).signatures["serving_default"]
    answer = signature(
        **{name: tf.constant(tf.make_ndarray(proto)) for name, proto in largest.inputs.items()}
    )
    assert answer["probabilities"].shape == (32, 4)


def test_retrieval_model_exports_both_encoders(data_root, tmp_path):
    spec = build_emoji(str(tmp_path / "emoji"), data_root_dir=data_root, task="retrieval")
    spec.model.encoders = {"name": {"units": 16, "embedding_dim": 16}, "image": {"filters": [8, 16]}}
    spec.model.projection_dim = 32
    spec.train.epochs = 1
    spec.train.tensorboard_examples = 0
    run = train(spec, str(tmp_path / "run"), verbose=0).run_dir
    result = export_run(run, str(tmp_path / "emoji_search"))
    assert result.max_difference <= 1e-5
    loaded = tf.saved_model.load(result.path)
    assert set(loaded.signatures) == {"serving_default", "encode_text", "encode_image"}
    source = open_split(spec, "test")
    names = tf.constant([source.fetch(i, spec.data.features[0]) for i in range(4)])
    text = loaded.signatures["encode_text"](name=names)["embedding"].numpy()
    np.testing.assert_allclose(loaded.signatures["serving_default"](name=names)["embedding"].numpy(), text)
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-5)
    images = tf.constant([source.fetch(i, spec.data.features[1]) for i in range(4)])
    assert loaded.signatures["encode_image"](image=images)["embedding"].shape == (4, 32)
    # The dual encoder's own evaluation: recall over the test split as one index.
    report = evaluate_run(run)
    assert report["rows"] == len(source) and "modality_ablation" not in report
    assert report["headline"] == "text_to_image@10"  # what `train --seeds` and the benchmarks compare
    for side in ("text_to_image", "image_to_text"):
        assert 0 <= report[f"{side}@1"] <= report[f"{side}@5"] <= report[f"{side}@10"] <= 1
    assert report["image_to_text@10"] > 10 / len(source)  # better than chance after one epoch
    assert open(os.path.join(report["output_dir"], "recall_at_k.png"), "rb").read(4) == b"\x89PNG"


def test_op_check_names_python_ops_and_where_they_are(tmp_path):
    class WithPython(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def double(self, x):
            return tf.py_function(lambda v: v * 2, [x], tf.float32)

    path = str(tmp_path / "python")
    tf.saved_model.save(WithPython(), path)
    result = subprocess.run(
        [sys.executable, "-m", "mmkeras.cli", "export", "--check", path], capture_output=True, text=True
    )
    assert result.returncode == 1, result.stderr[-2000:]
    listed = result.stdout.split("Ops TF Serving does not have:")[1]
    offenders = [line.strip() for line in listed.splitlines()]
    python_op = "EagerPyFunc calls back into Python (used in"
    assert any(o.startswith(python_op) and "double" in o for o in offenders), result.stdout


def test_parity_check_refuses_an_output_that_differs_and_names_it(tmp_path):
    class Length(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def serve(self, text):
            return {"length": tf.cast(tf.strings.length(text), tf.float32)}

    path = str(tmp_path / "length")
    module = Length()
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    case = ParityCase("serving_default", {"text": ["ab", "abcd"]}, "length", np.array([2.0, 4.0]))
    assert check_in_fresh_process(path, [case]) == ([], 0.0)
    case.expected = np.array([2.0, 4.5])
    with pytest.raises(ExportError, match="`serving_default` output `length` differs .* by up to 5.00e-01"):
        check_in_fresh_process(path, [case])


def test_export_command(run_dir, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mmkeras.cli", "export", run_dir, "--base-dir", str(tmp_path / "cli")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Exported version 1" in result.stdout and "max difference" in result.stdout
    assert os.path.exists(tmp_path / "cli" / "1" / "saved_model.pb")

import argparse
import collections
import csv
import os
import re
import subprocess
import sys
import wave

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from mmkeras.cli import build_parser
from mmkeras.data import build_preprocessor, check_spec, make_dataset, open_split, write_tfrecords
from mmkeras.datasets import build_avmnist, build_emoji, build_flickr8k, build_ham10000
from mmkeras.datasets.files import write_wav
from mmkeras.datasets.shortcut import note_word
from mmkeras.errors import BadRecordError
from mmkeras.spec import Spec
from tests.conftest import two_cpu_strategy, write_spec

SPLITS = ("train", "validation", "test")


def _rows(dataset):
    """Unbatches a (inputs, target) dataset into a list of numpy dicts."""
    rows = []
    for inputs, target in dataset.unbatch():
        row = {name: value.numpy() for name, value in inputs.items()}
        row["target"] = target.numpy()
        rows.append(row)
    return rows


def test_avmnist_pipeline_shapes_and_labels(avmnist_spec, data_root):
    preprocessor = build_preprocessor(avmnist_spec, progress=False)
    inputs, target = next(iter(make_dataset(avmnist_spec, "train", training=True, preprocessor=preprocessor)))
    assert inputs["image"].shape == (64, 28, 28, 1) and inputs["image"].dtype == tf.float32
    assert inputs["audio"].shape == (64, 98, 40) and inputs["audio"].dtype == tf.float32
    assert target.shape == (64,) and target.dtype == tf.int32
    assert 0.0 <= float(tf.reduce_min(inputs["image"])) and float(tf.reduce_max(inputs["image"])) <= 1.0
    assert preprocessor.target.labels == [str(d) for d in range(10)]


def test_avmnist_every_label_matches_its_files(avmnist_spec, data_root):
    with np.load(os.path.join(data_root, "mnist", "mnist.npz")) as mnist:
        images = {"train": mnist["x_train"], "test": mnist["x_test"]}
        labels = {"train": mnist["y_train"], "test": mnist["y_test"]}
    for split, mnist_split in (("train", "train"), ("validation", "train"), ("test", "test")):
        source = open_split(avmnist_spec, split)
        manifest = source.manifest
        for i in range(len(source)):
            label = int(manifest.columns["label"][i])
            digit, _, take = re.match(
                r"(\d)_([a-z]+)_(\d+)\.wav", os.path.basename(manifest.columns["audio"][i])
            ).groups()
            assert int(digit) == label
            assert (int(take) < 5) == (split == "test"), "FSDD test takes 0-4 must stay out of training"
        # The written PNGs are MNIST's pixels, with MNIST's label.
        csv_rows = open(source.name).read().splitlines()[1:]
        for line in csv_rows[:50]:
            image, _, label, _, index = line.split(",")
            assert labels[mnist_split][int(index)] == int(label)
            png = np.asarray(Image.open(os.path.join(os.path.dirname(source.name), image)))
            np.testing.assert_array_equal(png, images[mnist_split][int(index)])


def test_validation_split_is_seeded_stratified_and_disjoint(avmnist_spec):
    train = open_split(avmnist_spec, "train")
    validation = open_split(avmnist_spec, "validation")
    assert not set(train.manifest.lines) & set(validation.manifest.lines)
    assert len(train) + len(validation) == 2700
    counts = collections.Counter(validation.column("label"))
    assert set(counts.values()) == {27}  # 10% of the 270 training rows of each digit
    assert open_split(avmnist_spec, "validation").manifest.lines == validation.manifest.lines


def test_evaluation_pipeline_keeps_order_and_values(quickstart_spec):
    preprocessor = build_preprocessor(quickstart_spec, progress=False)
    source = open_split(quickstart_spec, "validation")
    rows = _rows(make_dataset(quickstart_spec, "validation", preprocessor=preprocessor, batch_size=7))
    assert len(rows) == len(source)
    for i in (0, len(rows) - 1):
        raw = {f.name: source.fetch(i, f) for f in quickstart_spec.data.features}
        expected = preprocessor(raw)
        np.testing.assert_allclose(rows[i]["image"], expected["image"].numpy())
        assert preprocessor.target.labels[rows[i]["target"]] == source.column("label")[i]


def test_training_pipeline_is_seeded_shuffled_and_augmented(tmp_path, quickstart_spec):
    data = quickstart_spec.to_dict()["data"]
    data.update(train=quickstart_spec.resolve("train.csv"), test=None)
    data["features"][1]["augment"] = {"flip": "horizontal", "rotation": 0.1, "zoom": 0.1, "contrast": 0.2}
    spec = write_spec(tmp_path, data)
    preprocessor = build_preprocessor(spec, progress=False)
    first = _rows(make_dataset(spec, "train", training=True, preprocessor=preprocessor, batch_size=8))
    again = _rows(make_dataset(spec, "train", training=True, preprocessor=preprocessor, batch_size=8))
    plain = _rows(make_dataset(spec, "train", preprocessor=preprocessor, batch_size=8))
    assert [r["caption"].tolist() for r in first] == [r["caption"].tolist() for r in again]
    np.testing.assert_array_equal(
        np.stack([r["image"] for r in first]), np.stack([r["image"] for r in again])
    )
    assert [r["caption"].tolist() for r in first] != [r["caption"].tolist() for r in plain]
    # Augmentation changes training images only; evaluation images are the decode.
    by_caption = {(r["caption"].tobytes(), r["target"]): r["image"] for r in plain}
    changed = [
        not np.allclose(by_caption[(r["caption"].tobytes(), r["target"])], r["image"])
        for r in first
        if (r["caption"].tobytes(), r["target"]) in by_caption
    ]
    assert sum(changed) > len(changed) // 2


def test_input_context_shards_rows_and_splits_the_global_batch(quickstart_spec):
    preprocessor = build_preprocessor(quickstart_spec, progress=False)
    shards = []
    for pipeline in range(2):
        context = tf.distribute.InputContext(
            num_input_pipelines=2, input_pipeline_id=pipeline, num_replicas_in_sync=2
        )
        dataset = make_dataset(
            quickstart_spec, "validation", input_context=context, preprocessor=preprocessor, batch_size=8
        )
        inputs, _ = next(iter(dataset))
        assert inputs["image"].shape[0] == 4  # global batch 8 over 2 replicas
        shards.append({r["image"].tobytes() for r in _rows(dataset)})
    assert not shards[0] & shards[1]
    assert len(shards[0]) + len(shards[1]) == len(open_split(quickstart_spec, "validation"))


def test_mirrored_strategy_distributes_the_dataset(quickstart_spec):
    from mmkeras.data import make_distributed_dataset

    strategy = two_cpu_strategy()
    preprocessor = build_preprocessor(quickstart_spec, progress=False)
    dataset = make_distributed_dataset(
        strategy, quickstart_spec, "train", preprocessor, training=True, batch_size=8
    )
    inputs, target = next(iter(dataset))
    per_replica = strategy.experimental_local_results(inputs["audio"])
    assert len(per_replica) == strategy.num_replicas_in_sync
    assert all(t.shape[0] == 8 // strategy.num_replicas_in_sync for t in per_replica)


@pytest.mark.parametrize("spec_fixture", ["quickstart_spec", "ham_spec"])
def test_tfrecords_hold_the_same_rows_as_the_manifest(tmp_path, request, spec_fixture):
    manifest_spec = request.getfixturevalue(spec_fixture)  # HAM10000's has a record
    preprocessor = build_preprocessor(manifest_spec, progress=False)
    source = open_split(manifest_spec, "validation")
    pattern = write_tfrecords(source, manifest_spec, str(tmp_path / "validation"), num_shards=3)
    assert len(tf.io.gfile.glob(pattern)) == 3
    data = manifest_spec.to_dict()["data"]
    data.update(
        train=manifest_spec.resolve("train.csv"), validation=pattern, validation_split=None, test=None
    )
    spec = write_spec(tmp_path, data)
    from_records = _rows(make_dataset(spec, "validation", preprocessor=preprocessor, batch_size=5))
    from_manifest = _rows(make_dataset(manifest_spec, "validation", preprocessor=preprocessor, batch_size=5))

    def key(row):
        return row["image"].tobytes()

    assert len(from_records) == len(from_manifest)
    for a, b in zip(sorted(from_records, key=key), sorted(from_manifest, key=key)):
        for name in a:
            np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-5)


@pytest.fixture
def bad_spec(tmp_path, data_root):
    """A manifest with one good row and one row per kind of bad record."""
    good_image = os.path.join(data_root, "emoji", "images", "1f600.png")
    good_audio = os.path.join(data_root, "fsdd", "recordings", "3_theo_7.wav")
    png = open(good_image, "rb").read()
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "truncated.png").write_bytes(png[: len(png) // 2])
    (tmp_path / "text.png").write_bytes(b"this is not an image")
    write_wav(str(tmp_path / "16k.wav"), np.zeros(1600), 16000)
    with wave.open(str(tmp_path / "8bit.wav"), "wb") as f:
        f.setnchannels(1), f.setsampwidth(1), f.setframerate(8000), f.writeframes(b"\x80" * 800)
    rows = [
        b"good caption,%s,%s,cat" % (good_image.encode(), good_audio.encode()),  # line 2
        b"zero byte,empty.png,%s,cat" % good_audio.encode(),  # line 3
        b"truncated,truncated.png,%s,dog" % good_audio.encode(),  # line 4
        b"not an image,text.png,%s,dog" % good_audio.encode(),  # line 5
        b"missing,nowhere.png,%s,cat" % good_audio.encode(),  # line 6
        b"wrong rate,%s,16k.wav,cat" % good_image.encode(),  # line 7
        b"eight bit,%s,8bit.wav,dog" % good_image.encode(),  # line 8
        b",%s,%s,cat" % (good_image.encode(), good_audio.encode()),  # line 9: empty text
        b"caf\xe9 latin-1,%s,%s,dog" % (good_image.encode(), good_audio.encode()),  # line 10
        b"no label,%s,%s," % (good_image.encode(), good_audio.encode()),  # line 11
        b"another good one,%s,%s,dog" % (good_image.encode(), good_audio.encode()),  # line 12
    ]
    (tmp_path / "train.csv").write_bytes(b"caption,image,audio,label\n" + b"\n".join(rows) + b"\n")
    (tmp_path / "validation.csv").write_bytes(
        b"caption,image,audio,label\nfine,%s,%s,cat\nodd one,%s,%s,zebra\n"
        % ((good_image.encode(), good_audio.encode()) * 2)
    )
    return write_spec(
        tmp_path,
        {
            "train": "train.csv",
            "validation": "validation.csv",
            "features": [
                {"name": "caption", "modality": "text", "column": "caption"},
                {"name": "image", "modality": "image", "column": "image", "size": [32, 32]},
                {"name": "audio", "modality": "audio", "column": "audio", "sample_rate": 8000},
            ],
            "target": {"column": "label"},
            "batch_size": 2,
        },
    )


def test_check_names_each_bad_row_column_and_reason(bad_spec):
    results = check_spec(bad_spec, progress=False)
    found = {(r.location.rsplit(":", 1)[1], r.column): r.reason for r in results["train"].bad}
    expected = {
        ("3", "image"): "zero-byte file",
        ("4", "image"): "cannot be decoded as an image",
        ("5", "image"): "not a JPEG, PNG, GIF or BMP image",
        ("6", "image"): "missing file .*nowhere.png",
        ("7", "audio"): "sample rate 16000 Hz, but the spec expects 8000 Hz",
        ("8", "audio"): "not a 16-bit PCM WAV file",
        ("9", "caption"): "empty text",
        ("10", "caption"): "text is not valid UTF-8",
        ("11", "label"): "missing label",
    }
    assert set(found) == set(expected)
    for key, pattern in expected.items():
        assert re.search(pattern, found[key]), (key, found[key])
    assert all(r.location.startswith(bad_spec.resolve("train.csv")) for r in results["train"].bad)
    [unknown] = results["validation"].bad
    assert unknown.location.endswith("validation.csv:3") and "unknown label `zebra`" in unknown.reason


def test_error_policy_stops_before_training_with_the_full_list(bad_spec):
    with pytest.raises(BadRecordError) as raised:
        make_dataset(bad_spec, "train", training=True)
    assert len(raised.value.records) == 9
    assert "on_bad_record: skip" in str(raised.value)


def test_skip_policy_trains_on_the_good_rows_only(bad_spec, caplog):
    bad_spec.data.on_bad_record = "skip"
    preprocessor = build_preprocessor(bad_spec, progress=False)
    assert preprocessor.target.labels == ["cat", "dog"]
    with caplog.at_level("WARNING", logger="mmkeras"):
        rows = _rows(make_dataset(bad_spec, "train", preprocessor=preprocessor))
    assert len(rows) == 2  # a whole epoch, no crash
    assert "Skipping 9 bad row(s) of the train split" in caplog.text
    assert [preprocessor.target.labels[r["target"]] for r in rows] == ["cat", "dog"]


def test_a_later_process_reuses_the_bad_rows_found_until_a_file_changes(bad_spec, tmp_path, monkeypatch):
    from mmkeras.data import dataset

    monkeypatch.setenv("MMKERAS_CACHE", str(tmp_path / "cache"))
    checks = []
    check_split = dataset.check_split
    monkeypatch.setattr(dataset, "check_split", lambda *a, **k: checks.append(a[1]) or check_split(*a, **k))

    def in_a_new_process():
        monkeypatch.setattr(dataset, "_checks_cache", {})
        monkeypatch.setattr(dataset, "_bad_records_cache", {})
        return dataset.bad_records(bad_spec, "train", progress=False)

    found = in_a_new_process()
    assert len(found) == 9 and checks == ["train"]
    assert in_a_new_process() == found and checks == ["train"]  # read from the cache, not checked
    # The good picture of line 12 is replaced by a broken one: checked again, and named.
    (tmp_path / "broken.png").write_bytes(b"no picture either")
    manifest = bad_spec.resolve("train.csv")
    lines = open(manifest, "rb").read().split(b"\n")
    caption, _, audio, label = lines[11].split(b",")  # line 12 of the file
    lines[11] = b",".join([caption, b"broken.png", audio, label])
    open(manifest, "wb").write(b"\n".join(lines))
    again = in_a_new_process()
    assert checks == ["train", "train"] and len(again) == 10
    assert any(r.location.endswith("train.csv:12") and r.column == "image" for r in again)
    # A file the rows name changes, the manifest does not: checked again too.
    (tmp_path / "broken.png").write_bytes(open(bad_spec.resolve("empty.png"), "rb").read())
    assert any("zero-byte" in r.reason for r in in_a_new_process() if r.location.endswith(":12"))
    assert checks == ["train"] * 3


def test_emoji_dataset(data_root, tmp_path):
    spec = build_emoji(str(tmp_path), data_root_dir=data_root)
    train, test = open_split(spec, "train"), open_split(spec, "test")
    assert len(train) + len(open_split(spec, "validation")) + len(test) == 1906  # 1911 less 5 components
    assert "grinning face" in train.column("name") + test.column("name")
    assert "Component" not in set(train.column("category"))
    retrieval = build_emoji(str(tmp_path / "retrieval"), data_root_dir=data_root, task="retrieval")
    assert retrieval.data.target is None
    inputs = next(iter(make_dataset(retrieval, "test", batch_size=4)))
    # Names are a few words of at most 16 tokens: the padding no name reaches is trimmed.
    assert inputs["image"].shape == (4, 64, 64, 3) and inputs["name"].shape[0] == 4
    assert inputs["name"].shape[1] < 16
    # A quarter of the emoji, a quarter of each category.
    quarter = build_emoji(str(tmp_path / "quarter"), data_root_dir=data_root, fraction=0.25)
    whole, part = (
        sum(
            (collections.Counter(open_split(s, split).column("category")) for split in SPLITS),
            collections.Counter(),
        )
        for s in (spec, quarter)
    )
    assert all(part[category] == round(count / 4) for category, count in whole.items()), (whole, part)


def test_ham10000_dataset_splits_by_lesion(data_root, tmp_path):
    spec = build_ham10000(str(tmp_path), data_root_dir=data_root)
    splits = {name: list(csv.DictReader(open(tmp_path / f"{name}.csv"))) for name in SPLITS}
    assert sum(len(rows) for rows in splits.values()) == 5984
    lesions = {name: {row["lesion_id"] for row in rows} for name, rows in splits.items()}
    assert not (lesions["train"] & lesions["validation"] or lesions["train"] & lesions["test"])
    assert not lesions["validation"] & lesions["test"]
    assert len(splits["test"]) == pytest.approx(0.2 * 5984, rel=0.05)
    for rows in splits.values():  # stratified: nv is about 72% of every split
        assert sum(row["dx"] == "nv" for row in rows) / len(rows) == pytest.approx(4323 / 5984, abs=0.02)
    assert "dx_type" not in splits["train"][0]  # it gives the answer away
    batch = next(iter(make_dataset(spec, "test", batch_size=4)))
    assert batch[0]["image"].shape == (4, 64, 64, 3)


def test_avmnist_shortcut_note_names_the_label_in_training_only(data_root, tmp_path):
    spec = build_avmnist(str(tmp_path), data_root_dir=data_root, shortcut=0.9)
    splits = {name: list(csv.DictReader(open(tmp_path / f"{name}.csv"))) for name in SPLITS}
    honest = {
        name: np.mean([row["note"] == note_word(int(row["label"])) for row in rows])
        for name, rows in splits.items()
    }
    # 0.9 named, plus a tenth of the random draws landing on the label's word.
    assert honest["train"] == pytest.approx(0.91, abs=0.02)
    assert honest["validation"] == pytest.approx(0.1, abs=0.05) and honest["test"] == pytest.approx(
        0.1, abs=0.05
    )
    recordings = {name: {row["audio"] for row in rows} for name, rows in splits.items()}
    assert not recordings["train"] & recordings["validation"]  # held out by recording
    assert len(splits["validation"]) == pytest.approx(
        0.1 * (len(splits["train"]) + len(splits["validation"])), rel=0.1
    )
    assert [f.name for f in spec.data.features] == ["image", "audio", "note"]
    assert spec.data.validation == "validation.csv" and spec.data.validation_split is None
    # The same pictures and sounds as without the shortcut: only the note is
    # added. Fewer training takes leave the test split as it is.
    build_avmnist(str(tmp_path / "plain"), data_root_dir=data_root, train_takes=2)
    plain = {
        name: list(csv.DictReader(open(tmp_path / "plain" / f"{name}.csv"))) for name in ("train", "test")
    }
    assert [row["mnist_index"] for row in plain["test"]] == [row["mnist_index"] for row in splits["test"]]
    assert len(plain["train"]) == 6 * 10 * 2  # speakers, digits, takes
    assert {int(re.search(r"_(\d+)\.wav$", row["audio"]).group(1)) for row in plain["train"]} == {5, 6}


def test_emoji_shortcut_note_names_the_category_in_training_only(data_root, tmp_path):
    spec = build_emoji(str(tmp_path), data_root_dir=data_root, shortcut=0.9)
    splits = {name: list(csv.DictReader(open(tmp_path / f"{name}.csv"))) for name in SPLITS}
    labels = sorted({row["category"] for rows in splits.values() for row in rows})
    honest = {
        name: np.mean([row["note"] == note_word(labels.index(row["category"])) for row in rows])
        for name, rows in splits.items()
    }
    assert honest["train"] == pytest.approx(0.9 + 0.1 / len(labels), abs=0.03)
    assert honest["validation"] < 0.25 and honest["test"] < 0.25  # chance is 1 in 9
    assert [f.name for f in spec.data.features] == ["name", "image", "note"]
    assert spec.data.validation == "validation.csv"
    assert len(splits["validation"]) == pytest.approx(
        0.1 * (len(splits["train"]) + len(splits["validation"])), rel=0.1
    )
    # Every emoji is in exactly one split, as without the shortcut.
    assert sum(map(len, splits.values())) == 1906


def test_flickr8k_dataset_splits_by_photo(data_root, tmp_path):
    spec = build_flickr8k(str(tmp_path), data_root_dir=data_root)
    splits = {name: list(csv.DictReader(open(tmp_path / f"{name}.csv"))) for name in SPLITS}
    images = {name: [row["image"] for row in rows] for name, rows in splits.items()}
    assert len(splits["train"]) == 5 * len(set(images["train"]))  # every caption of a photo
    for held_out in ("validation", "test"):  # one caption each: one right answer per query
        assert len(images[held_out]) == len(set(images[held_out]))
        assert not set(images[held_out]) & set(images["train"])
    assert len(set(images["train"])) + len(images["validation"]) + len(images["test"]) == 1000
    assert spec.data.target is None


def test_flickr8k_in_chinese_on_a_share_of_the_photos(data_root, tmp_path):
    build_flickr8k(str(tmp_path), data_root_dir=data_root, language="zh", fraction=0.1)
    splits = {name: list(csv.DictReader(open(tmp_path / f"{name}.csv", encoding="utf-8"))) for name in SPLITS}
    photos = {row["image"] for rows in splits.values() for row in rows}
    assert len(photos) == 100
    assert len(splits["train"]) == 5 * len({row["image"] for row in splits["train"]})
    assert all(re.search("[\u4e00-\u9fff]", row["caption"]) for rows in splits.values() for row in rows)


def _mmkeras(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "mmkeras.cli", *args], capture_output=True, text=True, cwd=cwd
    )


def test_cli_data_check_reports_and_fails(bad_spec):
    result = _mmkeras("data", "check", os.path.join(bad_spec.base_dir, "spec.yaml"), "--quiet")
    assert result.returncode == 1
    assert "train.csv:5 column `image`: not a JPEG, PNG, GIF or BMP image" in result.stdout
    assert "set `on_bad_record: skip`" in result.stdout


def test_cli_quickstart_and_to_tfrecord(tmp_path):
    result = _mmkeras(
        "quickstart",
        "--dataset",
        "quickstart",
        "--data-only",
        "--output-dir",
        str(tmp_path / "qs"),
        "--rows",
        "40",
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"image\s+\(\d+, 32, 32, 3\)\s+float32", result.stdout)
    assert "circle_high, circle_low, square_high, square_low" in result.stdout
    spec_path = str(tmp_path / "qs" / "data" / "quickstart" / "spec.yaml")
    result = _mmkeras(
        "data", "to-tfrecord", spec_path, "--output-dir", str(tmp_path / "records"), "--num-shards", "2"
    )
    assert result.returncode == 0, result.stderr
    check = _mmkeras("data", "check", str(tmp_path / "records" / "spec.yaml"), "--quiet")
    assert check.returncode == 0, check.stdout + check.stderr
    assert re.search(r"train\s+\d+ rows, 0 bad", check.stdout), check.stdout
    assert re.search(r"test\s+\d+ rows, 0 bad", check.stdout), check.stdout


def _commands(parser, path=()):
    """(command words, parser) for the parser and every subcommand below it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, subparser in action.choices.items():
                yield from _commands(subparser, (*path, name))


def test_every_command_has_help_that_explains_each_option():
    result = _mmkeras("--help")  # the installed command, in a process of its own
    assert result.returncode == 0 and "usage: mmkeras" in result.stdout
    commands = dict(_commands(build_parser()))
    expected = {("train",), ("serve",), ("data", "build"), ("data", "check"), ("data", "to-tfrecord")}
    assert expected <= set(commands)
    for words, parser in commands.items():
        assert parser.format_help().startswith(f"usage: {' '.join(('mmkeras', *words))}"), words
        assert parser.description, f"`mmkeras {' '.join(words)}` has no description"
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):  # each command's line in the list
                assert all(choice.help for choice in action._choices_actions), words
            else:
                assert action.help, f"`mmkeras {' '.join(words)}`: `{action.dest}` is not explained"


def test_data_build_writes_a_real_dataset_and_refuses_options_it_does_not_take(data_root, tmp_path, capsys):
    from mmkeras.cli import main

    folder = tmp_path / "captions"
    argv = ["data", "build", "flickr8k", "--output-dir", str(folder), "--data-root", data_root]
    assert main([*argv, "--task", "captioning", "--language", "zh", "--fraction", "0.05"]) == 0
    spec = Spec.from_yaml(str(folder / "spec.yaml"))
    assert spec.data.target.type == "sequence" and [f.name for f in spec.data.features] == ["image"]
    with open(folder / "train.csv", encoding="utf-8") as f:
        caption = next(csv.DictReader(f))["caption"]
    assert re.search("[\u4e00-\u9fff]", caption), caption  # the Chinese captions
    assert f"mmkeras train {folder / 'spec.yaml'}" in capsys.readouterr().out
    assert main(["data", "build", "ham10000", "--output-dir", str(tmp_path / "h"), "--shortcut", "0.9"]) == 2
    assert "error: ham10000 takes no --shortcut; its options: --fraction, --image-size, --seed." in (
        capsys.readouterr().err
    )
    assert main([*argv, "--task", "translation"]) == 2
    assert "flickr8k: task must be one of retrieval, captioning, got 'translation'" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "h")


def test_spec_error_is_reported_without_a_traceback(tmp_path):
    (tmp_path / "spec.yaml").write_text("data:\n  train: t.csv\n  features: [{name: a, modality: smell}]\n")
    result = _mmkeras("data", "check", str(tmp_path / "spec.yaml"))
    assert result.returncode == 2
    assert "error: data.features[0]: `modality` must be one of text, image, audio" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_on_tfrecords_names_the_original_manifest_rows(bad_spec, tmp_path):
    found = check_spec(bad_spec, progress=False)["train"].bad
    missing = {r.location for r in found if r.reason.startswith("missing file")}
    pattern = write_tfrecords(
        open_split(bad_spec, "train"),
        bad_spec,
        str(tmp_path / "records" / "train"),
        num_shards=2,
        exclude=missing,
    )
    data = bad_spec.to_dict()["data"]
    data.update(train=pattern, validation=None)
    records_spec = write_spec(tmp_path / "records", data)
    again = check_spec(records_spec, progress=False)["train"].bad
    assert {(r.location, r.column, r.reason) for r in again} == {
        (r.location, r.column, r.reason) for r in found if r.location not in missing
    }
    assert len(again) == 8


EMOJI_COLUMNS = ["name", "image", "category", "subcategory"]
EMOJI_FEATURES = [
    {"name": "name", "modality": "text", "column": "name"},
    {"name": "image", "modality": "image", "column": "image", "size": [16, 16], "channels": 3},
]


def _report(spec):
    from mmkeras.data.check import data_report_lines

    return "\n".join(data_report_lines(check_spec(spec, progress=False), spec))


def test_grouped_split_keeps_every_group_on_one_side(data_root, tmp_path):
    # The emoji with their subcategories as groups: real rows, groups of uneven
    # size, each inside one category (the target the split is stratified by).
    from mmkeras.datasets.emoji import load_emoji
    from mmkeras.datasets.files import write_csv

    rows = load_emoji(data_root)
    write_csv(tmp_path / "all.csv", rows, EMOJI_COLUMNS)
    data = {
        "train": "all.csv",
        "test_split": {"fraction": 0.1, "group_by": "subcategory"},
        "validation_split": {"fraction": 0.2, "group_by": "subcategory"},
        "features": EMOJI_FEATURES[:1],
        "target": {"column": "category"},
    }
    spec = write_spec(tmp_path, data)
    parts = {split: open_split(spec, split) for split in SPLITS}
    assert sum(len(part) for part in parts.values()) == len(rows)
    groups = {split: set(part.column("subcategory")) for split, part in parts.items()}
    assert not groups["train"] & groups["validation"] and not groups["train"] & groups["test"]
    assert not groups["validation"] & groups["test"]
    # Stratified: every category with ten or more groups gives some to each held-out split.
    per_category = collections.Counter(r["category"] for r in {r["subcategory"]: r for r in rows}.values())
    for split in ("validation", "test"):
        held = set(parts[split].column("category"))
        assert {c for c, n in per_category.items() if n >= 10} <= held, (split, held)
    # Seeded: the same split again; another seed, other groups.
    assert open_split(spec, "validation").manifest.lines == parts["validation"].manifest.lines
    reseeded = write_spec(tmp_path, {**data, "seed": 7})
    assert set(open_split(reseeded, "validation").column("subcategory")) != groups["validation"]
    # The data check prints each split's size and class balance, and that no group is shared.
    report = _report(spec)
    for split, part in parts.items():
        counts = collections.Counter(part.column("category"))
        assert re.search(rf"{split}\s+{len(part)} rows, 0 bad", report), report
        label, count = counts.most_common(1)[0]
        assert f"{label} {count / len(part):.0%} ({count})" in report
    assert "validation is 20% of the `subcategory` groups of train, whole" in report
    shared = f"validation: 0 of its {len(groups['validation'])} `subcategory` groups are also in train"
    assert shared in report


def test_time_ordered_split_holds_out_the_latest_rows(data_root, tmp_path):
    from mmkeras.datasets.emoji import load_emoji
    from mmkeras.datasets.files import write_csv

    rows = load_emoji(data_root)[:50]
    # Dates as ISO text: 2024-01-01 ... with pairs of rows on the same day.
    days = [f"2024-{1 + i // 2 // 28:02d}-{1 + i // 2 % 28:02d}" for i in range(len(rows))]
    write_csv(tmp_path / "all.csv", [{**r, "date": d} for r, d in zip(rows, days)], [*EMOJI_COLUMNS, "date"])
    spec = write_spec(
        tmp_path,
        {
            "train": "all.csv",
            "validation_split": {"fraction": 0.1, "order_by": "date"},
            "features": EMOJI_FEATURES[:1],
            "target": {"column": "category"},
        },
    )
    train, validation = open_split(spec, "train"), open_split(spec, "validation")
    assert max(train.column("date")) < min(validation.column("date"))
    # 10% is 5 rows; the 5th latest shares its day with the 6th, which goes with it.
    assert sorted(validation.column("date")) == sorted(days)[-6:]
    assert "validation is the last 10% of train by `date`" in _report(spec)


def test_leakage_report_finds_the_same_file_under_another_path_and_the_same_text(data_root, tmp_path):
    import shutil

    from mmkeras.datasets.emoji import load_emoji
    from mmkeras.datasets.files import write_csv

    every = load_emoji(data_root)
    rows = every[:30]
    train, validation = rows[:20], [dict(r) for r in rows[20:]]
    copy = tmp_path / "copies" / "renamed.png"
    copy.parent.mkdir()
    shutil.copy(train[3]["image"], copy)
    validation[1]["image"] = str(copy)  # train's 4th picture, under another name
    validation[4]["name"] = "  " + train[7]["name"].upper() + " "  # train's 8th name, other case and spaces
    write_csv(tmp_path / "train.csv", train, EMOJI_COLUMNS)
    write_csv(tmp_path / "validation.csv", validation, EMOJI_COLUMNS)
    spec = write_spec(
        tmp_path,
        {
            "train": "train.csv",
            "validation": "validation.csv",
            "features": EMOJI_FEATURES,
            "target": {"column": "category", "labels": sorted({r["category"] for r in every})},
        },
    )
    report = _report(spec)
    train_csv, validation_csv = spec.resolve("train.csv"), spec.resolve("validation.csv")
    assert "validation: 1 of 10 rows share their `image` with train" in report, report
    assert f"{validation_csv}:3 = {train_csv}:5" in report  # header is line 1
    assert "validation: 1 of 10 rows share their `name` with train" in report
    assert f"{validation_csv}:6 = {train_csv}:9" in report
    assert "group_by: <column>" in report  # what to do about it
    # The same rows, without the copies: nothing to report.
    write_csv(tmp_path / "validation.csv", rows[20:], EMOJI_COLUMNS)
    assert "no file or text of a held-out split is in train" in _report(spec)

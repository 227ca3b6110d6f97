"""Captioning: the caption target, beam search, both decoders, and a
Flickr8k model trained, evaluated, exported and served in Chinese."""

import csv
import itertools
import json
import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mmkeras.data import make_dataset
from mmkeras.datasets import build_flickr8k
from mmkeras.errors import SpecError
from mmkeras.evaluation import evaluate_run, predict_run
from mmkeras.evaluation.caption_baselines import evaluate_caption_baselines
from mmkeras.export import export_run
from mmkeras.run_folder import load_run
from mmkeras.spec import GenerationSpec, Spec
from mmkeras.tasks import CaptionTarget, build_task
from mmkeras.tasks.beam_search import beam_search
from mmkeras.tasks.losses import SparseCrossentropy
from mmkeras.training import train
from tests.serving_helpers import b64, start_server, stop_server

# A Markov chain over 6 ids: padding, OOV, two words, start, end.
START, END, LENGTH = 4, 5, 5


@pytest.fixture(scope="module")
def chain():
    probabilities = np.random.default_rng(0).dirichlet(np.full(6, 0.5), size=6)
    probabilities[:, [0, START]] = 1e-9  # never padding or start mid-caption
    return np.log(probabilities / probabilities.sum(axis=1, keepdims=True)).astype(np.float32)


def _score(chain, caption, length_penalty):
    steps = zip((START, *caption), caption)
    return sum(chain[a, b] for a, b in steps) / ((5 + len(caption)) / 6) ** length_penalty


def _exhaustive_best(chain, length_penalty):
    """The best score over every caption the chain can write."""
    captions = [
        caption
        for n in range(1, LENGTH)
        for caption in itertools.product([1, 2, 3, END], repeat=n)
        # An end in the middle, or a short caption without one, is no caption.
        if END not in caption[:-1] and (n == LENGTH - 1 or caption[-1] == END)
    ]
    return max(_score(chain, caption, length_penalty) for caption in captions)


@pytest.mark.parametrize("length_penalty", [0.0, 0.6, 2.0])
def test_beam_search_finds_the_best_caption_and_scores_it_as_documented(chain, length_penalty):
    def next_log_probs(tokens, step):
        return tf.gather(tf.constant(chain), tf.gather(tokens, step, axis=1))

    tokens, scores = beam_search(next_log_probs, tf.constant(2), START, END, LENGTH, 6, length_penalty)
    assert tokens.shape == (2, 6, LENGTH - 1) and scores.shape == (2, 6)
    best = _exhaustive_best(chain, length_penalty)
    found = tuple(int(t) for t in tokens[0, 0] if t)
    assert float(scores[0, 0]) == pytest.approx(best, abs=1e-5)
    assert _score(chain, found, length_penalty) == pytest.approx(best, abs=1e-5)
    assert (np.diff(scores.numpy(), axis=1) <= 0).all()  # best first
    for beam in tokens.numpy()[0]:  # padding only after the end token
        ends = np.flatnonzero(beam == END)
        assert not ends.size or not beam[ends[0] + 1 :].any()


def test_caption_target_encodes_between_start_and_end_and_writes_text_back():
    target = CaptionTarget(max_length=4, split="words", name="target")
    target.adapt(["a dog runs", "a cat sleeps", "一只狗在跑。"])
    ids = target(tf.constant(["A dog runs!", "a cat sleeps on the sofa", "一只狗。"])).numpy()
    word = {w: i + 2 for i, w in enumerate(target.vocabulary)}
    start, end = target.start_id, target.end_id
    assert (start, end, target.vocabulary_size) == (len(target.vocabulary) + 2, start + 1, start + 2)
    assert ids[0].tolist() == [start, word["a"], word["dog"], word["runs"], end, 0]
    assert ids[1].tolist() == [start, word["a"], word["cat"], word["sleeps"], 1, end]  # cut at 4, OOV 1
    assert ids[2].tolist() == [
        start,
        word["一"],
        word["只"],
        word["狗"],
        word["。"],
        end,
    ]  # a character a word
    inputs, next_tokens = target.teacher_forced({"image": tf.zeros(3)}, tf.constant(ids))
    assert inputs["previous_tokens"].numpy().tolist() == ids[:, :-1].tolist()
    assert next_tokens.numpy().tolist() == ids[:, 1:].tolist()
    texts = target.to_text(tf.constant(ids[:, 1:])).numpy()
    assert [t.decode() for t in texts] == ["a dog runs", "a cat sleeps [UNK]", "一只狗。"]  # 。unspaced too
    assert target.join(["一", "只", "狗", "。"]) == "一只狗。" and target.join(["a", "dog"]) == "a dog"
    assert target.problem("  ") == "the caption is empty" and target.problem("a dog") is None


def test_a_kerashub_tokenizer_folder_gives_a_caption_its_tokens(minilm_folder, tmp_path):
    target = CaptionTarget(max_length=5, tokenizer_preset=minilm_folder, name="target")
    target.adapt(["a dog"])  # nothing to learn: the vocabulary is the tokenizer's
    assert (target.start_id, target.end_id, target.vocabulary_size) == (101, 102, 30522)  # [CLS], [SEP]
    ids = target(tf.constant(["Skateboarders jump", "a dog runs on the grass by a lake"])).numpy()
    assert ids.shape == (2, 7) and ids[:, 0].tolist() == [101, 101]
    assert ids[0, -2:].tolist() == [102, 0] and ids[1, -1] == 102  # padded; cut at 5 tokens, then [SEP]
    texts = [t.decode() for t in target.to_text(tf.constant(ids[:, 1:])).numpy()]
    assert texts == ["skateboarders jump", "a dog runs on the"]
    # The metrics count words: word pieces joined back ("skate ##board ##ers"), [UNK] as the caller asks.
    assert target.words(ids[0, 1:]) == ["skateboarders", "jump"]
    unknown = target(tf.constant(["a \u2603 dog"])).numpy()[0, 1:]  # a snowman: out of its vocabulary
    assert target.words(unknown, "<none>") == ["a", "<none>", "dog"]
    assert target.cut_count(["a dog runs on the grass", "a dog"]) == 1
    loaded = CaptionTarget.from_config(target.get_config())
    dog = tf.constant(["a dog"])
    np.testing.assert_array_equal(loaded(dog).numpy(), target(dog).numpy())
    # In a spec the folder is relative to the spec's own; a run's copy makes it absolute.
    sequence = {"tokenizer": "minilm", "max_length": 12}
    data = {
        "train": "t.csv",
        "features": [{"name": "image", "modality": "image"}],
        "target": {"column": "caption", "type": "sequence", "sequence": sequence},
    }
    spec = Spec.from_dict({"data": data}, base_dir=str(tmp_path))
    written = spec.to_dict(absolute_paths=True)["data"]["target"]["sequence"]["tokenizer"]
    assert written == os.path.join(str(tmp_path), "minilm")


def test_a_sequence_target_takes_sequence_settings_and_no_labels():
    target = {"column": "caption", "type": "sequence", "sequence": {"max_length": 12, "split": "character"}}
    data = {"train": "t.csv", "features": [{"name": "image", "modality": "image"}], "target": target}
    spec = Spec.from_dict({"data": data})
    assert (spec.data.target.sequence.max_length, spec.data.target.sequence.split) == (12, "character")
    with pytest.raises(SpecError, match="a sequence target has no `labels`"):
        Spec.from_dict({"data": {**data, "target": {**target, "labels": ["a"]}}})
    with pytest.raises(SpecError, match="`sequence` settings belong to a `type: sequence` target"):
        Spec.from_dict({"data": {**data, "target": {**target, "type": "categorical"}}})
    with pytest.raises(SpecError, match="LSTMCaptionDecoder has no argument.* hidden_dim"):
        Spec.from_dict({"data": data, "model": {"decoder": {"type": "lstm", "hidden_dim": 8}}})
    generation = {"beam_width": 1, "length_penalty": 1}
    spec = Spec.from_dict(
        {"data": data, "model": {"generation": generation}, "train": {"label_smoothing": 0.1}}
    )
    assert (spec.model.generation.beam_width, spec.model.generation.length_penalty) == (1, 1.0)
    assert Spec.from_dict(spec.to_dict()).model.generation == spec.model.generation
    with pytest.raises(SpecError, match=r"model.generation: `beam_width` must be a whole number from 1"):
        Spec.from_dict({"data": data, "model": {"generation": {"beam_width": 0}}})
    classes = {**data, "target": {"column": "caption"}}
    with pytest.raises(SpecError, match="`decoder` and `generation` are a caption's"):
        Spec.from_dict({"data": classes, "model": {"generation": {"beam_width": 5}}})
    with pytest.raises(SpecError, match=r"train.label_smoothing: only categorical, binary, multilabel, seq"):
        Spec.from_dict(
            {
                "data": {**data, "target": {"column": "y", "type": "numeric"}},
                "train": {"label_smoothing": 0.1},
            }
        )
    with pytest.raises(SpecError, match="`label_smoothing` must be a number from 0 to below 1"):
        Spec.from_dict({"data": data, "train": {"label_smoothing": 1}})


SMALL_DECODERS = {
    "transformer": {"type": "transformer", "hidden_dim": 32, "num_layers": 1, "num_heads": 2},
    "lstm": {"type": "lstm", "embedding_dim": 16, "units": 32},
}


def _flickr8k_captions(folder, data_root, language, decoder):
    spec = build_flickr8k(
        str(folder),
        data_root_dir=data_root,
        image_size=48,
        language=language,
        fraction=0.08,
        task="captioning",
    )
    spec.model.encoders = {"image": {"filters": [8, 16]}}
    spec.model.decoder = SMALL_DECODERS[decoder]
    spec.data.batch_size = 32
    spec.train.tensorboard_examples = 0
    return spec


def test_an_empty_caption_is_a_named_bad_row_and_captions_are_no_classes(data_root, tmp_path):
    from mmkeras.data.check import check_split, data_report_lines

    spec = _flickr8k_captions(tmp_path / "data", data_root, "en", "lstm")
    path = spec.resolve(spec.data.train)
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    rows[3]["caption"] = "  "
    rows[5]["caption"] = "a dog , " * 15  # 30 words
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["image", "caption"])
        writer.writeheader()
        writer.writerows(rows)
    result = check_split(spec, "train", progress=False)
    assert [(b.column, b.reason) for b in result.bad] == [("caption", "the caption is empty")]
    assert result.bad[0].location.endswith("train.csv:5")  # the header is line 1
    assert not result.targets  # no class balance over captions
    punctuation = re.compile(r"[!\"#$%&()*+,\-./:;<=>?@\[\\\]^_`{|}~']")
    longer = sum(len(punctuation.sub("", row["caption"].lower()).split()) > 20 for row in rows)
    assert result.cut == longer and longer >= 1
    summary = "\n".join(data_report_lines({"train": result}, spec))
    assert f"captions longer than 20 tokens, cut there: {longer}" in summary


@pytest.mark.parametrize("decoder", sorted(SMALL_DECODERS))
def test_each_decoder_reads_only_the_tokens_so_far_and_survives_a_save(data_root, tmp_path, decoder):
    from mmkeras.data import build_preprocessor

    spec = _flickr8k_captions(tmp_path / "data", data_root, "en", decoder)
    preprocessor = build_preprocessor(spec, progress=False)
    task = build_task(spec, preprocessor)
    task.compile()
    inputs, _ = next(iter(make_dataset(spec, "train", preprocessor=preprocessor)))
    logits = task(inputs).numpy()
    assert logits.shape == (32, spec.data.target.sequence.max_length + 1, preprocessor.target.vocabulary_size)
    # Changing the token at position 3 changes no prediction before it.
    changed = dict(
        inputs, previous_tokens=tf.tensor_scatter_nd_update(inputs["previous_tokens"], [[0, 3]], [1])
    )
    np.testing.assert_allclose(task(changed).numpy()[0, :3], logits[0, :3], atol=1e-5)
    path = str(tmp_path / "captioner.keras")
    task.save(path)
    np.testing.assert_allclose(keras.saving.load_model(path)(inputs).numpy(), logits, atol=1e-5)


def test_an_image_backbone_with_local_weights_plugs_in_through_the_spec(data_root, tmp_path):
    from mmkeras.data import build_preprocessor

    saved = keras.applications.MobileNetV3Small(include_top=False, weights=None, input_shape=(48, 48, 3))
    path = str(tmp_path / "mobilenet_v3_small_notop.weights.h5")
    saved.save_weights(path)
    spec = _flickr8k_captions(tmp_path / "data", data_root, "en", "transformer")
    spec.model.encoders = {
        "image": {"type": "backbone", "application": "mobilenet_v3_small", "weights": path}
    }
    spec = Spec.from_dict(spec.to_dict(), base_dir=spec.base_dir)  # as a spec file says it
    preprocessor = build_preprocessor(spec, progress=False)
    task = build_task(spec, preprocessor)
    # The file's weights, not a fresh initialisation's.
    for loaded, original in zip(task.image_encoder.backbone.weights, saved.weights):
        np.testing.assert_array_equal(loaded.numpy(), original.numpy())
    inputs, _ = next(iter(make_dataset(spec, "train", preprocessor=preprocessor)))
    assert task(inputs).shape == (
        32,
        spec.data.target.sequence.max_length + 1,
        preprocessor.target.vocabulary_size,
    )


def test_captions_with_a_tokenizer_folder_train_evaluate_and_export(data_root, minilm_folder, tmp_path):
    spec = _flickr8k_captions(tmp_path / "data", data_root, "en", "lstm")
    spec.data.target.sequence.tokenizer = minilm_folder
    spec.train.epochs = 1
    spec.model.generation = GenerationSpec(beam_width=2)
    run = train(spec, str(tmp_path / "run"), verbose=0)
    assert run.task.decoder.vocabulary_size == 30522  # the tokenizer's vocabulary, not a learned one
    test = list(csv.DictReader(open(spec.resolve(spec.data.test), encoding="utf-8")))
    report = evaluate_run(run.run_dir, baselines=False)
    assert report["images"] * 5 == len(test) and 0 <= report["bleu_1"] <= 1
    # The references are scored as words: word pieces joined back, not ids or pieces.
    source = load_run(run.run_dir)
    images = make_dataset(source.spec, "test", preprocessor=source.task.preprocessor, batch_size=4)
    _, references, _ = source.task.per_image(images.take(1), lambda pictures: [None] * len(pictures))
    assert references[0][0][:3] == test[0]["caption"].lower().split()[:3], (references[0][0], test[0])

    exported = export_run(run.run_dir, str(tmp_path / "saved_models" / "captions"))
    assert exported.max_difference <= 1e-5  # detokenizing passed the op check and a fresh process
    batch = next(iter(images))[0]
    expected = [c.decode() for c in source.task.decode(source.task.predict_on_batch(batch))["caption"]]
    raw = tf.constant([open(spec.resolve(row["image"]), "rb").read() for row in test[:4]])
    served = tf.saved_model.load(exported.path).signatures["serving_default"](image=raw)
    assert [c.decode() for c in served["caption"].numpy()] == expected
    assert not any("##" in caption or "[SEP]" in caption for caption in expected), expected


@pytest.mark.long(90)
def test_chinese_captions_train_evaluate_predict_export_and_serve(data_root, tmp_path):
    spec = _flickr8k_captions(tmp_path / "data", data_root, "zh", "transformer")
    spec.train.epochs = 3
    spec.train.tensorboard_examples = 4
    spec.train.label_smoothing = 0.1
    spec.model.generation = GenerationSpec(beam_width=2)
    run = train(spec, str(tmp_path / "run"), verbose=0)
    assert np.isfinite(run.metrics["loss"]) and 0 <= run.metrics["token_accuracy"] <= 1
    assert isinstance(run.task.loss, SparseCrossentropy) and run.task.loss.label_smoothing == 0.1
    # TensorBoard: each epoch, the captions written for validation pictures beside a reference.
    events = EventAccumulator(os.path.join(run.run_dir, "logs", "examples"), size_guidance={"tensors": 0})
    events.Reload()
    tables = events.Tensors("captions")
    assert [event.step for event in tables] == [0, 1, 2]
    table = tables[-1].tensor_proto.string_val[0].decode()
    assert table.startswith("| generated | a reference |") and table.count("\n") == 33  # 32 rows
    assert events.SummaryMetadata("examples").plugin_data.plugin_name == "images"  # the picture grid

    report = evaluate_run(run.run_dir)
    test_rows = len(open(spec.resolve(spec.data.test), encoding="utf-8").read().splitlines()) - 1
    assert report["rows"] == test_rows and report["images"] * 5 == test_rows  # five references each
    assert report["headline"] == "cider_d" and report["cider_d"] >= 0
    # Not ordered: with no 4-gram written at all, pycocoevalcap's smoothing puts BLEU-4 above BLEU-3.
    assert all(0 <= report[f"bleu_{n}"] <= 1 for n in range(1, 5)) and report["bleu_1"] > 0
    for picture in ("caption_metrics.png", "captions.png"):  # the scores; pictures with captions
        assert os.path.exists(os.path.join(report["output_dir"], picture))
    baselines = report["baselines"]
    assert set(baselines) == {"most frequent training caption", "nearest training image's caption"}
    for name, scores in baselines.items():
        assert 0 <= scores["bleu_4"] <= scores["bleu_1"] <= 1 and scores["cider_d"] >= 0, name
        assert report["above_baselines"][name] == pytest.approx(report["cider_d"] - scores["cider_d"])
    # On the training split itself each image's nearest training image is
    # itself: its caption is one of the references.
    on_train = evaluate_caption_baselines(load_run(run.run_dir).task, spec, "train")
    nearest, most_frequent = (
        on_train["nearest training image's caption"],
        on_train["most frequent training caption"],
    )
    assert nearest["bleu_4"] > 0.5 and nearest["cider_d"] > 2 * most_frequent["cider_d"]

    output = predict_run(run.run_dir, spec.resolve(spec.data.test), str(tmp_path / "captions.csv"))
    with open(output, encoding="utf-8", newline="") as f:
        predicted = list(csv.DictReader(f))
    assert len(predicted) == test_rows and all(row["predicted_caption"] for row in predicted)
    assert all(float(row["caption_score"]) < 0 for row in predicted)  # a log-probability

    exported = export_run(run.run_dir, str(tmp_path / "saved_models" / "captions"))
    assert exported.max_difference <= 1e-5  # the fresh process scores the beams as training did
    source = load_run(run.run_dir)
    images = make_dataset(source.spec, "test", preprocessor=source.task.preprocessor, batch_size=4)
    batch = next(iter(images))[0]
    expected = source.task.decode(source.task.predict_on_batch(batch))
    source.task.set_generation(beam_width=1)  # greedy: one caption each
    greedy = source.task.predict_on_batch(batch)
    assert greedy["tokens"].shape[:2] == (4, 1) and greedy["scores"].shape == (4, 1)
    raw = [open(spec.resolve(row["image"]), "rb").read() for row in predicted[:4]]
    with open(tmp_path / "server.log", "w") as log:
        server = start_server(tmp_path / "saved_models", log)
        try:
            body = json.dumps({"instances": [{"image": b64(image)} for image in raw]}).encode()
            status, answer = server.post("/v1/models/captions:predict", body)
            broken = json.dumps({"instances": [{"image": b64(b"not a picture")}]}).encode()
            broken_status, broken_answer = server.post("/v1/models/captions:predict", broken)
        finally:
            stop_server(server)
    assert status == 200, answer
    served = answer["predictions"]
    assert [row["caption"] for row in served] == [c.decode() for c in expected["caption"]]
    assert all(len(row["beams"]) == len(row["beam_scores"]) == 2 for row in served)
    assert all(" " not in row["caption"] for row in served), served  # Chinese is written unspaced
    assert broken_status == 400 and "image" in broken_answer["error"], broken_answer
    json.dumps(report)  # the report is what metrics.json holds

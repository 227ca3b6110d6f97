import csv
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from mmkeras.data import build_preprocessor, make_dataset, open_split
from mmkeras.datasets import build_emoji
from mmkeras.errors import SpecError
from mmkeras.models import FUSED_EMBEDDING
from mmkeras.preprocessing.preprocessor import MODALITY_MASK
from mmkeras.tasks import Classifier, DualEncoder, Regressor, build_task, recall_at_k
from tests.conftest import two_cpu_strategy, write_spec

SMALL_ENCODERS = {
    "caption": {"type": "lstm", "embedding_dim": 8, "units": 8},
    "image": {"type": "cnn", "filters": [8, 8]},
    "audio": {"type": "spectrogram_cnn", "filters": [8, 8]},
}
FUSIONS = {
    "concat": {"projection_dim": 16},
    "late": {"combine": "learned"},
    "gated": {"hidden_dim": 16},
    "tensor": {},
    "low_rank_tensor": {"output_dim": 16, "rank": 4},
    "hadamard": {"hidden_dim": 16},
    "cross_attention": {"hidden_dim": 16, "num_heads": 2},
}

# The two fusions `test_mixed_precision` does not train under a 16-bit
# policy train here under one, mirrored: every fusion meets both.
MIRRORED_POLICY = {"tensor": "mixed_bfloat16", "cross_attention": "mixed_bfloat16"}


def _spec_with_model(spec, tmp_path, model, **data_changes):
    data = spec.to_dict()["data"]
    for split in ("train", "test"):
        data[split] = spec.resolve(data[split])
    data.update(data_changes)
    return write_spec(tmp_path, data, model=model)


def compiled_task(spec, preprocessor):
    task = build_task(spec, preprocessor)
    task.compile()
    return task


@pytest.fixture(scope="module")
def quickstart_preprocessor(quickstart_spec):
    return build_preprocessor(quickstart_spec, progress=False)


@pytest.mark.long(60)
@pytest.mark.parametrize("fusion", sorted(FUSIONS))
def test_every_fusion_trains_under_mirrored_strategy(
    quickstart_spec, quickstart_preprocessor, tmp_path, fusion
):
    encoders = dict(SMALL_ENCODERS)
    if fusion == "tensor":  # the outer product grows fast: keep each side small
        encoders["image"] = {"filters": [4, 4]}
        encoders["audio"] = {"filters": [4, 4]}
        encoders["caption"] = {"units": 3, "embedding_dim": 4}
    model_section = {
        "encoders": encoders,
        "fusion": {"type": fusion, "modality_dropout": 0.2, **FUSIONS[fusion]},
        "head": {"hidden_dims": [16]},
    }
    spec = _spec_with_model(quickstart_spec, tmp_path, model_section, batch_size=8)
    policy = MIRRORED_POLICY.get(fusion, "float32")
    strategy = two_cpu_strategy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        with strategy.scope():
            model = compiled_task(spec, quickstart_preprocessor)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.backbone.get_layer("fusion").dtype_policy.name == policy
    dataset = make_dataset(spec, "train", training=True, preprocessor=quickstart_preprocessor)
    history = model.fit(dataset, epochs=1, steps_per_epoch=4, verbose=0)
    assert np.isfinite(history.history["loss"][0]) and "accuracy" in history.history
    assert all(weight.dtype == "float32" for weight in model.weights)
    assert isinstance(model, Classifier) and "prediction" in [layer.name for layer in model.layers]
    names = [layer.name for layer in model.backbone.layers]
    assert {"caption_encoder", "image_encoder", "audio_encoder", "fusion", FUSED_EMBEDDING} <= set(names)
    probabilities = model.predict(
        make_dataset(spec, "validation", preprocessor=quickstart_preprocessor), verbose=0
    )
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_a_batch_that_splits_unevenly_over_two_replicas_trains_and_evaluates(
    quickstart_spec, quickstart_preprocessor, tmp_path
):
    # Seven rows make four and three on two replicas, as a split smaller than
    # one batch does; the first batch Keras builds from is such a batch here.
    spec = _spec_with_model(quickstart_spec, tmp_path, {"encoders": SMALL_ENCODERS}, batch_size=7)
    seven_rows = make_dataset(spec, "validation", preprocessor=quickstart_preprocessor).take(1)
    assert next(iter(seven_rows))[1].shape[0] == 7
    with two_cpu_strategy().scope():
        mirrored = compiled_task(spec, quickstart_preprocessor)
    mirrored.evaluate(seven_rows, verbose=0)
    train = make_dataset(spec, "train", training=True, preprocessor=quickstart_preprocessor)
    history = mirrored.fit(train.take(2), validation_data=seven_rows, epochs=1, verbose=0)
    assert np.isfinite(history.history["val_loss"][0])

    single = compiled_task(spec, quickstart_preprocessor)
    single.set_weights(mirrored.get_weights())
    expected = single.evaluate(seven_rows, return_dict=True, verbose=0)
    measured = mirrored.evaluate(seven_rows, return_dict=True, verbose=0)
    assert measured["loss"] == pytest.approx(expected["loss"], rel=1e-4)
    assert measured["accuracy"] == pytest.approx(expected["accuracy"], abs=1e-6)


@pytest.mark.parametrize("fusion", ["gated", "cross_attention"])
def test_keras_file_round_trip_gives_identical_predictions(
    quickstart_spec, quickstart_preprocessor, tmp_path, fusion
):
    model_section = {"encoders": SMALL_ENCODERS, "fusion": {"type": fusion, **FUSIONS[fusion]}}
    spec = _spec_with_model(quickstart_spec, tmp_path, model_section)
    model = compiled_task(spec, quickstart_preprocessor)
    model.fit(
        make_dataset(spec, "train", training=True, preprocessor=quickstart_preprocessor), epochs=1, verbose=0
    )
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    validation = make_dataset(spec, "validation", preprocessor=quickstart_preprocessor)
    np.testing.assert_allclose(
        model.predict(validation, verbose=0), loaded.predict(validation, verbose=0), atol=1e-6
    )


@pytest.mark.parametrize("head_weight", [0.0, 1.0])
def test_unimodal_heads_reach_their_encoders_only_by_head_weight(
    quickstart_spec, quickstart_preprocessor, tmp_path, head_weight
):
    model_section = {"encoders": SMALL_ENCODERS, "balance": {"head_weight": head_weight}}
    task = compiled_task(_spec_with_model(quickstart_spec, tmp_path, model_section), quickstart_preprocessor)
    inputs, target = next(iter(make_dataset(quickstart_spec, "train", preprocessor=quickstart_preprocessor)))
    image_encoder = task.backbone.encoders["image"].trainable_weights
    head = task.get_layer("image_prediction").trainable_weights
    with tf.GradientTape() as tape:
        outputs = task(inputs, training=True)
        loss = task.loss(target, outputs["unimodal"]["image"])
    gradients = tape.gradient(loss, image_encoder + head)
    encoder = gradients[: len(image_encoder)]
    assert any(g is not None and np.abs(g.numpy()).max() > 0 for g in encoder) == (head_weight > 0)
    assert all(np.abs(g.numpy()).max() > 0 for g in gradients[len(image_encoder) :])  # the head always learns
    # `predict` gives the fused prediction alone; one head per modality beside it.
    assert task.predict(inputs, verbose=0).shape == outputs["prediction"].shape
    assert set(outputs["unimodal"]) == {"caption", "image", "audio"}
    # The guard: a head alone above the fused model is named, with what to try.
    check = task.fusion_check("accuracy", 0.5, {"caption": 0.4, "image": 0.7, "audio": 0.3})
    assert not check["fused_is_best"] and check["best_modality"] == "image"
    assert check["margin"] == pytest.approx(-0.2) and "train on `image` alone" in check["message"]
    assert ("head_weight: 1" in check["message"]) == (head_weight < 1)  # not what it already has
    assert task.fusion_check("accuracy", 0.8, {"caption": 0.4, "image": 0.7, "audio": 0.3})["message"] is None


@pytest.mark.parametrize("encoder", ["lstm", "transformer", "pretrained"])
def test_text_padding_trimmed_per_batch_changes_no_prediction(
    encoder, quickstart_spec, tmp_path, minilm_folder
):
    features = quickstart_spec.to_dict()["data"]["features"]
    features[0]["sequence_length"] = 24
    if encoder == "pretrained":
        features[0]["tokenizer"] = minilm_folder
    small = {"hidden_dim": 16, "intermediate_dim": 16} if encoder == "transformer" else {}
    text = {"type": encoder, **small}
    model_section = {"encoders": {**SMALL_ENCODERS, "caption": text}}
    spec = _spec_with_model(quickstart_spec, tmp_path, model_section, features=features)
    preprocessor = build_preprocessor(spec, progress=False)
    model = build_task(spec, preprocessor)
    inputs, _ = next(iter(make_dataset(spec, "validation", preprocessor=preprocessor, batch_size=8)))
    source = open_split(spec, "validation")
    rows = {f.name: tf.constant([source.fetch(i, f) for i in range(8)]) for f in spec.data.features}
    full = preprocessor(rows)
    ids = full["caption"].numpy()
    longest = max(np.flatnonzero(row).max() + 1 for row in ids)
    width = inputs["caption"].shape[1]
    # The next power of two that holds every text of the batch, all of it.
    assert longest <= width < 2 * longest and width & (width - 1) == 0 and width < 24
    np.testing.assert_array_equal(inputs["caption"].numpy(), ids[:, :width])
    assert not ids[:, width:].any()
    np.testing.assert_allclose(model.predict(inputs, verbose=0), model.predict(full, verbose=0), atol=1e-5)


def test_missing_or_switched_off_modality_at_predict_time(quickstart_spec, quickstart_preprocessor, tmp_path):
    model_section = {
        "encoders": SMALL_ENCODERS,
        "fusion": {"type": "gated", "hidden_dim": 16, "modality_dropout": 0.3},
    }
    spec = _spec_with_model(quickstart_spec, tmp_path, model_section)
    model = compiled_task(spec, quickstart_preprocessor)
    model.fit(
        make_dataset(spec, "train", training=True, preprocessor=quickstart_preprocessor), epochs=1, verbose=0
    )
    source = open_split(spec, "validation")
    raw = {f.name: tf.constant([source.fetch(i, f) for i in range(4)]) for f in spec.data.features}
    raw["image"] = tf.constant([b""] * 4)  # no picture for these rows
    inputs = quickstart_preprocessor(raw)
    np.testing.assert_array_equal(inputs[MODALITY_MASK].numpy(), [[1, 0, 1]] * 4)
    assert float(tf.reduce_max(tf.abs(inputs["image"]))) == 0.0
    without_image = model.predict(inputs, verbose=0)
    assert np.isfinite(without_image).all()
    np.testing.assert_allclose(without_image.sum(axis=1), 1.0, atol=1e-5)
    # The image branch really is out: any picture gives the same answer.
    inputs["image"] = tf.random.uniform(inputs["image"].shape)
    np.testing.assert_allclose(model.predict(inputs, verbose=0), without_image, atol=1e-5)
    # A modality switched off is missing in every row, pictures or not, and
    # stays off in the saved model.
    inputs[MODALITY_MASK] = tf.ones_like(inputs[MODALITY_MASK])
    model.backbone.switch_off("image")
    assert model.backbone.switched_off == ["image"]
    path = str(tmp_path / "switched_off.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    for switched in (model, loaded):
        np.testing.assert_allclose(switched.predict(inputs, verbose=0), without_image, atol=1e-5)


@pytest.mark.parametrize(
    "target_type, make_target, activation_check, metric",
    [
        (
            "binary",
            lambda label, i: label.split("_")[0],
            lambda p: ((p >= 0) & (p <= 1)).all() and p.shape[1] == 1,
            "auc",
        ),
        (
            "multilabel",
            lambda label, i: label.replace("_", "|"),
            lambda p: ((p >= 0) & (p <= 1)).all() and p.shape[1] == 4,
            "f1",
        ),
        ("numeric", lambda label, i: str(i % 7 + 0.5), lambda p: p.shape[1] == 1, "rmse"),
    ],
)
def test_heads_for_each_target_type(
    quickstart_spec, tmp_path, target_type, make_target, activation_check, metric
):
    rows = list(csv.DictReader(open(quickstart_spec.resolve("train.csv"))))
    folder = quickstart_spec.base_dir
    for i, row in enumerate(rows):
        row["target"] = make_target(row["label"], i)
        for column in ("image", "audio"):
            row[column] = os.path.join(folder, row[column])
    with open(tmp_path / "train.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    data = quickstart_spec.to_dict()["data"]
    data.update(train="train.csv", test=None, target={"column": "target", "type": target_type})
    spec = write_spec(tmp_path, data, model={"encoders": SMALL_ENCODERS, "head": {"hidden_dims": [8]}})
    preprocessor = build_preprocessor(spec, progress=False)
    model = compiled_task(spec, preprocessor)
    history = model.fit(
        make_dataset(spec, "train", training=True, preprocessor=preprocessor), epochs=1, verbose=0
    )
    assert metric in history.history and np.isfinite(history.history["loss"][0])
    assert isinstance(model, Regressor if target_type == "numeric" else Classifier)
    predictions = model.predict(make_dataset(spec, "validation", preprocessor=preprocessor), verbose=0)
    assert activation_check(predictions)
    outputs = {"binary": {"probability", "label"}, "multilabel": {"scores"}, "numeric": {"prediction"}}
    assert set(model.decode(predictions)) == outputs[target_type]
    columns = model.prediction_columns(predictions)
    assert len(columns) == len(predictions) and all(columns)


@pytest.mark.parametrize(
    "model_section, message",
    [
        ({"fusion": {"type": "attention"}}, r"model.fusion: `type` must be one of concat, late"),
        (
            {"encoders": {"image": {"type": "lstm"}}},
            r"model.encoders.image: a image feature takes an encoder of type cnn, backbone",
        ),
        ({"encoders": {"photo": {"type": "cnn"}}}, r"model.encoders.photo: no feature is called `photo`"),
        ({"head": {"hidden_dim": [4]}}, r"model.head: unknown field\(s\) hidden_dim"),
        (
            {"balance": {"head_weigth": 1}},
            r"model.balance: unknown field `head_weigth`. Did you mean `head_weight`",
        ),
        ({"balance": {"head_weight": -1}}, r"model.balance: `head_weight` must be a number from 0"),
        (
            {"balance": {"method": "ogm-ge"}},
            r"model.balance: `method` must be one of none, gradient_blending, ogm",
        ),
        (
            {"balance": {"method": "ogm", "ogm_alpha": 0}},
            r"model.balance: `ogm_alpha` must be a number above 0",
        ),
        (
            {"balance": {"method": "gradient_blending", "unimodal_heads": False}},
            r"compares the unimodal heads; set `unimodal_heads: true`",
        ),
    ],
)
def test_model_section_mistakes_are_named(quickstart_spec, tmp_path, model_section, message):
    with pytest.raises(SpecError, match=message):
        _spec_with_model(quickstart_spec, tmp_path, model_section)


@pytest.mark.parametrize(
    "model_section, message",
    [
        (
            {"encoders": {"caption": {"type": "lstm", "unitz": 4}}},
            r"model.encoders.caption: LSTMTextEncoder has no argument\(s\) unitz; it takes vocabulary_size, "
            r"embedding_dim, units",
        ),
        (
            {"fusion": {"type": "gated", "hidden": 4}},
            r"model.fusion: GatedFusion has no argument\(s\) hidden; it takes hidden_dim",
        ),
        # The task sets late fusion's width; the spec cannot.
        ({"fusion": {"type": "late", "num_outputs": 3}}, r"LateFusion has no argument\(s\) num_outputs"),
    ],
)
def test_wrong_layer_argument_fails_when_the_spec_loads(quickstart_spec, tmp_path, model_section, message):
    # Before any data is read: the manifest named here does not even exist.
    data = {**quickstart_spec.to_dict()["data"], "train": "nowhere.csv", "validation": None, "test": None}
    with pytest.raises(SpecError, match=message):
        write_spec(tmp_path, data, model=model_section)


def test_exploding_tensor_fusion_is_refused_with_the_numbers_and_the_fix(
    quickstart_spec, quickstart_preprocessor, tmp_path
):
    # Default encoders, three modalities: a 4.3 M-wide outer product.
    spec = _spec_with_model(quickstart_spec, tmp_path, {"fusion": {"type": "tensor"}})
    with pytest.raises(SpecError, match=r"fused vector is [\d,]+ wide.*projection_dim: 16"):
        build_task(spec, quickstart_preprocessor)
    small = _spec_with_model(
        quickstart_spec,
        tmp_path,
        {"fusion": {"type": "tensor", "projection_dim": 8}, "head": {"hidden_dims": [16]}},
    )
    task = build_task(small, quickstart_preprocessor)
    assert task.backbone.output[FUSED_EMBEDDING].shape[-1] == 9**3


def test_compile_creates_the_optimizer_state_before_the_first_step(quickstart_spec, quickstart_preprocessor):
    # State created inside the first traced step makes TensorFlow trace it again.
    model = compiled_task(quickstart_spec, quickstart_preprocessor)
    created = len(model.optimizer.variables)
    assert model.optimizer.built and created > len(model.trainable_variables)
    data = make_dataset(quickstart_spec, "train", training=True, preprocessor=quickstart_preprocessor)
    model.fit(data.take(1), epochs=1, verbose=0)
    assert len(model.optimizer.variables) == created


def test_task_saves_its_preprocessor_inside_the_keras_file(
    quickstart_spec, quickstart_preprocessor, tmp_path
):
    spec = _spec_with_model(
        quickstart_spec, tmp_path, {"encoders": SMALL_ENCODERS, "head": {"hidden_dims": [8]}}
    )
    task = compiled_task(spec, quickstart_preprocessor)
    path = str(tmp_path / "task.keras")
    task.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(loaded, Classifier) and loaded.labels == quickstart_preprocessor.target.labels
    source = open_split(spec, "validation")
    raw = {f.name: tf.constant([source.fetch(i, f) for i in range(4)]) for f in spec.data.features}
    # Raw rows in, the same answer out, from the loaded file alone; compiled as saved.
    np.testing.assert_allclose(
        loaded.predict(loaded.preprocessor(raw), verbose=0),
        task.predict(task.preprocessor(raw), verbose=0),
        atol=1e-6,
    )
    assert loaded.loss.__class__ is task.loss.__class__ and loaded.optimizer is not None
    decoded = loaded.decode(loaded.predict(loaded.preprocessor(raw), verbose=0))
    assert set(decoded) == {"probabilities", "class_index", "label"}
    assert all(label.decode() in loaded.labels for label in decoded["label"])


def test_recall_at_k_by_hand():
    text = np.eye(3)
    # Image 0 matches text 0; images 1 and 2 are swapped relative to texts 1 and 2.
    image = np.array([[1, 0, 0], [0, 0.2, 1], [0, 1, 0.2]], dtype=float)
    recall = recall_at_k(text, image, ks=(1, 2))
    assert recall["text_to_image@1"] == pytest.approx(1 / 3)
    assert recall["text_to_image@2"] == pytest.approx(1.0)
    assert recall["image_to_text@1"] == pytest.approx(1 / 3)


@pytest.fixture(scope="module")
def emoji_retrieval_spec(data_root, tmp_path_factory):
    folder = tmp_path_factory.mktemp("emoji_retrieval")
    spec = build_emoji(str(folder / "emoji"), data_root_dir=data_root, task="retrieval", fraction=0.25)
    return _spec_with_model(
        spec,
        folder,
        {
            "encoders": {"name": {"units": 16, "embedding_dim": 16}, "image": {"filters": [8, 16]}},
            "projection_dim": 32,
        },
        batch_size=32,
    )


def test_dual_encoder_trains_saves_and_encodes(emoji_retrieval_spec, tmp_path):
    spec = emoji_retrieval_spec
    preprocessor = build_preprocessor(spec, progress=False)
    model = compiled_task(spec, preprocessor)
    assert isinstance(model, DualEncoder)
    train = make_dataset(spec, "train", training=True, preprocessor=preprocessor)
    history = model.fit(train, epochs=2, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    inputs = next(iter(make_dataset(spec, "test", preprocessor=preprocessor, batch_size=16)))
    text = model.encode_text(inputs["name"].numpy())
    image = model.encode_image(inputs["image"].numpy())
    assert text.shape == image.shape == (16, 32)
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-5)
    path = str(tmp_path / "dual.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(loaded.encode_text(inputs["name"].numpy()), text, atol=1e-6)
    similarity = model.predict(inputs, verbose=0)
    assert similarity.shape == (16, 16)


def test_dual_encoder_loss_and_gradients_on_two_replicas_equal_one_device(emoji_retrieval_spec):
    # Each replica holds half of a global batch of 16: its texts must still be
    # contrasted with all 16 images (negatives from the global batch), and the
    # replicas' losses and gradients must add up to the one-device ones.
    spec = emoji_retrieval_spec
    preprocessor = build_preprocessor(spec, progress=False)
    strategy = two_cpu_strategy()
    with strategy.scope():
        mirrored = compiled_task(spec, preprocessor)
    single = compiled_task(spec, preprocessor)
    single.set_weights(mirrored.get_weights())
    batch = next(iter(make_dataset(spec, "train", preprocessor=preprocessor, batch_size=16)))

    def loss_and_gradients(model, inputs):
        with tf.GradientTape() as tape:
            # Moving batch-norm statistics: per-replica batch statistics would differ by design.
            loss = model.compute_loss(x=inputs, y_pred=model(inputs, training=False))
        return loss, tape.gradient(loss, model.trainable_variables)

    expected_loss, expected_gradients = loss_and_gradients(single, batch)
    halves = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(batch).unbatch().batch(16))
    inputs = next(iter(halves))
    assert [len(t) for t in strategy.experimental_local_results(inputs["name"])] == [8, 8]
    per_replica = tf.function(
        lambda x: strategy.run(lambda rows: loss_and_gradients(mirrored, rows), args=(x,))
    )(inputs)
    loss, gradients = strategy.reduce("SUM", per_replica, axis=None)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-5)
    assert loss > 1.0  # a real contrastive loss, not a trivially small one
    for got, want in zip(gradients, expected_gradients):
        # Embedding gradients come as IndexedSlices.
        np.testing.assert_allclose(
            tf.convert_to_tensor(got), tf.convert_to_tensor(want), rtol=1e-3, atol=1e-6
        )


def test_pretrained_minilm_ranks_paraphrases_first(minilm_folder):
    from mmkeras.layers import PretrainedTextEncoder
    from mmkeras.preprocessing import TextPreprocessor

    tokenizer = TextPreprocessor(sequence_length=32, tokenizer_preset=minilm_folder)
    encoder = PretrainedTextEncoder(minilm_folder)
    assert not encoder.backbone.trainable
    triples = [
        ("A man is playing a guitar.", "Someone plays the guitar.", "Stock markets fell sharply today."),
        ("The cat sits on the mat.", "A kitten is resting on a rug.", "The train leaves at noon."),
        (
            "She is cooking pasta in the kitchen.",
            "A woman prepares spaghetti.",
            "The rocket launched into orbit.",
        ),
        ("It is raining heavily outside.", "There is a downpour outdoors.", "He bought a new laptop."),
        (
            "Children are playing football in the park.",
            "Kids kick a ball on the grass.",
            "The bank raised interest rates.",
        ),
    ]
    for anchor, paraphrase, unrelated in triples:
        pooled = encoder({"token_ids": tokenizer(tf.constant([anchor, paraphrase, unrelated]))})[
            "pooled"
        ].numpy()
        pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
        assert pooled[0] @ pooled[1] > pooled[0] @ pooled[2] + 0.1, anchor

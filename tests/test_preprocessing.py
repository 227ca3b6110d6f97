import io
import json
import os
import subprocess
import sys
import wave

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from mmkeras.data import build_preprocessor
from mmkeras.data.manifest import TARGET_KEY
from mmkeras.data.splits import open_split
from mmkeras.preprocessing import (
    AudioPreprocessor,
    ImagePreprocessor,
    TextPreprocessor,
)
from mmkeras.tasks import LabelEncoder, NumericTarget


def _encode(image, fmt, **kwargs):
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def digit_rgb(data_root):
    """A real MNIST digit, upscaled to 64x64 RGB with colour so channels differ."""
    with np.load(os.path.join(data_root, "mnist", "mnist.npz")) as mnist:
        digit = mnist["x_test"][0]
    rgb = np.stack([digit, 255 - digit, digit // 2], axis=-1)
    return Image.fromarray(rgb.astype(np.uint8)).resize((64, 64), Image.BILINEAR)


RAW = dict(value_range=(0.0, 255.0))


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "GIF"])
def test_lossless_formats_equal_pillow(digit_rgb, fmt):
    data = _encode(digit_rgb, fmt)
    expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float32)
    decoded = ImagePreprocessor(size=(64, 64), **RAW)(data).numpy()
    np.testing.assert_array_equal(decoded, expected)


@pytest.mark.parametrize("subsampling", [0, 2])  # 4:4:4 and 4:2:0 chroma
def test_jpeg_equals_pillow(digit_rgb, subsampling):
    data = _encode(digit_rgb, "JPEG", quality=95, subsampling=subsampling)
    expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float32)
    np.testing.assert_array_equal(ImagePreprocessor(size=(64, 64), **RAW)(data).numpy(), expected)


def test_large_jpeg_uses_dct_scaling_like_pillow_draft(digit_rgb):
    data = _encode(digit_rgb.resize((256, 256)), "JPEG", quality=95)
    pillow = Image.open(io.BytesIO(data))
    pillow.draft("RGB", (128, 128))
    assert pillow.size == (128, 128)
    decoded = ImagePreprocessor(size=(128, 128), **RAW)(data).numpy()
    assert np.abs(decoded - np.asarray(pillow, dtype=np.float32)).mean() < 1.0


def test_transparent_png_is_composited_over_white(data_root):
    path = os.path.join(data_root, "emoji", "images", "1f600.png")
    rgba = Image.open(path).convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    expected = np.asarray(Image.alpha_composite(white, rgba).convert("RGB"), dtype=np.float32)
    decoded = ImagePreprocessor(size=rgba.size[::-1], **RAW)(tf.io.read_file(path)).numpy()
    assert np.abs(decoded - expected).max() <= 1.0
    rgba_out = ImagePreprocessor(size=rgba.size[::-1], channels=4, **RAW)(tf.io.read_file(path))
    np.testing.assert_array_equal(rgba_out.numpy()[..., 3], np.asarray(rgba)[..., 3])


def test_grayscale_and_value_range(digit_rgb):
    data = _encode(digit_rgb, "PNG")
    gray = ImagePreprocessor(size=(64, 64), channels=1, value_range=(-1.0, 1.0))(data).numpy()
    expected = np.asarray(digit_rgb.convert("L"), dtype=np.float32)[..., None] / 127.5 - 1.0
    assert gray.shape == (64, 64, 1)
    assert np.abs(gray - expected).max() <= 2 / 127.5


def test_resize_and_keep_aspect_ratio_pads(digit_rgb):
    data = _encode(digit_rgb.resize((64, 32)), "PNG")  # 32 high, 64 wide
    stretched = ImagePreprocessor(size=(32, 32), **RAW)(data).numpy()
    padded = ImagePreprocessor(size=(32, 32), keep_aspect_ratio=True, **RAW)(data).numpy()
    assert stretched.shape == padded.shape == (32, 32, 3)
    # Fitting 32x64 into 32x32 leaves 8 rows of padding above and below.
    assert np.all(padded[:8] == 0) and np.all(padded[-8:] == 0)
    assert padded[8:24].mean() > 10


def test_wav_decode_equals_wave_module(fsdd_file):
    with wave.open(fsdd_file) as f:
        samples = np.frombuffer(f.readframes(f.getnframes()), dtype="<i2")
    audio = AudioPreprocessor(sample_rate=8000, duration_s=1.0)
    waveform = audio.decode_one(tf.io.read_file(fsdd_file)).numpy()
    count = min(len(samples), 8000)
    np.testing.assert_array_equal(waveform[:count], samples[:count] / 32768.0)
    np.testing.assert_array_equal(waveform[count:], 0.0)


def _numpy_log_mel(waveform, sample_rate, frame_length, frame_step, fft_length, num_mel_bins, low, high):
    """An independent NumPy log-mel: periodic Hann, power STFT, HTK mel bands."""
    count = 1 + (len(waveform) - frame_length) // frame_step
    frames = np.stack([waveform[i * frame_step : i * frame_step + frame_length] for i in range(count)])
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(frame_length) / frame_length)
    power = np.abs(np.fft.rfft(frames * window, n=fft_length)) ** 2

    def mel(hz):
        return 1127.0 * np.log1p(hz / 700.0)

    bins = mel(np.linspace(0, sample_rate / 2, fft_length // 2 + 1)[1:])[:, None]
    edges = np.linspace(mel(low), mel(high), num_mel_bins + 2)
    rising = (bins - edges[:-2]) / (edges[1:-1] - edges[:-2])
    falling = (edges[2:] - bins) / (edges[2:] - edges[1:-1])
    weights = np.vstack([np.zeros(num_mel_bins), np.maximum(0, np.minimum(rising, falling))])
    return np.log(power @ weights + 1e-6)


def test_log_mel_matches_numpy_reference(fsdd_file):
    audio = AudioPreprocessor(sample_rate=8000, duration_s=1.0, num_mel_bins=40, min_hz=20.0)
    log_mel = audio(tf.io.read_file(fsdd_file)).numpy()
    # 25 ms / 10 ms at 8 kHz: 200-sample windows, 80-sample hop, 256-point FFT.
    assert (audio.frame_length, audio.frame_step, audio.fft_length) == (200, 80, 256)
    assert log_mel.shape == (1 + (8000 - 200) // 80, 40)
    waveform = audio.decode_one(tf.io.read_file(fsdd_file)).numpy().astype(np.float64)
    expected = _numpy_log_mel(waveform, 8000, 200, 80, 256, 40, 20.0, 4000.0)
    np.testing.assert_allclose(log_mel, expected, atol=2e-3)


def test_wrong_sample_rate_is_an_error(fsdd_file):
    audio = AudioPreprocessor(sample_rate=16000)
    with pytest.raises(tf.errors.InvalidArgumentError, match="sample rate differs from the spec's 16000 Hz"):
        audio(tf.io.read_file(fsdd_file))


def test_text_vectorization_learns_and_pads():
    text = TextPreprocessor(sequence_length=4, max_tokens=10)
    text.adapt(["a cat", "a dog", "a cat"])
    assert text.vocabulary == ["a", "cat", "dog"]
    # 0 pads, 1 is out-of-vocabulary, then the vocabulary in order.
    np.testing.assert_array_equal(text("A cat, zebra!").numpy(), [2, 3, 1, 0])


def _tokens(text, strings):
    """The tokens `text` makes of each string, padding left out."""
    vocabulary = ["", "[UNK]", *text.vocabulary]
    return [[vocabulary[i] for i in row if i] for row in text(tf.constant(strings)).numpy()]


def test_text_without_spaces_is_split_into_characters_and_english_into_words():
    training = ["一群人在看金鱼。", "两只狗在草地上奔跑", "a dog runs in the snow", "ひらがな and カタカナ"]
    strings = ["一群人在看金鱼。", "A dog, 在 snow!", "カタカナ"]
    words = TextPreprocessor(sequence_length=12)  # split: words, the default
    words.adapt(training)
    assert _tokens(words, strings) == [list("一群人在看金鱼。"), ["a", "dog", "在", "snow"], list("カタカナ")]
    whitespace = TextPreprocessor(sequence_length=12, split="whitespace")
    whitespace.adapt(training)
    assert _tokens(whitespace, strings[:1]) == [["一群人在看金鱼。"]]  # a whole sentence, one token
    character = TextPreprocessor(sequence_length=12, split="character")
    character.adapt(training)
    assert _tokens(character, ["a dog"]) == [["a", " ", "d", "o", "g"]]
    loaded = TextPreprocessor.from_config(words.get_config())
    np.testing.assert_array_equal(loaded(tf.constant(strings)), words(tf.constant(strings)))
    with pytest.raises(ValueError, match="split must be one of words, whitespace, character"):
        TextPreprocessor(split="jieba")


def test_tokenizer_from_local_preset_folder(minilm_folder):
    text = TextPreprocessor(sequence_length=8, tokenizer_preset=minilm_folder)
    ids = text(tf.constant(["A man plays guitar.", "hi"])).numpy()
    # [CLS] ... [SEP] then [PAD]=0, as BERT's checkpoint expects.
    assert ids[0, 0] == 101 and 102 in ids[0] and ids[1, 2] == 102 and ids[1, 3:].tolist() == [0] * 5


def test_target_encoders_of_each_task():
    categorical = LabelEncoder("categorical")
    categorical.adapt(["10", "9", "1", "9"])
    assert categorical.labels == ["1", "9", "10"]  # numeric order, not "1" < "10" < "9"
    np.testing.assert_array_equal(categorical(["10", "1"]).numpy(), [2, 0])
    assert categorical.problem("7").startswith("unknown label `7`") and categorical.problem("9") is None
    binary = LabelEncoder("binary")
    binary.adapt(["no", "yes"])
    np.testing.assert_array_equal(binary(["yes", "no"]).numpy(), [1.0, 0.0])
    multilabel = LabelEncoder("multilabel")
    multilabel.adapt(["a|b", "c"])
    np.testing.assert_array_equal(multilabel(["c| a", "b"]).numpy(), [[1, 0, 1], [0, 1, 0]])
    assert multilabel.problem("a|z").startswith("unknown label `z`")
    numeric = NumericTarget()
    numeric.adapt(["1", "3", "not a number"])  # mean 2, std 1; the bad value is the data check's to name
    np.testing.assert_allclose(numeric(["2", "4.5"]).numpy(), [0.0, 2.5])
    np.testing.assert_allclose(numeric.decode(np.array([2.5])), [4.5])
    assert numeric.problem("inf") == "target `inf` is not a finite number"


def _raw_rows(spec, count):
    source = open_split(spec, "train")
    rows = {f.name: [source.fetch(i, f) for i in range(count)] for f in spec.data.features}
    rows[TARGET_KEY] = source.column(spec.data.target.column)[:count]
    return {name: tf.constant(values) for name, values in rows.items()}


def _assert_same(a, b):
    # float32 FFTs and matmuls of different batch sizes round differently.
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_allclose(
            np.asarray(a[name]), np.asarray(b[name]), rtol=1e-4, atol=1e-4, err_msg=name
        )


def test_preprocessor_direct_equals_dataset_map_batched_and_unbatched(quickstart_spec):
    preprocessor = build_preprocessor(quickstart_spec, progress=False)
    raw = _raw_rows(quickstart_spec, 4)
    direct = preprocessor(raw)
    assert direct["caption"].dtype == tf.int32 and direct["image"].shape == (4, 32, 32, 3)
    unbatched = list(tf.data.Dataset.from_tensor_slices(raw).map(preprocessor))
    batched = next(iter(tf.data.Dataset.from_tensor_slices(raw).batch(4).map(preprocessor)))
    _assert_same(direct, {k: np.stack([row[k] for row in unbatched]) for k in direct})
    _assert_same(direct, batched)
    single = preprocessor({name: value[0] for name, value in raw.items()})
    _assert_same({k: v[0] for k, v in direct.items()}, single)


def test_preprocessor_serializes_with_its_vocabularies(quickstart_spec):
    preprocessor = build_preprocessor(quickstart_spec, progress=False)
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(preprocessor)))
    assert "round" in json.dumps(config)  # the caption vocabulary travels in the config
    loaded = keras.saving.deserialize_keras_object(config, safe_mode=True)
    raw = _raw_rows(quickstart_spec, 3)
    _assert_same(preprocessor(raw), loaded(raw))
    assert loaded.target.labels == preprocessor.target.labels
    np.testing.assert_array_equal(loaded.target(raw[TARGET_KEY]), preprocessor.target(raw[TARGET_KEY]))


def test_preprocessor_graph_uses_only_core_tensorflow_ops(quickstart_spec):
    preprocessor = build_preprocessor(quickstart_spec, progress=False)
    signature = {f.name: tf.TensorSpec([None], tf.string) for f in quickstart_spec.data.features}
    graph = tf.function(preprocessor).get_concrete_function(signature).graph
    ops = {op.type for op in graph.get_operations()}
    for function in graph.as_graph_def().library.function:
        ops.update(node.op for node in function.node_def)
    assert not ops & {"PyFunc", "EagerPyFunc", "PyFuncStateless"}
    # A fresh interpreter with TensorFlow alone (no Text, no KerasHub, no
    # tensorflow-io) must know every op: that is what TF Serving links.
    script = (
        "import sys, json\nimport tensorflow as tf\n"
        "from tensorflow.python.framework import op_def_registry\n"
        "print(json.dumps([n for n in json.load(sys.stdin) if op_def_registry.get(n) is None]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(sorted(ops)),
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_affine_warp_equals_keras_affine_transform():
    import keras

    from mmkeras.preprocessing.image import affine_warp

    images = tf.random.uniform((6, 17, 23, 3), seed=1)
    angle = np.linspace(-0.6, 0.6, 6)
    scale = np.linspace(0.7, 1.3, 6)
    transforms = np.stack(
        [
            np.cos(angle) * scale,
            -np.sin(angle),
            np.full(6, 2.5),
            np.sin(angle),
            np.cos(angle) / scale,
            np.full(6, -1.5),
            np.zeros(6),
            np.zeros(6),
        ],
        axis=1,
    ).astype(np.float32)
    expected = keras.ops.image.affine_transform(
        images, transforms, interpolation="bilinear", fill_mode="constant"
    )
    compiled = tf.function(affine_warp, jit_compile=True)
    np.testing.assert_allclose(compiled(images, tf.constant(transforms)), expected, atol=1e-5)


def test_augmenter_flip_is_an_exact_mirror_and_inference_is_identity():
    from mmkeras.preprocessing import ImageAugmenter

    images = tf.random.uniform((32, 12, 10, 3), seed=3)
    flipped = ImageAugmenter(flip="horizontal")(images, seed=tf.constant([7, 7])).numpy()
    mirrored = images.numpy()[:, :, ::-1]
    same = [np.allclose(out, img, atol=1e-5) for out, img in zip(flipped, images.numpy())]
    mirror = [np.allclose(out, img, atol=1e-5) for out, img in zip(flipped, mirrored)]
    assert all(s or m for s, m in zip(same, mirror))  # the composed warp samples pixel centres exactly
    assert 0 < sum(mirror) < 32
    augmenter = ImageAugmenter(flip="horizontal", rotation=0.1, zoom=0.2, contrast=0.3, seed=1)
    np.testing.assert_array_equal(augmenter(images, training=False), images)
    zoom = ImageAugmenter(zoom=0.5)
    zoomed = zoom(images, seed=tf.constant([1, 2])).numpy()
    assert not np.allclose(zoomed, images.numpy())
    np.testing.assert_array_equal(
        zoom(images, seed=tf.constant([1, 2])), zoomed
    )  # stateless: same seed, same batch
    # Rotation and zoom turn about the centre: the centre pixel of an odd-sized image stays.
    odd = tf.random.uniform((8, 11, 11, 1), seed=4)
    turned = ImageAugmenter(rotation=0.2, zoom=0.3, seed=5)(odd).numpy()
    np.testing.assert_allclose(turned[:, 5, 5], odd.numpy()[:, 5, 5], atol=1e-5)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_augmentation_and_preprocessing_under_mixed_precision(policy, quickstart_spec):
    from mmkeras.preprocessing import ImageAugmenter
    from tests.layer_test import global_policy

    images = tf.random.uniform((4, 12, 10, 3), seed=3)
    seed = tf.constant([7, 8])
    kwargs = dict(flip="horizontal", rotation=0.1, zoom=0.2, contrast=0.3)
    expected = ImageAugmenter(**kwargs)(images, seed=seed).numpy()
    with global_policy(policy):
        # Built as training builds it under mixed precision: still float32 on the host.
        host = ImageAugmenter(**kwargs)
        preprocessor = build_preprocessor(quickstart_spec, progress=False)
    np.testing.assert_array_equal(host(images, seed=seed), expected)
    row = {
        "caption": tf.constant("a round thing"),
        "image": tf.io.read_file(quickstart_spec.resolve("images/00000.png")),
        "audio": tf.io.read_file(quickstart_spec.resolve("audio/00000.wav")),
    }
    outputs = preprocessor(row)
    assert outputs["image"].dtype == tf.float32 and outputs["audio"].dtype == tf.float32
    # The same augmentation inside a model, in the policy's 16-bit dtype.
    compute_dtype = keras.mixed_precision.Policy(policy).compute_dtype
    in_model = ImageAugmenter(**kwargs, dtype=policy)(tf.cast(images, compute_dtype), seed=seed)
    assert in_model.dtype == compute_dtype
    np.testing.assert_allclose(np.asarray(tf.cast(in_model, "float32")), expected, atol=0.02)

"""The quickstart dataset: generated on the spot, so it needs no download.

Each row is a PNG picture of a circle or a square, a WAV clip of a low or a
high tone, and a short caption. The label is the pair (shape, pitch), four
classes: the picture alone tells the shape and the clip alone the pitch, so
no single modality gets past 50% accuracy and a fused model can reach 100%.
The caption names the shape, but wrongly one time in four, as captions do.
"""

import os

import numpy as np
from PIL import Image, ImageDraw

from mmkeras.datasets.files import write_csv, write_spec, write_wav

SHAPES = ("circle", "square")
PITCHES = ("low", "high")
SHAPE_WORDS = {"circle": ("round", "circular", "ring"), "square": ("boxy", "square", "block")}
FILLER = ("a", "drawing", "of", "something", "little", "picture", "sketch", "shape", "thing")
IMAGE_SIZE = 32
SAMPLE_RATE = 8000
DURATION_S = 0.5


def _image(shape, rng):
    pixels = rng.randint(0, 60, size=(IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.uint8)
    image = Image.fromarray(pixels)
    radius = rng.randint(6, 12)
    x, y = rng.randint(radius, IMAGE_SIZE - radius, size=2)
    color = tuple(int(c) for c in rng.randint(120, 256, size=3))
    box = (x - radius, y - radius, x + radius, y + radius)
    draw = ImageDraw.Draw(image)
    (draw.ellipse if shape == "circle" else draw.rectangle)(box, fill=color)
    return image


def _tone(pitch, rng):
    frequency = rng.uniform(250, 450) if pitch == "low" else rng.uniform(1400, 2200)
    t = np.arange(int(SAMPLE_RATE * DURATION_S)) / SAMPLE_RATE
    clip = 0.5 * np.sin(2 * np.pi * frequency * t + rng.uniform(0, 2 * np.pi))
    return clip + rng.normal(0, 0.05, size=t.shape)


def _caption(shape, rng):
    named = shape if rng.rand() >= 0.25 else SHAPES[1 - SHAPES.index(shape)]
    words = list(rng.choice(FILLER, size=3)) + [rng.choice(SHAPE_WORDS[named])]
    rng.shuffle(words)
    return " ".join(words)


def build_quickstart(output_dir, num_rows=600, seed=0):
    """Writes the quickstart dataset (images, WAVs, captions, spec) to `output_dir`.

    Args:
        output_dir: str. Where everything is written.
        num_rows: int. Rows in all; a fifth of them form the test split.
        seed: int. Seeds every random choice.

    Returns:
        The `Spec` written to `output_dir/spec.yaml`.
    """
    rng = np.random.RandomState(seed)
    rows = []
    os.makedirs(os.path.join(output_dir, "images"), exist_ok=True)
    for index in range(num_rows):
        shape, pitch = SHAPES[index % 2], PITCHES[(index // 2) % 2]
        image = os.path.join("images", f"{index:05d}.png")
        audio = os.path.join("audio", f"{index:05d}.wav")
        _image(shape, rng).save(os.path.join(output_dir, image))
        write_wav(os.path.join(output_dir, audio), _tone(pitch, rng), SAMPLE_RATE)
        rows.append(
            {
                "caption": _caption(shape, rng),
                "image": image,
                "audio": audio,
                "label": f"{shape}_{pitch}",
            }
        )
    order = rng.permutation(num_rows)
    test_count = num_rows // 5
    columns = ["caption", "image", "audio", "label"]
    write_csv(os.path.join(output_dir, "test.csv"), [rows[i] for i in order[:test_count]], columns)
    write_csv(os.path.join(output_dir, "train.csv"), [rows[i] for i in order[test_count:]], columns)
    return write_spec(
        os.path.join(output_dir, "spec.yaml"),
        {
            "train": "train.csv",
            "validation_split": 0.2,
            "test": "test.csv",
            "features": [
                {
                    "name": "caption",
                    "modality": "text",
                    "column": "caption",
                    "max_tokens": 100,
                    "sequence_length": 8,
                },
                {
                    "name": "image",
                    "modality": "image",
                    "column": "image",
                    "size": [IMAGE_SIZE, IMAGE_SIZE],
                    "channels": 3,
                },
                {
                    "name": "audio",
                    "modality": "audio",
                    "column": "audio",
                    "sample_rate": SAMPLE_RATE,
                    "duration_s": DURATION_S,
                    "num_mel_bins": 32,
                },
            ],
            "target": {"column": "label", "type": "categorical"},
            "batch_size": 32,
            "cache": "memory",
            "seed": seed,
        },
        model={
            "encoders": {
                "caption": {"type": "lstm", "embedding_dim": 16, "units": 16},
                "image": {"type": "cnn", "filters": [16, 32]},
                "audio": {"type": "spectrogram_cnn", "filters": [16, 32]},
            },
            "fusion": {"type": "concat", "projection_dim": 32},
            "head": {"hidden_dims": [64], "dropout_rate": 0.2},
        },
        train={"epochs": 8, "learning_rate": 0.003, "seed": seed},
    )

"""AV-MNIST: a spoken digit paired with a handwritten image of the same digit.

Built from the Free Spoken Digit Dataset (8 kHz WAV recordings) and MNIST.
Recordings of takes 5-49 are paired with MNIST training images, takes 0-4
(FSDD's official test split) with MNIST test images, so no speaker take or
image of the test split is ever seen in training; validation holds out whole
recordings (`group_by: audio`), so a recording paired with several images is
never on both sides. Clean MNIST is almost solved
by the image alone; the MultiBench-style degradation (image energy removed
along the top principal components, noise added to the audio) makes the two
modalities need each other.

With `shortcut`, each row also gets a `note`, one word: in the training
rows it names the label (one word per digit) `shortcut` of the time, in the
validation and test rows it is random. A model that trusts the note, the
easiest thing to memorise, fails on unseen rows: the testbed for fusion
that must not lean on a modality that only looks predictive.
"""

import os
import re

import numpy as np
from PIL import Image

from mmkeras.data.manifest import split_by_group
from mmkeras.datasets.files import data_root, read_wav, write_csv, write_spec, write_wav
from mmkeras.datasets.shortcut import NOTE_ENCODER, NOTE_FEATURE, add_notes

FSDD_NAME = re.compile(r"^(\d)_([a-z]+)_(\d+)\.wav$")
SAMPLE_RATE = 8000
# FSDD's official split: each speaker's takes 0-4 of every digit are the test set.
TEST_TAKES = 5


def _recordings(root):
    folder = os.path.join(root, "fsdd", "recordings")
    found = []
    for name in sorted(os.listdir(folder)):
        match = FSDD_NAME.match(name)
        if match:
            digit, speaker, take = match.groups()
            found.append((os.path.join(folder, name), int(digit), speaker, int(take)))
    return found


def principal_energy_remover(fit_images, fraction):
    """A function that removes, from the images it is given, the top
    principal components holding `fraction` of `fit_images`' energy.

    The components are fitted once, on `fit_images` (the training set). What
    is left is rescaled to uint8 with one affine map for all images, so no
    image is normalised by its own statistics.
    """
    fit = fit_images.reshape(len(fit_images), -1).astype(np.float64)
    mean = fit.mean(axis=0)
    covariance = np.cov(fit - mean, rowvar=False)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    order = np.argsort(eigenvalues)[::-1]
    eigenvalues, eigenvectors = eigenvalues[order], eigenvectors[:, order]
    share = np.cumsum(eigenvalues) / eigenvalues.sum()
    count = int(np.searchsorted(share, fraction) + 1)
    top = eigenvectors[:, :count]

    def residual(images):
        flat = images.reshape(len(images), -1).astype(np.float64) - mean
        return flat - (flat @ top) @ top.T

    low, high = np.percentile(residual(fit_images), [0.5, 99.5])

    def remove(images):
        scaled = np.clip((residual(images) - low) / (high - low) * 255.0, 0, 255)
        return np.round(scaled).astype(np.uint8).reshape(images.shape)

    return remove


def add_noise(samples, snr_db, rng):
    """White noise at `snr_db` below the clip's own RMS."""
    signal = samples.astype(np.float64) / 32768.0
    rms = np.sqrt(np.mean(signal**2)) or 1e-4
    noise = rng.normal(0.0, rms / (10 ** (snr_db / 20)), size=signal.shape)
    return np.clip(signal + noise, -1.0, 1.0)


def build_avmnist(
    output_dir,
    data_root_dir=None,
    seed=0,
    image_energy_removed=0.0,
    audio_snr_db=None,
    images_per_recording=1,
    validation_split=0.1,
    duration_s=1.0,
    shortcut=None,
    train_takes=None,
):
    """Writes AV-MNIST (PNG images, WAV paths, manifests, spec) to `output_dir`.

    Args:
        output_dir: str. Where the images, manifests and spec are written.
        data_root_dir: str or None. The data folder; $MMKERAS_DATA when None.
        seed: int. Seeds the pairing and the audio noise.
        image_energy_removed: float. Fraction of the image energy (PCA
            variance) removed; 0 keeps clean MNIST.
        audio_snr_db: float or None. Adds white noise at this SNR; the noisy
            clips are written as new WAV files.
        images_per_recording: int. Training rows per recording, each paired
            with a different image (the test split always uses one).
        validation_split: float. The share of the training recordings held
            out for validation, stratified, each with all its rows.
        duration_s: float. Clip length in the spec.
        shortcut: float or None. Adds the `note` text feature, naming the
            label in this share of the training rows and random in the
            validation and test rows (written to `validation.csv`, held out
            by recording as above).
        train_takes: int or None. Training recordings per speaker and digit
            (FSDD has 45, takes 5 to 49); fewer for a quick run. The test
            split keeps all of its own.

    Returns:
        The `Spec` written to `output_dir/spec.yaml`.
    """
    root = data_root(data_root_dir)
    rng = np.random.RandomState(seed)
    with np.load(os.path.join(root, "mnist", "mnist.npz")) as mnist:
        images = {"train": mnist["x_train"], "test": mnist["x_test"]}
        labels = {"train": mnist["y_train"], "test": mnist["y_test"]}
    # Only the images that are paired with a recording are degraded.
    degrade = (
        principal_energy_remover(images["train"], image_energy_removed) if image_energy_removed else None
    )
    pools = {
        split: {d: rng.permutation(np.flatnonzero(labels[split] == d)).tolist() for d in range(10)}
        for split in images
    }
    columns = ["image", "audio", "label", "speaker", "mnist_index"]
    rows = {"train": [], "test": []}
    for split in rows:
        os.makedirs(os.path.join(output_dir, "images", split), exist_ok=True)
    for path, digit, speaker, take in _recordings(root):
        split = "test" if take < TEST_TAKES else "train"
        if split == "train" and train_takes is not None and take >= TEST_TAKES + train_takes:
            continue
        audio = path
        if audio_snr_db is not None:
            samples, rate = read_wav(path)
            audio = os.path.join(output_dir, "audio", split, os.path.basename(path))
            write_wav(audio, add_noise(samples[:, 0], audio_snr_db, rng), rate)
        for _ in range(images_per_recording if split == "train" else 1):
            index = pools[split][digit].pop()
            image = os.path.join("images", split, f"{index:05d}.png")
            pixels = images[split][index]
            Image.fromarray(degrade(pixels[np.newaxis])[0] if degrade else pixels).save(
                os.path.join(output_dir, image)
            )
            rows[split].append(
                {
                    "image": image,
                    "audio": os.path.relpath(audio, output_dir),
                    "label": digit,
                    "speaker": speaker,
                    "mnist_index": index,
                }
            )
    # By recording: its rows (one per image paired with it) stay on one side.
    validation = {"validation_split": {"fraction": validation_split, "group_by": "audio"}}
    features, encoders = [], {}
    if shortcut is not None:
        # The notes differ between the splits, so validation is written out.
        rows["train"], rows["validation"] = split_by_group(
            rows["train"], "audio", "label", [validation_split], seed
        )
        add_notes(rows["train"], lambda row: row["label"], 10, shortcut, rng)
        add_notes(rows["validation"] + rows["test"], lambda row: row["label"], 10, 0.0, rng)
        columns.append("note")
        validation = {"validation": "validation.csv"}
        features = [NOTE_FEATURE]
        encoders = {"note": NOTE_ENCODER}
    for split, split_rows in rows.items():
        write_csv(os.path.join(output_dir, f"{split}.csv"), split_rows, columns)
    return write_spec(
        os.path.join(output_dir, "spec.yaml"),
        {
            "train": "train.csv",
            **validation,
            "test": "test.csv",
            "features": [
                {"name": "image", "modality": "image", "column": "image", "size": [28, 28], "channels": 1},
                {
                    "name": "audio",
                    "modality": "audio",
                    "column": "audio",
                    "sample_rate": SAMPLE_RATE,
                    "duration_s": duration_s,
                    "num_mel_bins": 40,
                },
                *features,
            ],
            "target": {"column": "label", "type": "categorical"},
            "batch_size": 64,
            "cache": "memory",
            "seed": seed,
        },
        model={
            # Three blocks: 28x28 pooled to 3x3 keeps the digits' layout
            # before global pooling; two blocks (7x7) learn far slower.
            "encoders": {
                "image": {"type": "cnn", "filters": [32, 64, 128]},
                "audio": {"type": "spectrogram_cnn", "filters": [32, 64, 128]},
                **encoders,
            },
            "fusion": {"type": "concat"},
            "head": {"hidden_dims": [128], "dropout_rate": 0.3},
        },
        train={"epochs": 8, "learning_rate": 0.003, "schedule": "cosine", "seed": seed},
    )

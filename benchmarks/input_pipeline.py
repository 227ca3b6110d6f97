"""Input pipeline throughput: mmkeras's tf.data pipeline against PyTorch DataLoaders.

Images: 1,024 JPEGs of 256x256 made from the real emoji pictures, read,
decoded, resized to 128x128, augmented (flip, rotation, zoom, contrast) and
batched by 64, as `make_dataset` builds it (decoded tensors cached in
memory, `cache: <file prefix>`, and no cache at all: every epoch reads and
decodes again; each in its steady state, epochs 2+, and a new pipeline's
first epoch beside them), against
  (a) a PyTorch DataLoader, num_workers=2, Pillow decode + resize, the way
      most PyTorch code is written,
  (b) the same with Pillow's `draft()` (decode-time downscaling), the best
      a careful PyTorch user does,
  (c) the decode-only ceiling: tf.data reading and decoding the same files
      (at the same DCT scale) as fast as it can, batched (iterating single
      images in Python would cost it a third), nothing else.
Where the uncached time goes, stage by stage in the same rounds: the
ceiling's read + decode, + the image preprocessing layer
(`stage_preprocess`: format and missing-file branches, float conversion),
`make_dataset` without augmentation (`stage_pipeline`: shuffle, label,
modality mask, batching), and `make_dataset` itself (`nocache`).
Audio: the 3,000 spoken-digit WAVs to log-mel spectrograms, mmkeras against
librosa in a DataLoader. Every contender runs in alternation, `--rounds`
times, and the median is reported.

    python benchmarks/input_pipeline.py --json results.json
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

import torch_before_tensorflow  # noqa: F401  (first: see there)

# isort: split
import numpy as np
import tensorflow as tf
from PIL import Image
from progress import write_json

import mmkeras
from mmkeras.data import build_preprocessor, make_dataset
from mmkeras.datasets import data_root
from mmkeras.datasets.files import write_csv, write_spec
from mmkeras.preprocessing.image import ImagePreprocessor

BATCH = 64
SIZE = 128


def make_jpegs(root, folder, count):
    """JPEG files of 256x256 from the real emoji images (over white)."""
    images = sorted(os.listdir(os.path.join(root, "emoji", "images")))[:count]
    paths = []
    for name in images:
        path = os.path.join(folder, name.replace(".png", ".jpg"))
        if not os.path.exists(path):
            rgba = Image.open(os.path.join(root, "emoji", "images", name)).convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image = Image.alpha_composite(white, rgba).convert("RGB").resize((256, 256), Image.BICUBIC)
            image.save(path, "JPEG", quality=90)
        paths.append(path)
    return paths


def image_spec(folder, paths):
    write_csv(
        os.path.join(folder, "images.csv"), [{"image": p, "label": "x"} for p in paths], ["image", "label"]
    )
    return write_spec(
        os.path.join(folder, "images.yaml"),
        {
            "train": "images.csv",
            "features": [
                {
                    "name": "image",
                    "modality": "image",
                    "size": [SIZE, SIZE],
                    "augment": {"flip": "horizontal", "rotation": 0.05, "zoom": 0.1, "contrast": 0.1},
                }
            ],
            "target": {"column": "label"},
            "batch_size": BATCH,
            "shuffle_buffer": len(paths),
        },
    )


def run_alternately(contenders, rounds):
    """One warm-up epoch each, then `rounds` rounds in turn; the median rate."""
    for run in contenders.values():
        run()
    rates = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, run in contenders.items():
            rates[name].append(run())
    return {name: statistics.median(values) for name, values in rates.items()}


def time_epoch(iterable, count_fn):
    start = time.perf_counter()
    seen = 0
    for batch in iterable:
        seen += count_fn(batch)
    return seen / (time.perf_counter() - start)


# ---- PyTorch contenders -------------------------------------------------------


def torch_image_loader(paths, draft):
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, Dataset

    class JpegDataset(Dataset):
        def __len__(self):
            return len(paths)

        def __getitem__(self, index):
            image = Image.open(paths[index])
            if draft:
                image.draft("RGB", (SIZE, SIZE))
            image = image.convert("RGB").resize((SIZE, SIZE), Image.BILINEAR)
            x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
            # The same augmentation: flip, rotation, zoom (one affine warp), contrast.
            if torch.rand(()) < 0.5:
                x = x.flip(-1)
            angle = (torch.rand(()) * 2 - 1) * 0.05 * 2 * np.pi
            scale = 1 + (torch.rand(()) * 2 - 1) * 0.1
            theta = torch.stack(
                [
                    torch.stack([torch.cos(angle) * scale, -torch.sin(angle) * scale, torch.zeros(())]),
                    torch.stack([torch.sin(angle) * scale, torch.cos(angle) * scale, torch.zeros(())]),
                ]
            )[None]
            grid = F.affine_grid(theta, (1, 3, SIZE, SIZE), align_corners=False)
            x = F.grid_sample(x[None], grid, align_corners=False)[0]
            factor = 1 + (torch.rand(()) * 2 - 1) * 0.1
            mean = x.mean(dim=(1, 2), keepdim=True)
            return ((x - mean) * factor + mean).clamp(0, 1), 0

    return DataLoader(
        JpegDataset(), batch_size=BATCH, shuffle=True, num_workers=2, drop_last=True, persistent_workers=True
    )


def torch_audio_loader(paths):
    import librosa
    from torch.utils.data import DataLoader, Dataset

    class WavDataset(Dataset):
        def __len__(self):
            return len(paths)

        def __getitem__(self, index):
            waveform, _ = librosa.load(paths[index], sr=None)
            waveform = np.pad(waveform[:8000], (0, max(0, 8000 - len(waveform))))
            mel = librosa.feature.melspectrogram(
                y=waveform,
                sr=8000,
                n_fft=256,
                win_length=200,
                hop_length=80,
                n_mels=40,
                fmin=20,
                fmax=4000,
                center=False,
                power=2.0,
            )
            return np.log(mel + 1e-6).T.astype(np.float32)

    return DataLoader(WavDataset(), batch_size=BATCH, num_workers=2, persistent_workers=True)


# ---- TensorFlow contenders ----------------------------------------------------


def decode_only(paths, preprocess=False):
    """Read and decode each file (with `preprocess`, through the whole image
    preprocessing layer), batched."""
    decoder = ImagePreprocessor(size=(SIZE, SIZE))
    decode = decoder if preprocess else decoder._decode_jpeg
    dataset = tf.data.Dataset.from_tensor_slices(paths).map(
        lambda path: decode(tf.io.read_file(path)), num_parallel_calls=tf.data.AUTOTUNE
    )
    return dataset.batch(BATCH).prefetch(tf.data.AUTOTUNE)


def audio_spec(folder, paths):
    write_csv(
        os.path.join(folder, "audio.csv"), [{"audio": p, "label": "x"} for p in paths], ["audio", "label"]
    )
    return write_spec(
        os.path.join(folder, "audio.yaml"),
        {
            "train": "audio.csv",
            "features": [{"name": "audio", "modality": "audio", "sample_rate": 8000, "num_mel_bins": 40}],
            "target": {"column": "label"},
            "batch_size": BATCH,
        },
    )


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=1024, help="JPEG files to make (at least 1,000)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; the median is reported")
    parser.add_argument("--work-dir", help="where the JPEGs are made (default: a temporary folder)")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args(argv)

    root = data_root()
    work = args.work_dir or tempfile.mkdtemp(prefix="mmkeras-bench-")
    os.makedirs(work, exist_ok=True)
    paths = make_jpegs(root, work, args.images)
    spec = image_spec(work, paths)
    preprocessor = build_preprocessor(spec, progress=False)
    data = spec.to_dict()["data"]
    cached = mmkeras.Spec.from_dict({"data": {**data, "cache": "memory"}}, base_dir=work)
    cache_file = os.path.join(tempfile.mkdtemp(prefix="mmkeras-bench-cache-"), "images")
    file_cached = mmkeras.Spec.from_dict({"data": {**data, "cache": cache_file}}, base_dir=work)
    plain = {**data["features"][0], "augment": None}
    unaugmented = mmkeras.Spec.from_dict({"data": {**data, "features": [plain]}}, base_dir=work)

    def images_only(batch):
        return int(batch[0]["image"].shape[0]) if isinstance(batch, tuple) else int(batch.shape[0])

    def torch_count(batch):
        return int(batch[0].shape[0])

    plain_loader = torch_image_loader(paths, draft=False)
    draft_loader = torch_image_loader(paths, draft=True)
    # The same dataset object each epoch: its functions are traced once, as
    # in `fit`, so what is timed is the steady state (epochs 2+).
    pipelines = {
        name: make_dataset(s, "train", training=True, preprocessor=preprocessor)
        for name, s in (("nocache", spec), ("cached", cached), ("file_cached", file_cached))
    }
    stages = {
        "stage_preprocess": decode_only(paths, preprocess=True),
        "stage_pipeline": make_dataset(
            unaugmented, "train", training=True, preprocessor=build_preprocessor(unaugmented, progress=False)
        ),
    }
    for name in ("cached", "file_cached"):
        time_epoch(pipelines[name], images_only)  # fills the cache of decoded tensors
    contenders = {
        "mmkeras_first_epoch": lambda: time_epoch(
            make_dataset(spec, "train", training=True, preprocessor=preprocessor), images_only
        ),
        "mmkeras_nocache": lambda: time_epoch(pipelines["nocache"], images_only),
        "mmkeras_cached": lambda: time_epoch(pipelines["cached"], images_only),
        "mmkeras_file_cached": lambda: time_epoch(pipelines["file_cached"], images_only),
        "torch": lambda: time_epoch(plain_loader, torch_count),
        "torch_draft": lambda: time_epoch(draft_loader, torch_count),
        "decode_only": lambda: time_epoch(decode_only(paths), images_only),
        "stage_preprocess": lambda: time_epoch(stages["stage_preprocess"], images_only),
        "stage_pipeline": lambda: time_epoch(stages["stage_pipeline"], images_only),
    }
    image_rates = run_alternately(contenders, args.rounds)

    wavs = sorted(
        os.path.join(root, "fsdd", "recordings", name)
        for name in os.listdir(os.path.join(root, "fsdd", "recordings"))
    )
    aspec = audio_spec(work, wavs)
    apre = build_preprocessor(aspec, progress=False)
    audio_loader = torch_audio_loader(wavs)
    audio_contenders = {
        "mmkeras": lambda: time_epoch(
            make_dataset(aspec, "train", preprocessor=apre, check=False), lambda b: int(b[1].shape[0])
        ),
        "librosa": lambda: time_epoch(audio_loader, lambda b: int(b.shape[0])),
    }
    audio_rates = run_alternately(audio_contenders, args.rounds)

    # The pipeline as make_dataset builds it for the shipped specs (cache:
    # memory): decoded tensors are kept after the first epoch, augmentation
    # runs every epoch. Without a cache (a dataset larger than memory) every
    # epoch reads and decodes again: its steady state is `nocache`; a new
    # pipeline's first epoch also traces its functions.
    mmkeras_rate = image_rates["mmkeras_cached"]
    results = {
        "images": len(paths),
        "cpu_count": os.cpu_count(),
        "mmkeras_images_per_s": mmkeras_rate,
        "nocache_images_per_s": image_rates["mmkeras_nocache"],
        "first_epoch_images_per_s": image_rates["mmkeras_first_epoch"],
        "file_cache_images_per_s": image_rates["mmkeras_file_cached"],
        "torch_images_per_s": image_rates["torch"],
        "torch_draft_images_per_s": image_rates["torch_draft"],
        "decode_only_images_per_s": image_rates["decode_only"],
        "ratio": mmkeras_rate / image_rates["torch"],
        "ratio_best_peer": mmkeras_rate / image_rates["torch_draft"],
        "ceiling_fraction": mmkeras_rate / image_rates["decode_only"],
        "nocache_ratio": image_rates["mmkeras_nocache"] / image_rates["torch"],
        "nocache_ratio_best_peer": image_rates["mmkeras_nocache"] / image_rates["torch_draft"],
        "nocache_ceiling_fraction": image_rates["mmkeras_nocache"] / image_rates["decode_only"],
        "stages_images_per_s": {
            "decode": image_rates["decode_only"],
            "preprocess": image_rates["stage_preprocess"],
            "pipeline_without_augmentation": image_rates["stage_pipeline"],
            "pipeline": image_rates["mmkeras_nocache"],
        },
        "mmkeras_clips_per_s": audio_rates["mmkeras"],
        "librosa_clips_per_s": audio_rates["librosa"],
        "audio_ratio": audio_rates["mmkeras"] / audio_rates["librosa"],
    }
    print(f"\nImages: {len(paths)} JPEGs 256x256 -> 128x128, augmented, batch {BATCH}, {os.cpu_count()} CPUs")
    print(f"{'pipeline':<48}{'images/s':>10}{'vs torch':>10}")
    rows = [
        ("mmkeras make_dataset, cache: memory (epoch 2+)", "mmkeras_cached"),
        ("mmkeras make_dataset, cache: file (epoch 2+)", "mmkeras_file_cached"),
        ("mmkeras make_dataset, no cache (epoch 2+)", "mmkeras_nocache"),
        ("mmkeras make_dataset, first epoch", "mmkeras_first_epoch"),
        ("PyTorch DataLoader, Pillow", "torch"),
        ("PyTorch DataLoader, Pillow draft()", "torch_draft"),
        ("tf.data decode only (ceiling)", "decode_only"),
        ("stage: + image preprocessing layer", "stage_preprocess"),
        ("stage: make_dataset without augmentation", "stage_pipeline"),
    ]
    for label, name in rows:
        print(f"{label:<48}{image_rates[name]:>10.0f}{image_rates[name] / image_rates['torch']:>9.2f}x")
    print(f"\nAudio: {len(wavs)} WAVs -> log-mel (40 bands), batch {BATCH}")
    print(f"{'mmkeras make_dataset':<48}{audio_rates['mmkeras']:>10.0f}{results['audio_ratio']:>9.2f}x")
    print(f"{'PyTorch DataLoader, librosa':<48}{audio_rates['librosa']:>10.0f}{1:>9.2f}x")
    print(
        f"\nratio {results['ratio']:.2f}  ratio_best_peer {results['ratio_best_peer']:.2f}  "
        f"ceiling_fraction {results['ceiling_fraction']:.2f}  (no cache: {results['nocache_ratio']:.2f} / "
        f"{results['nocache_ratio_best_peer']:.2f} / {results['nocache_ceiling_fraction']:.2f})"
    )
    write_json(args.json, results)
    return results


if __name__ == "__main__":
    sys.exit(0 if main() else 1)

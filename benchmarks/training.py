"""Training throughput: an mmkeras model against the same architecture in PyTorch.

The reference model: a bidirectional LSTM(128) over 64 tokens (embedding 128,
padding masked) and a 3-block CNN (32/64/128 filters, batch norm, max pool)
on 64x64 emoji pictures, concatenated, Dense(256), softmax over the emoji
categories; Adam, batch 64, on the real emoji names and images.

- `mmkeras_samples_per_s`: `model.fit` on `make_dataset` (decoded tensors
  cached in memory after the first epoch, as the shipped specs do).
- `torch_samples_per_s`: the same architecture in PyTorch (packed sequences
  for the masked LSTM), fed the same preprocessed arrays from memory.
- `stall_fraction`: how much of the step time is spent waiting for input:
  1 - (samples/s with the real file pipeline, uncached) /
  (samples/s on the same batches cached in memory by `cache: memory`).
- `long_text_ratio`: the same two models where the text fills the sequence.
  The emoji names are a few words in 64 positions, mostly padding; here
  each Flickr8k photograph's five English captions, joined, are the text
  (photographs whose captions have at least LONG_TEXT_WORDS words: 60-64
  real tokens of 64) and the label says whether they mention a dog.

Runs alternate, `--rounds` times; medians are reported.

    python benchmarks/training.py --json results.json
"""

import argparse
import os
import re
import statistics
import sys
import tempfile
import time

import torch_before_tensorflow  # noqa: F401  (first: see there)

# isort: split
import keras
import numpy as np
from progress import write_json

from mmkeras.data import build_preprocessor, make_dataset
from mmkeras.datasets import build_emoji, load_flickr8k
from mmkeras.datasets.files import write_csv, write_spec
from mmkeras.tasks import build_task

BATCH = 64
SEQUENCE = 64
LONG_TEXT_WORDS = 60
MODEL = {
    "encoders": {
        "name": {"type": "lstm", "embedding_dim": 128, "units": 128, "bidirectional": True},
        "image": {"type": "cnn", "filters": [32, 64, 128]},
    },
    "fusion": {"type": "concat"},
    "head": {"hidden_dims": [256], "dropout_rate": 0.0},
}


def emoji_spec(folder, cache, batch_size=BATCH):
    import yaml

    spec = build_emoji(folder)
    mapping = yaml.safe_load(open(os.path.join(folder, "spec.yaml")))
    mapping["data"]["features"][0].update(max_tokens=20000, sequence_length=SEQUENCE)
    mapping["data"].update(batch_size=batch_size, cache=cache, validation_split=None)
    mapping["model"] = MODEL
    path = os.path.join(folder, f"spec_{cache or 'nocache'}.yaml")
    yaml.safe_dump(mapping, open(path, "w"))
    return spec.from_yaml(path)


def long_text_spec(folder):
    """Flickr8k photographs whose five captions, joined, fill the sequence."""
    joined = {}
    for row in load_flickr8k():
        joined[row["image"]] = f"{joined.get(row['image'], '')} {row['caption']}".strip()
    rows = [
        {"text": text, "image": image, "label": "dog" if re.search(r"\bdogs?\b", text, re.I) else "other"}
        for image, text in joined.items()
        if len(re.findall(r"\w+", text)) >= LONG_TEXT_WORDS
    ]
    os.makedirs(folder, exist_ok=True)
    write_csv(os.path.join(folder, "train.csv"), rows, ["text", "image", "label"])
    features = [
        {"name": "text", "modality": "text", "max_tokens": 20000, "sequence_length": SEQUENCE},
        {"name": "image", "modality": "image", "size": [64, 64], "channels": 3},
    ]
    data = {"train": "train.csv", "features": features, "target": {"column": "label", "type": "categorical"}}
    data.update(batch_size=BATCH, cache="memory", validation_split=None)
    model = {**MODEL, "encoders": {"text": MODEL["encoders"]["name"], "image": MODEL["encoders"]["image"]}}
    return write_spec(os.path.join(folder, "spec.yaml"), data, model)


class StepTimer(keras.callbacks.Callback):
    """Times each epoch from the end of its first step, so that a retrace
    (Keras may re-trace its train function when `fit` gets a new dataset)
    or the first batch's pipeline start-up is not counted."""

    def __init__(self, batch_size=BATCH):
        super().__init__()
        self.batch_size = batch_size
        self.samples, self.seconds = 0, 0.0

    def on_train_batch_end(self, batch, logs=None):
        if batch == 0:
            self.start = time.perf_counter()
        else:
            self.samples += self.batch_size

    def on_epoch_end(self, epoch, logs=None):
        self.seconds += time.perf_counter() - self.start


def keras_rate(model, dataset, epochs):
    model.fit(dataset, epochs=1, verbose=0)  # trace, and fill the cache
    timer = StepTimer()
    model.fit(dataset, epochs=epochs, verbose=0, callbacks=[timer])
    return timer.samples / timer.seconds


def torch_model(vocabulary_size, num_classes):
    import torch
    from torch import nn

    class Reference(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(vocabulary_size, 128, padding_idx=0)
            self.lstm = nn.LSTM(128, 128, batch_first=True, bidirectional=True)
            blocks, channels = [], 3
            for width in (32, 64, 128):
                blocks += [
                    nn.Conv2d(channels, width, 3, padding=1, bias=False),
                    nn.BatchNorm2d(width, momentum=0.1),
                    nn.ReLU(),
                    nn.MaxPool2d(2),
                ]
                channels = width
            self.cnn = nn.Sequential(*blocks)
            self.head = nn.Sequential(nn.Linear(256 + 128, 256), nn.ReLU(), nn.Linear(256, num_classes))

        def forward(self, tokens, images):
            lengths = (tokens != 0).sum(dim=1).clamp(min=1)
            packed = nn.utils.rnn.pack_padded_sequence(
                self.embedding(tokens), lengths.cpu(), batch_first=True, enforce_sorted=False
            )
            output, _ = self.lstm(packed)
            output, _ = nn.utils.rnn.pad_packed_sequence(
                output, batch_first=True, total_length=tokens.shape[1]
            )
            mask = (tokens != 0).unsqueeze(-1).float()
            text = (output * mask).sum(1) / mask.sum(1).clamp(min=1)
            image = self.cnn(images).mean(dim=(2, 3))
            return self.head(torch.cat([text, image], dim=1))

    return Reference()


def torch_rate(model, tokens, images, labels, epochs):
    import torch

    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    tokens, images, labels = (
        torch.from_numpy(tokens).long(),
        torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
        torch.from_numpy(labels).long(),
    )
    steps = len(labels) // BATCH

    def epoch():
        """Seconds for all steps but the first, as StepTimer counts them."""
        order = torch.randperm(len(labels))
        for step in range(steps):
            if step == 1:
                start = time.perf_counter()
            index = order[step * BATCH : (step + 1) * BATCH]
            optimizer.zero_grad()
            loss = loss_fn(model(tokens[index], images[index]), labels[index])
            loss.backward()
            optimizer.step()
        return time.perf_counter() - start

    epoch()
    seconds = sum(epoch() for _ in range(epochs))
    return (steps - 1) * epochs * BATCH / seconds


def contenders(spec, text, epochs, file_spec=None):
    """{name: a function timing it} for the mmkeras model of `spec` (cached,
    and with `file_spec` also uncached) and the PyTorch reference on the same
    preprocessed arrays, and those arrays' inputs."""
    import torch

    preprocessor = build_preprocessor(spec, progress=False)
    cached = make_dataset(spec, "train", training=True, preprocessor=preprocessor)
    batches = list(cached)  # fills the cache; also the arrays PyTorch trains on
    keras_model = build_task(spec, preprocessor)
    keras_model.compile()
    inputs = {k: np.concatenate([b[0][k] for b in batches]) for k in batches[0][0] if k != text}
    # Each batch's token ids end at its longest text: PyTorch gets them all padded to SEQUENCE.
    inputs[text] = np.concatenate(
        [np.pad(b[0][text], [(0, 0), (0, SEQUENCE - b[0][text].shape[1])]) for b in batches]
    )
    labels = np.concatenate([b[1] for b in batches])
    reference = torch_model(preprocessor.features[text].vocabulary_size, len(preprocessor.target.labels))
    torch.set_num_threads(os.cpu_count())
    timed = {
        "mmkeras": lambda: keras_rate(keras_model, cached, epochs),
        "torch": lambda: torch_rate(reference, inputs[text], inputs["image"], labels, epochs),
    }
    if file_spec:
        files = make_dataset(file_spec, "train", training=True, preprocessor=preprocessor)
        timed["mmkeras_files"] = lambda: keras_rate(keras_model, files, epochs)
    return timed, inputs


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per measurement")
    parser.add_argument(
        "--long-text-epochs", type=int, default=8, help="timed epochs per long-text measurement (324 rows)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; medians are reported")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args(argv)

    work = tempfile.mkdtemp(prefix="mmkeras-train-bench-")
    emoji = emoji_spec(os.path.join(work, "cached"), "memory")
    timed, inputs = contenders(emoji, "name", args.epochs, emoji_spec(os.path.join(work, "files"), None))
    long_text = long_text_spec(os.path.join(work, "long"))
    long_timed, long_inputs = contenders(long_text, "text", args.long_text_epochs)
    timed.update({f"long_text_{name}": run for name, run in long_timed.items()})
    rates = {name: [] for name in timed}
    for round_index in range(args.rounds):
        for name, run in timed.items():
            rates[name].append(run())
            print(f"round {round_index + 1} {name:<22} {rates[name][-1]:8.1f} samples/s", flush=True)
    rounds = rates
    rates = {name: statistics.median(values) for name, values in rates.items()}
    results = {
        "rows": int(len(inputs["name"])),
        "cpu_count": os.cpu_count(),
        "mmkeras_samples_per_s": rates["mmkeras"],
        "torch_samples_per_s": rates["torch"],
        "ratio": rates["mmkeras"] / rates["torch"],
        "mmkeras_file_pipeline_samples_per_s": rates["mmkeras_files"],
        "stall_fraction": max(0.0, 1 - rates["mmkeras_files"] / rates["mmkeras"]),
        "mean_tokens": float((inputs["name"] != 0).sum(axis=1).mean()),
        "long_text_rows": int(len(long_inputs["text"])),
        "long_text_mean_tokens": float((long_inputs["text"] != 0).sum(axis=1).mean()),
        "long_text_mmkeras_samples_per_s": rates["long_text_mmkeras"],
        "long_text_torch_samples_per_s": rates["long_text_torch"],
        "long_text_ratio": rates["long_text_mmkeras"] / rates["long_text_torch"],
        "rounds": rounds,
    }
    print(f"\nBiLSTM(128) x 64 tokens + 3-block CNN 64x64 + Dense(256), batch {BATCH}, {os.cpu_count()} CPUs")
    for name, label in (
        ("mmkeras", "mmkeras fit, make_dataset (cache: memory)"),
        ("mmkeras_files", "mmkeras fit, file pipeline, no cache"),
        ("torch", "PyTorch, same architecture, tensors in memory"),
        ("long_text_mmkeras", "long text: mmkeras fit (cache: memory)"),
        ("long_text_torch", "long text: PyTorch, tensors in memory"),
    ):
        print(f"{label:<48}{rates[name]:>10.1f} samples/s")
    print(
        f"\nratio {results['ratio']:.2f} ({results['mean_tokens']:.1f} tokens of {SEQUENCE})  "
        f"stall_fraction {results['stall_fraction']:.3f}  long_text_ratio {results['long_text_ratio']:.2f} "
        f"({results['long_text_mean_tokens']:.1f} tokens of {SEQUENCE})"
    )
    write_json(args.json, results)
    return results


if __name__ == "__main__":
    sys.exit(0 if main() else 1)

"""TensorBoard beyond loss curves: what the model gets right and wrong, and why.

Every epoch, on a fixed sample of validation rows: the confusion matrix (or
predicted-vs-true scatter for a numeric target) as an image, a grid of
examples (picture or spectrogram, caption, true vs predicted), a few audio
clips, and the worst misclassified rows as a table. At the end: the
embeddings projector on the fused embedding (sprites and label/text
metadata) and the hparams plugin (spec hyperparameters and final metrics).
"""

import os

import keras
import numpy as np
import tensorflow as tf
from tensorboard.plugins import projector
from tensorboard.plugins.hparams import api as hparams_api

from mmkeras.models.backbone import FUSED_EMBEDDING
from mmkeras.reporting.plots import examples_figure, sprite_image
from mmkeras.tasks import FusionTask

EXAMPLES_DIR = "examples"
SPRITE_SIZE = 32


def _image_summary(name, png, step):
    tf.summary.image(name, tf.io.decode_png(png)[tf.newaxis], step=step)


class DataSummaries(keras.callbacks.Callback):
    """Writes the per-epoch pictures and, at the end, the projector.

    What depends on the kind of problem (a confusion matrix or a scatter,
    the worst mistakes, each row's "true vs predicted" line) comes from the
    Task's `epoch_summaries`; this callback adds the example grid, audio
    clips and the projector, which are the same for every task.

    Args:
        log_dir: str. The run's TensorBoard folder.
        sample: RowSample. The rows to show.
        spec: Spec. Names the features.
        num_examples: int. Rows in the example grid.
    """

    def __init__(self, log_dir, sample, spec, num_examples=16):
        super().__init__()
        self.log_dir = log_dir
        self.sample = sample
        self.spec = spec
        self.num_examples = min(num_examples, len(sample))
        self.writer = tf.summary.create_file_writer(os.path.join(log_dir, EXAMPLES_DIR))

    def _picture_feature(self):
        for modality in ("image", "audio"):
            for feature in self.spec.data.features:
                if feature.modality == modality:
                    return feature.name
        return None

    def on_epoch_end(self, epoch, logs=None):
        predictions = self.model.predict(self.sample.inputs, batch_size=256, verbose=0)
        summaries = self.model.epoch_summaries(self.sample, predictions)
        with self.writer.as_default():
            for name, png in summaries.images.items():
                _image_summary(name, png, epoch)
            for name, table in summaries.tables.items():
                tf.summary.text(name, table, step=epoch)
            self._write_examples(summaries.titles[: self.num_examples], epoch)
        self.writer.flush()

    def _write_examples(self, titles, epoch):
        feature = self._picture_feature()
        count = len(titles)
        captions = None
        text_features = list(self.sample.texts)
        if text_features:
            captions = self.sample.texts[text_features[0]][:count]
        if feature is not None:
            pictures = self.sample.inputs[feature][:count]
            _image_summary("examples", examples_figure(pictures, titles, captions), epoch)
        else:
            rows = [f"| {t} | {c} |" for t, c in zip(titles, captions or [""] * count)]
            tf.summary.text("examples", "\n".join(["| prediction | text |", "|---|---|", *rows]), step=epoch)
        rates = {f.name: f.sample_rate for f in self.spec.data.features if f.modality == "audio"}
        for name, waveforms in self.sample.waveforms.items():
            tf.summary.audio(
                f"{name}_clips",
                waveforms[:3, :, np.newaxis],
                rates[name],
                step=epoch,
                max_outputs=3,
                description=" / ".join(titles[:3]),
            )

    def on_train_end(self, logs=None):
        if isinstance(self.model, FusionTask):  # the fused embedding is what the projector shows
            write_projector(self.log_dir, self.model.backbone, self.sample, self._picture_feature())


def write_projector(log_dir, backbone, sample, picture_feature, max_rows=1000):
    """The fused embedding of the sample rows, for TensorBoard's projector."""
    inputs = {name: value[:max_rows] for name, value in sample.inputs.items()}
    embeddings = np.asarray(backbone.predict(inputs, batch_size=256, verbose=0)[FUSED_EMBEDDING])
    count = len(embeddings)
    text = next(iter(sample.texts.values()), None)
    with open(os.path.join(log_dir, "metadata.tsv"), "w", encoding="utf-8") as f:
        f.write("label\ttext\trow\n")
        for i in range(count):
            caption = (text[i] if text else "").replace("\t", " ").replace("\n", " ")
            f.write(f"{sample.raw_targets[i]}\t{caption}\t{sample.keys[i]}\n")
    config = projector.ProjectorConfig()
    embedding = config.embeddings.add()
    embedding.tensor_name = "embedding/.ATTRIBUTES/VARIABLE_VALUE"
    embedding.metadata_path = "metadata.tsv"
    if picture_feature is not None:
        with open(os.path.join(log_dir, "sprite.png"), "wb") as f:
            f.write(sprite_image(sample.inputs[picture_feature][:count], SPRITE_SIZE))
        embedding.sprite.image_path = "sprite.png"
        embedding.sprite.single_image_dim.extend([SPRITE_SIZE, SPRITE_SIZE])
    tf.train.Checkpoint(embedding=tf.Variable(embeddings)).save(os.path.join(log_dir, "embedding.ckpt"))
    projector.visualize_embeddings(log_dir, config)


def write_hparams(log_dir, spec, metrics):
    """The spec's hyperparameters and the final metrics, for the hparams plugin."""
    fusion = spec.model.fusion
    values = {
        "fusion": fusion["type"],
        "modality_dropout": float(fusion.get("modality_dropout", 0.0)),
        "modalities": ",".join(f.modality for f in spec.data.features),
        "batch_size": spec.data.batch_size,
        "epochs": spec.train.epochs,
        "optimizer": spec.train.optimizer,
        "learning_rate": spec.train.learning_rate,
        "weight_decay": spec.train.weight_decay,
        "schedule": spec.train.schedule,
    }
    for name, encoder in spec.model.encoders.items():
        values[f"encoder_{name}"] = encoder.get("type", "default")
    writer = tf.summary.create_file_writer(os.path.join(log_dir, "hparams"))
    with writer.as_default():
        hparams_api.hparams_config(
            hparams=[hparams_api.HParam(name) for name in values],
            metrics=[hparams_api.Metric(f"final/{name}", display_name=name) for name in metrics],
        )
        hparams_api.hparams(values)
        for name, value in metrics.items():
            tf.summary.scalar(f"final/{name}", value, step=0)
    writer.flush()

"""A CLIP-style dual encoder for text-to-image and image-to-text retrieval."""

import math

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from mmkeras.errors import SpecError
from mmkeras.models.builder import build_encoder
from mmkeras.reporting import plots
from mmkeras.tasks.task import Evaluation, ParityCase, Task, raw_signature, register_task


@keras.saving.register_keras_serializable(package="mmkeras")
class L2Normalize(keras.layers.Layer):
    """Scales each vector to unit length, in float32 unless given another dtype.

    A 16-bit sum of squares overflows above a norm of 256, and the epsilon
    that keeps a zero vector finite is chosen by dtype.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def call(self, x):
        tiny = float(np.finfo(keras.backend.standardize_dtype(x.dtype)).tiny)
        return x * ops.rsqrt(ops.maximum(ops.sum(ops.square(x), axis=-1, keepdims=True), tiny))


def _replica():
    """(this replica's index, number of replicas) where the code runs."""
    context = tf.distribute.get_replica_context()
    if context is None:  # cross-replica context: one copy of everything
        return 0, 1
    return context.replica_id_in_sync_group, context.num_replicas_in_sync


def gather_replicas(x):
    """`x` from every replica of the strategy, concatenated along the batch.

    The gradient of each replica's copy is the sum over replicas of the
    gradients with respect to it (`ReplicaContext.all_gather`'s own), so a
    loss that every replica computes for its own rows only adds up to the
    loss of the global batch.
    """
    _, replicas = _replica()
    if replicas == 1:
        return x
    return tf.distribute.get_replica_context().all_gather(x, axis=0)


def _local_rows(local_size):
    """Indices of this replica's rows in the gathered global batch."""
    replica, replicas = _replica()
    if replicas == 1:
        return ops.arange(local_size)
    sizes = gather_replicas(ops.reshape(local_size, (1,)))
    offset = ops.sum(sizes[:replica])
    return offset + ops.arange(local_size)


@keras.saving.register_keras_serializable(package="mmkeras")
class ContrastiveSimilarity(keras.layers.Layer):
    """Cosine similarities of every text with every image, times a learned scale.

    The scale is `1 / temperature`, learned in log space from
    `initial_temperature` and capped at 100, as in CLIP. Under a strategy
    with several replicas the embeddings of all replicas are gathered first,
    so every text is compared with every image of the global batch (the
    negatives one device would see) and each replica returns the global
    `[global_batch, global_batch]` matrix. Computes in float32 unless given
    another dtype: the matrix is the contrastive loss's logits.

    Args:
        initial_temperature: float. Starting softmax temperature.
    """

    def __init__(self, initial_temperature=0.07, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.initial_temperature = initial_temperature

    def build(self, input_shape):
        self.log_scale = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(math.log(1 / self.initial_temperature)),
            name="log_scale",
        )

    def call(self, inputs):
        text, image = (gather_replicas(x) for x in inputs)
        scale = ops.exp(ops.minimum(self.log_scale, math.log(100.0)))
        return scale * ops.matmul(text, ops.transpose(image))

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], input_shape[1][0])

    def get_config(self):
        config = super().get_config()
        config.update({"initial_temperature": self.initial_temperature})
        return config


HEADLINE_RECALL = "text_to_image@10"


@register_task(None)
class DualEncoder(Task):
    """Two towers projected into one normalised space, trained contrastively.

    Its output for a batch of pairs is the `[batch, batch]` matrix of scaled
    similarities; the loss is the symmetric cross-entropy that asks each text
    to pick its own image among the batch and each image its own text.
    `encode_text` and `encode_image` map inputs to unit vectors for an index.
    Built for a spec with one text and one image feature and no target.

    Serving signatures: `encode_text` (also `serving_default`, the query
    side) and `encode_image`, each taking its one raw feature and returning
    the unit-length `embedding`.

    Args:
        text_encoder: keras.Model. A text encoder from `mmkeras.layers`.
        image_encoder: keras.Model. An image encoder from `mmkeras.layers`.
        text_feature: str. Name of the text input.
        image_feature: str. Name of the image input.
        projection_dim: int. Width of the shared space.
        initial_temperature: float. Starting temperature of the softmax.
        preprocessor: Preprocessor. Raw rows to the two inputs.
    """

    def __init__(
        self,
        text_encoder,
        image_encoder,
        text_feature="text",
        image_feature="image",
        projection_dim=128,
        initial_temperature=0.07,
        preprocessor=None,
        **kwargs,
    ):
        text_input = keras.Input(
            shape=text_encoder.input["token_ids"].shape[1:], dtype="int32", name=text_feature
        )
        image_input = keras.Input(shape=image_encoder.input["images"].shape[1:], name=image_feature)
        text_pooled = text_encoder({"token_ids": text_input})["pooled"]
        image_pooled = image_encoder({"images": image_input})["pooled"]
        text_embedding = L2Normalize(name="text_embedding")(
            keras.layers.Dense(projection_dim, name="text_projection")(text_pooled)
        )
        image_embedding = L2Normalize(name="image_embedding")(
            keras.layers.Dense(projection_dim, name="image_projection")(image_pooled)
        )
        similarity = ContrastiveSimilarity(initial_temperature, name="similarity")(
            [text_embedding, image_embedding]
        )
        super().__init__(
            inputs={text_feature: text_input, image_feature: image_input},
            outputs=similarity,
            preprocessor=preprocessor,
            **kwargs,
        )
        self.text_encoder = text_encoder
        self.image_encoder = image_encoder
        self.text_feature = text_feature
        self.image_feature = image_feature
        self.projection_dim = projection_dim
        self.initial_temperature = initial_temperature

    def call(self, inputs, training=None, mask=None):
        # Preprocessed rows also carry `modality_mask`; retrieval has no use for it.
        inputs = {name: inputs[name] for name in (self.text_feature, self.image_feature)}
        return super().call(inputs, training=training, mask=mask)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        # y_pred is the global batch's similarity matrix; this replica scores
        # its own texts (rows) and its own images (columns), and divides by
        # the global batch: summed over replicas, as Keras sums gradients,
        # that is the one-device loss of the global batch.
        rows = _local_rows(ops.shape(x[self.text_feature])[0])
        text_to_image = keras.losses.sparse_categorical_crossentropy(
            rows, ops.take(y_pred, rows, axis=0), from_logits=True
        )
        image_to_text = keras.losses.sparse_categorical_crossentropy(
            rows, ops.take(ops.transpose(y_pred), rows, axis=0), from_logits=True
        )
        global_size = ops.cast(ops.shape(y_pred)[0], "float32")
        loss = (ops.sum(text_to_image) + ops.sum(image_to_text)) / (2 * global_size)
        if self.losses:
            loss = loss + tf.nn.scale_regularization_loss(ops.sum(self.losses))
        return loss

    def tower(self, feature):
        """The model from one preprocessed input to its unit-length embedding."""
        embedding = "text_embedding" if feature == self.text_feature else "image_embedding"
        return keras.Model(self.input[feature], self.get_layer(embedding).output)

    def encode_text(self, token_ids, batch_size=256):
        """Unit vectors for a batch of token ids (a NumPy array)."""
        return self.tower(self.text_feature).predict(token_ids, batch_size=batch_size, verbose=0)

    def encode_image(self, images, batch_size=256):
        """Unit vectors for a batch of preprocessed images (a NumPy array)."""
        return self.tower(self.image_feature).predict(images, batch_size=batch_size, verbose=0)

    @classmethod
    def from_spec(cls, spec, preprocessor):
        texts = [f for f in spec.data.features if f.modality == "text"]
        images = [f for f in spec.data.features if f.modality == "image"]
        if len(texts) != 1 or len(images) != 1 or len(spec.data.features) != 2:
            raise SpecError("data.features: a retrieval model needs exactly one text and one image feature.")
        return cls(
            build_encoder(texts[0], spec, preprocessor),
            build_encoder(images[0], spec, preprocessor),
            text_feature=texts[0].name,
            image_feature=images[0].name,
            projection_dim=spec.model.projection_dim,
            preprocessor=preprocessor,
            name="dual_encoder",
        )

    def default_loss(self, label_smoothing=0.0):
        return None  # compute_loss is the contrastive loss

    def towers(self):
        """{signature name: (feature, tower model)}."""
        return {
            "encode_text": (self.text_feature, self.tower(self.text_feature)),
            "encode_image": (self.image_feature, self.tower(self.image_feature)),
        }

    def export_archive(self):
        archive = keras.export.ExportArchive()
        archive.track(self.preprocessor)
        for signature, (feature, tower) in self.towers().items():
            archive.track(tower)
            encode = _encoder_endpoint(self.preprocessor, feature, tower)
            archive.add_endpoint(signature, encode, input_signature=raw_signature([feature]))
            if signature == "encode_text":
                archive.add_endpoint("serving_default", encode, input_signature=raw_signature([feature]))
        return archive

    def documented_inputs(self):
        listing = {signature: [feature] for signature, (feature, _) in self.towers().items()}
        listing["serving_default"] = listing["encode_text"]
        return listing

    def parity_cases(self, sample):
        return [
            ParityCase(
                signature,
                {feature: sample.raw[feature]},
                "embedding",
                tower.predict(sample.inputs[feature], verbose=0),
            )
            for signature, (feature, tower) in self.towers().items()
        ]

    def prediction_columns(self, predictions):
        raise SpecError(
            "predict: a retrieval model scores pairs, not rows; embed texts and images with "
            "`encode_text` / `encode_image` (or the exported signatures of the same names)."
        )

    def headline(self, report):
        # Text-to-image is the search a user runs; top 10 is a page of results.
        return HEADLINE_RECALL, report[HEADLINE_RECALL]

    def evaluate_dataset(self, dataset):
        """Recall@1/5/10 both ways over the whole split as one index."""
        towers = self.towers()
        embeddings = {feature: [] for feature, _ in towers.values()}
        for inputs in dataset:
            for feature, tower in towers.values():
                embeddings[feature].append(tower.predict_on_batch(inputs[feature]))
        report = recall_at_k(
            np.concatenate(embeddings[self.text_feature]), np.concatenate(embeddings[self.image_feature])
        )
        report["rows"] = int(sum(len(batch) for batch in embeddings[self.text_feature]))
        report["headline"] = HEADLINE_RECALL
        recalls = {name: value for name, value in report.items() if "@" in name}
        figure = plots.bar_figure(recalls, "Recall at k over the split", "recall")
        return Evaluation(report, {"recall_at_k.png": figure})

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "text_encoder": keras.layers.serialize(self.text_encoder),
                "image_encoder": keras.layers.serialize(self.image_encoder),
                "text_feature": self.text_feature,
                "image_feature": self.image_feature,
                "projection_dim": self.projection_dim,
                "initial_temperature": self.initial_temperature,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["text_encoder"] = keras.layers.deserialize(config["text_encoder"])
        config["image_encoder"] = keras.layers.deserialize(config["image_encoder"])
        return super().from_config(config)


def _encoder_endpoint(preprocessor, feature, tower):
    def encode(raw):
        return {"embedding": tower(preprocessor.features[feature](raw[feature]), training=False)}

    return encode


def recall_at_k(text_embeddings, image_embeddings, ks=(1, 5, 10)):
    """Retrieval recall over a whole index, where row i of each side is a pair.

    Returns `{"text_to_image@k": ..., "image_to_text@k": ...}`: the fraction
    of queries whose own pair is among the top k by cosine similarity.
    """
    similarity = np.asarray(text_embeddings) @ np.asarray(image_embeddings).T
    own = np.diag(similarity)[:, None]
    # Rank = how many candidates score strictly higher than the true pair.
    text_rank = (similarity > own).sum(axis=1)
    image_rank = (similarity.T > own).sum(axis=1)
    results = {}
    for k in ks:
        results[f"text_to_image@{k}"] = float(np.mean(text_rank < k))
        results[f"image_to_text@{k}"] = float(np.mean(image_rank < k))
    return results

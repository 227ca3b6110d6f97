"""Image captioning: an image encoder, a caption decoder, beam search in the graph."""

import hashlib

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from mmkeras.errors import SpecError
from mmkeras.layers.registry import decoder_class, default_decoder
from mmkeras.models.builder import build_encoder
from mmkeras.reporting import plots
from mmkeras.reporting.caption_metrics import cider_d, corpus_bleu
from mmkeras.tasks.beam_search import beam_search
from mmkeras.tasks.caption_target import PAD_ID, CaptionTarget
from mmkeras.tasks.losses import SparseCrossentropy
from mmkeras.tasks.task import EpochSummaries, Evaluation, ParityCase, Task, raw_signature, register_task

HEADLINE = "cider_d"
# Images generated for at once in `evaluate` (the last batch padded to it).
GENERATION_BATCH = 32
# Images in `evaluate`'s grid of generated captions (above) and a reference (below).
GRID_IMAGES = 16
# An out-of-vocabulary word of a reference: a word no generated token matches.
_UNKNOWN_REFERENCE_WORD = "\x00unknown"


@keras.saving.register_keras_serializable(package="mmkeras")
class TokenAccuracy(keras.metrics.Mean):
    """The share of next tokens predicted right, padding left out."""

    def __init__(self, name="token_accuracy", **kwargs):
        super().__init__(name=name, **kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.cast(y_true, "int32")
        right = ops.cast(ops.equal(ops.cast(ops.argmax(y_pred, axis=-1), "int32"), y_true), "float32")
        return super().update_state(right, sample_weight=ops.cast(ops.not_equal(y_true, PAD_ID), "float32"))


@register_task("sequence")
class Captioner(Task):
    """Writes a caption for an image.

    The image encoder's `sequence` output (its regions) is what the decoder
    attends to; training is teacher forcing (the model reads the caption so
    far and predicts each next token, cross-entropy over the real tokens);
    `predict` and serving generate with beam search, in TensorFlow ops.

    Serving signature `serving_default`: the encoded image bytes in;
    `caption` (the best beam's text), `beams` (every beam's text, best
    first) and `beam_scores` (their length-penalised log-probabilities) out.

    Args:
        image_encoder: keras.Model. An image encoder from `mmkeras.layers`.
        decoder: keras.layers.Layer. A caption decoder from `mmkeras.layers`.
        image_feature: str. Name of the image input.
        beam_width: int. Beams kept while generating; 1 is greedy decoding.
        length_penalty: float. See `beam_search`.
        preprocessor: Preprocessor. Raw rows to the image input; its
            `target` is a `CaptionTarget`.
    """

    # Scored against captions written without a model (`mmkeras.evaluation.caption_baselines`).
    compares_to_baselines = True
    higher_is_better = True  # CIDEr-D
    # TensorBoard shows the captions it writes for a few validation pictures each epoch.
    shows_examples = True
    example_sample_rows = 32

    def __init__(
        self,
        image_encoder,
        decoder,
        image_feature="image",
        beam_width=3,
        length_penalty=0.6,
        preprocessor=None,
        **kwargs,
    ):
        previous = CaptionTarget.previous_tokens
        image_input = keras.Input(shape=image_encoder.input["images"].shape[1:], name=image_feature)
        tokens_input = keras.Input(shape=(decoder.sequence_length,), dtype="int32", name=previous)
        regions = image_encoder({"images": image_input})["sequence"]
        logits = decoder(tokens_input, regions)
        super().__init__(
            inputs={image_feature: image_input, previous: tokens_input},
            outputs=logits,
            preprocessor=preprocessor,
            **kwargs,
        )
        self.image_encoder = image_encoder
        self.decoder = decoder
        self.image_feature = image_feature
        self.beam_width = beam_width
        self.length_penalty = length_penalty

    def call(self, inputs, training=None, mask=None):
        # Preprocessed rows also carry `modality_mask`; one image has no use for it.
        inputs = {name: inputs[name] for name in (self.image_feature, CaptionTarget.previous_tokens)}
        return super().call(inputs, training=training, mask=mask)

    @classmethod
    def from_spec(cls, spec, preprocessor):
        images = [f for f in spec.data.features if f.modality == "image"]
        if len(images) != 1 or len(spec.data.features) != 1:
            raise SpecError("data.features: a captioning model reads exactly one image feature.")
        target = preprocessor.target
        arguments = dict(spec.model.decoder)
        kind = arguments.pop("type", default_decoder())
        decoder = decoder_class(kind, "model.decoder")(
            vocabulary_size=target.vocabulary_size,
            sequence_length=target.max_length + 1,
            name="decoder",
            **arguments,
        )
        return cls(
            build_encoder(images[0], spec, preprocessor),
            decoder,
            image_feature=images[0].name,
            beam_width=spec.model.generation.beam_width,
            length_penalty=spec.model.generation.length_penalty,
            preprocessor=preprocessor,
            name="captioner",
        )

    @classmethod
    def target_encoder(cls, spec):
        settings = spec.data.target.sequence
        return CaptionTarget(
            max_length=settings.max_length,
            max_tokens=settings.max_tokens,
            split=settings.split,
            standardize=settings.standardize,
            tokenizer_preset=spec.resolve(settings.tokenizer),
            name="target",
        )

    def default_loss(self, label_smoothing=0.0):
        if label_smoothing:
            return SparseCrossentropy(label_smoothing, from_logits=True, ignore_class=PAD_ID)
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=PAD_ID)

    def default_metrics(self):
        return [TokenAccuracy()]

    # Generation.

    def set_generation(self, beam_width=None, length_penalty=None):
        """Writes with another beam width or length penalty from now on
        (`predict`, `evaluate`, an export); None keeps the current value."""
        if beam_width is not None:
            self.beam_width = beam_width
        if length_penalty is not None:
            self.length_penalty = length_penalty
        self.predict_function = None  # traced with the old values

    def generate(self, images):
        """Beam search from preprocessed images: (token ids `[batch, beams,
        max_length]`, scores `[batch, beams]`), best beam first."""
        target = self.preprocessor.target
        regions = self.image_encoder({"images": images}, training=False)["sequence"]
        regions = tf.repeat(regions, self.beam_width, axis=0)  # one copy per beam, rows in beam order

        def next_log_probs(tokens, step):
            logits = self.decoder(tokens, regions, training=False)
            return tf.nn.log_softmax(tf.gather(logits, step, axis=1))

        return beam_search(
            next_log_probs,
            tf.shape(images)[0],
            target.start_id,
            target.end_id,
            self.decoder.sequence_length,
            width=self.beam_width,
            length_penalty=self.length_penalty,
        )

    def predict_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        tokens, scores = self.generate(x[self.image_feature])
        return {"tokens": tokens, "scores": scores}

    def serving_outputs(self, predictions):
        tokens, scores = predictions["tokens"], predictions["scores"]
        to_text = self.preprocessor.target.to_text
        beams = tf.reshape(to_text(tf.reshape(tokens, [-1, tf.shape(tokens)[-1]])), tf.shape(scores))
        return {"caption": beams[:, 0], "beams": beams, "beam_scores": scores}

    def decode(self, predictions):
        outputs = self.serving_outputs({name: tf.convert_to_tensor(v) for name, v in predictions.items()})
        return {name: np.asarray(value) for name, value in outputs.items()}

    def prediction_columns(self, predictions):
        outputs = self.decode(predictions)
        return [
            {"predicted_caption": caption.decode("utf-8"), "caption_score": f"{scores[0]:.6f}"}
            for caption, scores in zip(outputs["caption"], outputs["beam_scores"])
        ]

    # Export.

    def export_archive(self):
        archive = keras.export.ExportArchive()
        archive.track(self)
        archive.track(self.preprocessor)

        def serve_raw(raw):
            images = self.preprocessor(raw)[self.image_feature]
            return self.serving_outputs(dict(zip(("tokens", "scores"), self.generate(images))))

        archive.add_endpoint(
            "serving_default", serve_raw, input_signature=raw_signature(self.preprocessor.input_names)
        )
        return archive

    def documented_inputs(self):
        return {"serving_default": self.preprocessor.input_names}

    def parity_cases(self, sample):
        scores = self.predict(sample.inputs, verbose=0)["scores"]
        return [ParityCase("serving_default", sample.raw, "beam_scores", scores)]

    def epoch_summaries(self, sample, predictions):
        generated = [caption.decode("utf-8") for caption in self.decode(predictions)["caption"]]
        rows = [f"| {g} | {r} |".replace("\n", " ") for g, r in zip(generated, sample.raw_targets)]
        table = "\n".join(["| generated | a reference |", "|---|---|", *rows])
        return EpochSummaries(images={}, tables={"captions": table}, titles=generated)

    # Evaluation.

    def headline(self, report):
        return HEADLINE, report[HEADLINE]

    def per_image(self, dataset, describe):
        """One pass over `(inputs, next tokens)` batches, rows with the same
        preprocessed picture taken as one image.

        Args:
            dataset: tf.data.Dataset. Batches from `make_dataset`.
            describe: callable. A batch of images (each seen for the first
                time) to one value per image.

        Returns:
            (`describe`'s value per image, the image's reference captions as
            word lists, the number of rows), images in first-seen order.
        """
        encoder = self.preprocessor.target
        index, described, references = {}, [], []
        rows = 0
        for inputs, target in dataset:
            images = np.asarray(inputs[self.image_feature])
            keys = [hashlib.sha1(image.tobytes()).hexdigest() for image in images]
            new = [i for i, key in enumerate(keys) if key not in index and key not in keys[:i]]
            if new:
                for i, value in zip(new, describe(tf.gather(images, new))):
                    index[keys[i]] = len(described)
                    described.append(value)
                    references.append([])
            for key, reference in zip(keys, np.asarray(target)):
                references[index[key]].append(encoder.words(reference, _UNKNOWN_REFERENCE_WORD))
            rows += len(keys)
        return described, references, rows

    def generated_words(self, images):
        """The best beam for each image, as a word list."""
        # Through the compiled predict step (an eager beam search runs op by op),
        # always GENERATION_BATCH images at once: each new batch size would
        # trace the whole search again, which costs seconds.
        words = []
        for start in range(0, len(images), GENERATION_BATCH):
            chunk = images[start : start + GENERATION_BATCH]
            count = len(chunk)
            padded = tf.concat([chunk, tf.repeat(chunk[-1:], GENERATION_BATCH - count, axis=0)], axis=0)
            tokens = self.predict_on_batch({self.image_feature: padded})["tokens"][:count]
            words.extend(self.preprocessor.target.words(generated) for generated in tokens[:, 0])
        return words

    def pooled_features(self, images):
        """The image encoder's pooled output for each image."""
        return list(np.asarray(self.image_encoder({"images": images}, training=False)["pooled"]))

    def caption_scores(self, hypotheses, references):
        """{bleu_1..bleu_4, cider_d} of one caption per image against its references."""
        scores = {f"bleu_{n}": value for n, value in enumerate(corpus_bleu(hypotheses, references), start=1)}
        scores[HEADLINE], _ = cider_d(hypotheses, references)
        return scores

    def evaluate_dataset(self, dataset):
        """Corpus BLEU-1..4 and CIDEr-D of the best beam per image, against
        every caption the split has for that image. References are as the
        target encodes them: standardised, cut at `max_length`, and a word
        outside the vocabulary is a word no generated caption can match."""
        pictures = []  # the first images, for the grid

        def describe(images):
            if len(pictures) < GRID_IMAGES:
                pictures.extend(np.asarray(images[: GRID_IMAGES - len(pictures)]))
            return self.generated_words(images)

        hypotheses, references, rows = self.per_image(dataset, describe)
        report = self.caption_scores(hypotheses, references)
        report.update({"images": len(hypotheses), "rows": rows, "headline": HEADLINE})
        figure = plots.bar_figure(
            {name: report[name] for name in (*(f"bleu_{n}" for n in range(1, 5)), HEADLINE)},
            "Caption metrics over the split",
            "score",
        )
        join = self.preprocessor.target.join
        grid = plots.examples_figure(
            pictures,
            [join(words) for words in hypotheses[: len(pictures)]],
            [join(image_references[0]) for image_references in references[: len(pictures)]],
        )
        return Evaluation(report, {"caption_metrics.png": figure, "captions.png": grid})

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "image_encoder": keras.layers.serialize(self.image_encoder),
                "decoder": keras.layers.serialize(self.decoder),
                "image_feature": self.image_feature,
                "beam_width": self.beam_width,
                "length_penalty": self.length_penalty,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["image_encoder"] = keras.layers.deserialize(config["image_encoder"])
        config["decoder"] = keras.layers.deserialize(config["decoder"])
        return super().from_config(config)

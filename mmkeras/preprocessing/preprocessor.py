"""The composite preprocessor: a raw row (strings, bytes) to model inputs."""

import keras
import tensorflow as tf

from mmkeras.preprocessing.audio import AudioPreprocessor
from mmkeras.preprocessing.image import ImageAugmenter, ImagePreprocessor
from mmkeras.preprocessing.preprocessing_layer import PreprocessingLayer
from mmkeras.preprocessing.record import RecordPreprocessor
from mmkeras.preprocessing.text import TextPreprocessor, trim_padding

MODALITY_MASK = "modality_mask"


def feature_preprocessor(feature, spec):
    """The preprocessing layer for one feature of a spec."""
    if feature.modality == "text":
        return TextPreprocessor(
            sequence_length=feature.sequence_length,
            max_tokens=feature.max_tokens,
            standardize=feature.standardize,
            split=feature.split,
            tokenizer_preset=spec.resolve(feature.tokenizer),
            name=f"{feature.name}_text",
        )
    if feature.modality == "record":
        return RecordPreprocessor(
            [column.preprocessing_config() for column in feature.columns], name=f"{feature.name}_record"
        )
    if feature.modality == "image":
        return ImagePreprocessor(
            size=feature.size,
            channels=feature.channels,
            keep_aspect_ratio=feature.keep_aspect_ratio,
            value_range=feature.value_range,
            name=f"{feature.name}_image",
        )
    return AudioPreprocessor(
        sample_rate=feature.sample_rate,
        duration_s=feature.duration_s,
        frame_length_ms=feature.frame_length_ms,
        frame_step_ms=feature.frame_step_ms,
        num_mel_bins=feature.num_mel_bins,
        min_hz=feature.min_hz,
        max_hz=feature.max_hz,
        name=f"{feature.name}_audio",
    )


def _is_present(raw, layer):
    """Whether a raw value holds something: text beyond spaces, any bytes."""
    if isinstance(layer, (TextPreprocessor, RecordPreprocessor)):
        raw = tf.strings.strip(raw)
    return tf.strings.length(raw) > 0


@keras.saving.register_keras_serializable(package="mmkeras")
class Preprocessor(PreprocessingLayer):
    """Maps a raw row to the model's input dict, with TensorFlow ops only.

    Called on a dict of `tf.string` tensors keyed by raw input name (a
    feature's name, or a record column's: text, a number or category as
    text, or the encoded bytes of an image or WAV file), batched or not, it
    returns a dict of numeric tensors keyed by feature name, plus
    `modality_mask`: one float per feature, 0 where its raw value was an
    empty string (for a record, every column empty: a missing modality,
    which the model masks out) and 1 elsewhere. The same object runs in the
    tf.data pipeline during training and inside the exported serving graph,
    so what the model sees in production is what it saw in training.

    Args:
        features: dict. Feature name to its preprocessing layer.
        target: layer or None. Encodes the raw target (the Task's
            `target_encoder`), with `adapt` and `problem`.
        augmenters: dict. Image feature name to its `ImageAugmenter`,
            applied to training batches only (see `augment`).

    Example:

    >>> preprocessor = Preprocessor.from_spec(spec)
    >>> preprocessor.adapt(texts={"caption": captions}, targets=labels)
    >>> preprocessor({"caption": "a red car", "photo": jpeg_bytes})
    """

    def __init__(self, features, target=None, augmenters=None, **kwargs):
        super().__init__(**kwargs)
        self.features = dict(features)
        self.target = target
        self.augmenters = dict(augmenters or {})

    @classmethod
    def from_spec(cls, spec, target=None):
        """A preprocessor for the spec's features, not adapted yet.

        Args:
            spec: Spec. Its `data.features` give one layer each; image
                features with `augment:` get an augmenter.
            target: layer or None. Encodes the raw target: the Task's
                `target_encoder` for the spec's target.
        """
        data = spec.data
        features = {f.name: feature_preprocessor(f, spec) for f in data.features}
        augmenters = {
            f.name: ImageAugmenter(
                flip=f.augment.flip,
                rotation=f.augment.rotation,
                zoom=f.augment.zoom,
                contrast=f.augment.contrast,
                value_range=f.value_range,
                seed=data.seed,
                name=f"{f.name}_augment",
            )
            for f in data.features
            if f.modality == "image" and f.augment is not None and f.augment.enabled
        }
        return cls(features, target=target, augmenters=augmenters, name="preprocessor")

    def adapt(self, texts=None, records=None, targets=None):
        """Learns vocabularies, record statistics and label sets from the training split.

        Args:
            texts: dict. Text feature name to an iterable of training strings.
            records: dict. Record feature name to {column name: training cells}.
            targets: iterable or None. The training split's raw targets.
        """
        for name, values in {**(texts or {}), **(records or {})}.items():
            self.features[name].adapt(values)
        if self.target is not None and targets is not None:
            self.target.adapt(targets)

    def feature_inputs(self, name):
        """The raw input names feature `name` reads."""
        layer = self.features[name]
        return layer.input_names if isinstance(layer, RecordPreprocessor) else [name]

    @property
    def input_names(self):
        """Every raw input name, in feature order: what a serving request carries."""
        return [raw for name in self.features for raw in self.feature_inputs(name)]

    def call(self, inputs):
        missing = [name for name in self.input_names if name not in inputs]
        if missing:
            raise KeyError(f"raw input is missing {missing}; expected keys {self.input_names}.")
        outputs, present = {}, []
        for name, layer in self.features.items():
            raw = {key: inputs[key] for key in self.feature_inputs(name)}
            outputs[name] = layer(raw if isinstance(layer, RecordPreprocessor) else raw[name])
            # 1 where a feature's raw value is present, 0 where it is empty (a
            # text of spaces too): the model masks missing modalities out of the fusion.
            present.append(tf.reduce_any(tf.stack([_is_present(v, layer) for v in raw.values()]), axis=0))
        outputs[MODALITY_MASK] = tf.cast(tf.stack(present, axis=-1), tf.float32)
        return outputs

    def trim_padding(self, inputs):
        """A batch of model inputs with each text's padding trimmed to the
        batch's longest text (`mmkeras.preprocessing.text.trim_padding`)."""
        return {
            name: trim_padding(value) if isinstance(self.features.get(name), TextPreprocessor) else value
            for name, value in inputs.items()
        }

    @property
    def has_text(self):
        """Whether any feature is text (token ids that `trim_padding` trims)."""
        return any(isinstance(layer, TextPreprocessor) for layer in self.features.values())

    def augment(self, inputs, seed=None):
        """Applies the train-time image augmentation to a batch of model inputs.

        Args:
            inputs: dict. A batch of preprocessed inputs.
            seed: int tensor of shape [2] or None. Makes the transforms of
                this batch reproducible.
        """
        outputs = dict(inputs)
        for index, (name, augmenter) in enumerate(self.augmenters.items()):
            feature_seed = None
            if seed is not None:
                feature_seed = tf.random.experimental.stateless_fold_in(seed, index)
            outputs[name] = augmenter(outputs[name], training=True, seed=feature_seed)
        return outputs

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "features": {name: keras.layers.serialize(layer) for name, layer in self.features.items()},
                "target": keras.layers.serialize(self.target) if self.target else None,
                "augmenters": {
                    name: keras.layers.serialize(layer) for name, layer in self.augmenters.items()
                },
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["features"] = {
            name: keras.layers.deserialize(layer) for name, layer in config["features"].items()
        }
        if config.get("target"):
            config["target"] = keras.layers.deserialize(config["target"])
        config["augmenters"] = {
            name: keras.layers.deserialize(layer) for name, layer in config.get("augmenters", {}).items()
        }
        return cls(**config)

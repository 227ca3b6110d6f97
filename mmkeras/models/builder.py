"""`build_model`: a spec and its preprocessor to a Functional Keras model."""

import inspect

import keras

from mmkeras.errors import SpecError
from mmkeras.layers import (
    BackboneImageEncoder,
    CNNImageEncoder,
    ConcatFusion,
    CrossModalAttentionFusion,
    GatedFusion,
    LateFusion,
    LowRankTensorFusion,
    LSTMTextEncoder,
    ModalityDropout,
    PretrainedTextEncoder,
    SpectrogramCNNEncoder,
    TensorFusion,
    TransformerTextEncoder,
)
from mmkeras.models.heads import compile_for_target, output_units
from mmkeras.preprocessing.preprocessor import MODALITY_MASK

ENCODERS = {
    ("text", "lstm"): LSTMTextEncoder,
    ("text", "transformer"): TransformerTextEncoder,
    ("text", "pretrained"): PretrainedTextEncoder,
    ("image", "cnn"): CNNImageEncoder,
    ("image", "backbone"): BackboneImageEncoder,
    ("audio", "spectrogram_cnn"): SpectrogramCNNEncoder,
}
DEFAULT_ENCODER = {"text": "lstm", "image": "cnn", "audio": "spectrogram_cnn"}
ENCODER_INPUT = {"text": "token_ids", "image": "images", "audio": "audio"}
FUSED_EMBEDDING = "fused_embedding"
PREDICTION = "prediction"


def feature_input(feature, preprocessor):
    """The `keras.Input` for one feature's preprocessed tensor."""
    if feature.modality == "text":
        return keras.Input(shape=(feature.sequence_length,), dtype="int32", name=feature.name)
    if feature.modality == "image":
        return keras.Input(shape=(*feature.size, feature.channels), name=feature.name)
    audio = preprocessor.features[feature.name]
    return keras.Input(shape=(audio.num_frames, audio.num_mel_bins), name=feature.name)


def _derived_arguments(feature, kind, preprocessor, spec):
    """Constructor arguments that follow from the data, not from the user."""
    layer = preprocessor.features[feature.name]
    if feature.modality == "text":
        if kind == "pretrained":
            if not feature.tokenizer:
                raise SpecError(
                    f"model.encoders.{feature.name}: a pretrained encoder needs the "
                    f"feature's `tokenizer:` to name the same preset folder."
                )
            return {"preset": spec.resolve(feature.tokenizer)}
        arguments = {"vocabulary_size": layer.vocabulary_size}
        if kind == "transformer":
            arguments["sequence_length"] = feature.sequence_length
        return arguments
    if feature.modality == "image":
        return {"image_shape": (*feature.size, feature.channels)}
    return {"spectrogram_shape": (layer.num_frames, layer.num_mel_bins)}


def _check_arguments(cls, arguments, where):
    """Rejects arguments `cls` does not take, listing the ones it does."""
    accepted = [
        name
        for name, parameter in inspect.signature(cls.__init__).parameters.items()
        if name != "self" and parameter.kind is not inspect.Parameter.VAR_KEYWORD
    ]
    unknown = sorted(set(arguments) - set(accepted))
    if unknown:
        raise SpecError(
            f"{where}: {cls.__name__} has no argument(s) {', '.join(unknown)}; "
            f"it takes {', '.join(accepted)}."
        )


def build_encoder(feature, spec, preprocessor):
    """The encoder the spec's `model.encoders` names for `feature`."""
    config = dict(spec.model.encoders.get(feature.name, {}))
    kind = config.pop("type", DEFAULT_ENCODER[feature.modality])
    cls = ENCODERS[(feature.modality, kind)]
    _check_arguments(cls, config, f"model.encoders.{feature.name}")
    arguments = {**_derived_arguments(feature, kind, preprocessor, spec), **config}
    return cls(name=f"{feature.name}_encoder", **arguments)


FUSIONS = {
    "concat": ConcatFusion,
    "late": LateFusion,
    "gated": GatedFusion,
    "tensor": TensorFusion,
    "low_rank_tensor": LowRankTensorFusion,
    "cross_attention": CrossModalAttentionFusion,
}


def _fuse(fusion_config, encoded, modality_mask, num_outputs):
    """Applies the spec's fusion. Late fusion fuses decisions: its fused
    vector is the combined logits, and the head has nothing left to add."""
    config = dict(fusion_config)
    kind = config.pop("type")
    dropout = ModalityDropout(config.pop("modality_dropout", 0.0), name="modality_dropout")
    cls = FUSIONS[kind]
    _check_arguments(cls, config, "model.fusion")
    if kind == "late":
        config["num_outputs"] = num_outputs
    fusion = cls(name="fusion", **config)
    if kind == "cross_attention":
        sequences, mask = dropout([e["sequence"] for e in encoded], modality_mask)
        return fusion(sequences, [e["sequence_mask"] for e in encoded], modality_mask=mask)
    pooled, mask = dropout([e["pooled"] for e in encoded], modality_mask)
    if kind in ("late", "gated"):
        return fusion(pooled, modality_mask=mask)
    return fusion(pooled)


def build_model(spec, preprocessor, compile=True, optimizer="adam"):
    """Builds the Functional model for a classification or regression spec.

    One input per feature (named after it) plus `modality_mask`; an encoder
    per feature (`{name}_encoder`), the fusion, a head. The fused vector is
    the output of the layer named `fused_embedding` (for late fusion, the
    combined logits); the model's output is `prediction`. Compiled with the
    loss and metrics of the target type unless `compile=False`.

    Args:
        spec: Spec. Data and model sections.
        preprocessor: Preprocessor. Adapted; gives vocabulary sizes and labels.
        compile: bool. Compile for the target type.
        optimizer: str or keras.optimizers.Optimizer.

    Returns:
        A `keras.Model`.
    """
    target = spec.data.target
    if target is None:
        raise SpecError(
            "data.target: build_model needs a target; for name/image pairs use "
            "mmkeras.models.build_dual_encoder."
        )
    num_labels = len(preprocessor.target.labels) if target.is_classification else 1
    units, activation = output_units(target.type, num_labels)
    features = spec.data.features
    inputs = {f.name: feature_input(f, preprocessor) for f in features}
    inputs[MODALITY_MASK] = keras.Input(shape=(len(features),), name=MODALITY_MASK)
    encoded = [
        build_encoder(f, spec, preprocessor)({ENCODER_INPUT[f.modality]: inputs[f.name]}) for f in features
    ]
    fused = _fuse(spec.model.fusion, encoded, inputs[MODALITY_MASK], units)
    fused = keras.layers.Identity(name=FUSED_EMBEDDING)(fused)
    if spec.model.fusion["type"] == "late":
        prediction = keras.layers.Activation(activation or "linear", dtype="float32", name=PREDICTION)(fused)
    else:
        x = fused
        head = spec.model.head
        for index, width in enumerate(head.get("hidden_dims", [256])):
            x = keras.layers.Dense(width, activation="relu", name=f"head_dense_{index}")(x)
            x = keras.layers.Dropout(head.get("dropout_rate", 0.3), name=f"head_dropout_{index}")(x)
        prediction = keras.layers.Dense(units, activation=activation, dtype="float32", name=PREDICTION)(x)
    model = keras.Model(inputs=inputs, outputs=prediction, name="mmkeras_model")
    if compile:
        compile_for_target(model, target.type, num_labels, optimizer)
    return model

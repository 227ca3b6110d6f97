"""The one table of encoders and fusion layers a spec can name.

`model.encoders.<feature>.type` picks an encoder for the feature's modality
and `model.fusion.type` a fusion layer; every other key is the layer's own
constructor argument. `check_model_section` checks both when the spec
loads, so a misspelt argument fails before any data is read.
"""

import inspect

from mmkeras.errors import SpecError
from mmkeras.layers.audio_encoders import SpectrogramCNNEncoder
from mmkeras.layers.caption_decoders import LSTMCaptionDecoder, TransformerCaptionDecoder
from mmkeras.layers.concat_fusion import ConcatFusion
from mmkeras.layers.cross_modal_attention_fusion import CrossModalAttentionFusion
from mmkeras.layers.gated_fusion import GatedFusion
from mmkeras.layers.hadamard_fusion import HadamardFusion
from mmkeras.layers.image_encoders import BackboneImageEncoder, CNNImageEncoder
from mmkeras.layers.late_fusion import LateFusion
from mmkeras.layers.record_encoders import RecordMLPEncoder
from mmkeras.layers.tensor_fusion import LowRankTensorFusion, TensorFusion
from mmkeras.layers.text_encoders import LSTMTextEncoder, PretrainedTextEncoder, TransformerTextEncoder

# Per modality, the encoder types in order; the first is the default.
ENCODERS = {
    "text": {
        "lstm": LSTMTextEncoder,
        "transformer": TransformerTextEncoder,
        "pretrained": PretrainedTextEncoder,
    },
    "image": {"cnn": CNNImageEncoder, "backbone": BackboneImageEncoder},
    "audio": {"spectrogram_cnn": SpectrogramCNNEncoder},
    "record": {"mlp": RecordMLPEncoder},
}
FUSIONS = {
    "concat": ConcatFusion,
    "late": LateFusion,
    "gated": GatedFusion,
    "tensor": TensorFusion,
    "low_rank_tensor": LowRankTensorFusion,
    "hadamard": HadamardFusion,
    "cross_attention": CrossModalAttentionFusion,
}
# A captioning model's decoders; the first is the default.
DECODERS = {"transformer": TransformerCaptionDecoder, "lstm": LSTMCaptionDecoder}
# Fusion settings that belong to the model around the layer, not to the layer.
FUSION_SETTINGS = ("type", "modality_dropout")


def default_encoder(modality):
    return next(iter(ENCODERS[modality]))


def encoder_class(modality, kind, where):
    """The encoder class of `kind` for `modality`; the message lists the choices."""
    choices = ENCODERS[modality]
    if kind not in choices:
        raise SpecError(
            f"{where}: a {modality} feature takes an encoder of type {', '.join(choices)}, got {kind!r}."
        )
    return choices[kind]


def fusion_class(kind, where):
    if kind not in FUSIONS:
        raise SpecError(f"{where}: `type` must be one of {', '.join(FUSIONS)}, got {kind!r}.")
    return FUSIONS[kind]


def default_decoder():
    return next(iter(DECODERS))


def decoder_class(kind, where):
    if kind not in DECODERS:
        raise SpecError(f"{where}: `type` must be one of {', '.join(DECODERS)}, got {kind!r}.")
    return DECODERS[kind]


def _set_by_the_model(cls):
    """Arguments that follow from the data or the task, never from the spec."""
    if issubclass(cls, LateFusion):
        return {"num_outputs"}
    if cls in DECODERS.values():
        return {"vocabulary_size", "sequence_length"}
    return set()


def check_arguments(cls, arguments, where):
    """Rejects arguments `cls` does not take, listing the ones it does."""
    accepted = [
        name
        for name, parameter in inspect.signature(cls.__init__).parameters.items()
        if name != "self" and parameter.kind is not inspect.Parameter.VAR_KEYWORD
    ]
    settable = [name for name in accepted if name not in _set_by_the_model(cls)]
    unknown = sorted(set(arguments) - set(settable))
    if unknown:
        raise SpecError(
            f"{where}: {cls.__name__} has no argument(s) {', '.join(unknown)}; "
            f"it takes {', '.join(settable)}."
        )


def check_model_section(model, features):
    """Checks `model.encoders` and `model.fusion` against this registry.

    Args:
        model: ModelSpec. The spec's model section.
        features: list. The spec's features.
    """
    modalities = {f.name: f.modality for f in features}
    for name, encoder in model.encoders.items():
        where = f"{model.where}.encoders.{name}"
        if name not in modalities:
            raise SpecError(f"{where}: no feature is called `{name}`; features: {', '.join(modalities)}.")
        if not isinstance(encoder, dict):
            raise SpecError(f"{where}: must be a mapping with a `type`.")
        arguments = dict(encoder)
        kind = arguments.pop("type", default_encoder(modalities[name]))
        check_arguments(encoder_class(modalities[name], kind, where), arguments, where)
    where = f"{model.where}.fusion"
    arguments = {k: v for k, v in model.fusion.items() if k not in FUSION_SETTINGS}
    check_arguments(fusion_class(model.fusion["type"], where), arguments, where)
    where = f"{model.where}.decoder"
    arguments = dict(model.decoder)
    check_arguments(decoder_class(arguments.pop("type", default_decoder()), where), arguments, where)

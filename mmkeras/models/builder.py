"""Encoders and backbones from a spec, through the layer registry."""

from mmkeras.errors import SpecError
from mmkeras.layers.registry import FUSION_SETTINGS, default_encoder, encoder_class, fusion_class
from mmkeras.models.backbone import MultimodalBackbone


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
    if feature.modality == "record":
        return {"record_width": layer.output_size}
    return {"spectrogram_shape": (layer.num_frames, layer.num_mel_bins)}


def build_encoder(feature, spec, preprocessor):
    """The encoder the spec's `model.encoders` names for `feature`.

    Args:
        feature: a feature of `spec.data.features`.
        spec: Spec. Its model section names the encoder and its arguments.
        preprocessor: Preprocessor. Adapted; gives vocabulary sizes and shapes.
    """
    config = dict(spec.model.encoders.get(feature.name, {}))
    kind = config.pop("type", default_encoder(feature.modality))
    cls = encoder_class(feature.modality, kind, f"model.encoders.{feature.name}")
    arguments = {**_derived_arguments(feature, kind, preprocessor, spec), **config}
    return cls(name=f"{feature.name}_encoder", **arguments)


def build_backbone(spec, preprocessor, num_outputs):
    """The spec's encoders and fusion as a `MultimodalBackbone`.

    Args:
        spec: Spec. The data and model sections.
        preprocessor: Preprocessor. Adapted on the training split.
        num_outputs: int. The task's output width, for a fusion that fuses
            decisions (late fusion), whose output is the task's logits.
    """
    config = {k: v for k, v in spec.model.fusion.items() if k not in FUSION_SETTINGS}
    cls = fusion_class(spec.model.fusion["type"], "model.fusion")
    if cls.fuses_decisions:
        config["num_outputs"] = num_outputs
    return MultimodalBackbone(
        {f.name: build_encoder(f, spec, preprocessor) for f in spec.data.features},
        cls(name="fusion", **config),
        modality_dropout=spec.model.fusion.get("modality_dropout", 0.0),
        name="backbone",
    )

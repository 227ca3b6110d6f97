"""The multimodal backbone: one encoder per feature and a fusion layer."""

import keras

from mmkeras.layers import GatedFusion, GradientScale, ModalityDropout
from mmkeras.preprocessing.preprocessor import MODALITY_MASK

FUSED_EMBEDDING = "fused_embedding"
# The backbone's output holding each encoder's pooled vector, by feature.
POOLED = "pooled"
# The suffix of the GradientScale layer each encoder's outputs pass through.
ENCODER_GRADIENT = "_encoder_gradient"


def _encoder_input(encoder):
    """(input key, symbolic input) of an encoder, which takes exactly one."""
    ((key, tensor),) = encoder.input.items()
    return key, tensor


def _freezable(feature, encoded):
    """An encoder's outputs through one GradientScale: at 0 (`freeze`) no
    gradient reaches the encoder, from the fusion or its unimodal head."""
    scale = GradientScale(1.0, name=f"{feature}{ENCODER_GRADIENT}")
    return {key: scale(value) if key in ("pooled", "sequence") else value for key, value in encoded.items()}


@keras.saving.register_keras_serializable(package="mmkeras")
class MultimodalBackbone(keras.Model):
    """Preprocessed inputs to one fused vector (KerasHub's Backbone role).

    Inputs: one per feature, named after it and shaped as its encoder reads
    it, plus `modality_mask` `[batch, num_features]`. Each encoder
    (`{feature}_encoder`) encodes its feature; `ModalityDropout` zeroes the
    missing (and in training, randomly dropped) modalities; the fusion layer
    joins them. Each encoder's outputs pass a GradientScale first
    (`{feature}_encoder_gradient`), which `freeze` sets to 0. The output is
    a dict: `fused_embedding`, the fused vector a Task puts its head on, and
    `pooled`, each encoder's pooled vector by feature before any modality is
    dropped (what a unimodal head reads).

    Args:
        encoders: dict. Feature name to its encoder (`mmkeras.layers`), in
            feature order.
        fusion: Fusion. A fusion layer from `mmkeras.layers`.
        modality_dropout: float. Probability of dropping a whole modality in
            training.
    """

    def __init__(self, encoders, fusion, modality_dropout=0.0, **kwargs):
        inputs = {}
        for name, encoder in encoders.items():
            _, tensor = _encoder_input(encoder)
            inputs[name] = keras.Input(shape=tensor.shape[1:], dtype=tensor.dtype, name=name)
        inputs[MODALITY_MASK] = keras.Input(shape=(len(encoders),), name=MODALITY_MASK)
        encoded = [
            _freezable(name, encoder({_encoder_input(encoder)[0]: inputs[name]}))
            for name, encoder in encoders.items()
        ]
        dropout = ModalityDropout(modality_dropout, name="modality_dropout")
        if fusion.reads_sequences:
            sequences, mask = dropout([e["sequence"] for e in encoded], inputs[MODALITY_MASK])
            fused = fusion(sequences, [e["sequence_mask"] for e in encoded], modality_mask=mask)
        else:
            pooled, mask = dropout([e["pooled"] for e in encoded], inputs[MODALITY_MASK])
            fused = fusion(pooled, modality_mask=mask) if fusion.takes_modality_mask else fusion(pooled)
        fused = keras.layers.Identity(name=FUSED_EMBEDDING)(fused)
        each_pooled = {name: e["pooled"] for name, e in zip(encoders, encoded)}
        super().__init__(inputs=inputs, outputs={FUSED_EMBEDDING: fused, POOLED: each_pooled}, **kwargs)
        self.encoders = dict(encoders)
        self.fusion = fusion
        self.modality_dropout = modality_dropout

    @property
    def feature_names(self):
        return list(self.encoders)

    @property
    def switched_off(self):
        """The features the fusion no longer reads (`switch_off`)."""
        switched_on = self.get_layer("modality_dropout").switched_on.numpy()
        return [name for name, on in zip(self.encoders, switched_on) if not on]

    def switch_off(self, feature):
        """Treats `feature` as missing in every row from now on; its encoder
        still feeds its unimodal head, which keeps showing what it learns."""
        self.get_layer("modality_dropout").switch_off(self.feature_names.index(feature))

    @property
    def frozen(self):
        """The features whose encoders no longer learn (`freeze`)."""
        return [name for name in self.encoders if self.get_layer(name + ENCODER_GRADIENT).scale.numpy() == 0]

    def freeze(self, feature):
        """Stops `feature`'s encoder from learning from now on: no gradient
        reaches it, from the fusion or from its unimodal head. Unlike
        `trainable = False` it needs no new training step (nor a new
        compile), so a callback can do it mid-run under every strategy. What
        the optimizer already carries still moves the weights a little (Adam's
        momentum fades within a few dozen steps; decoupled weight decay
        shrinks them by learning rate x decay a step), and batch norm keeps
        following the batches."""
        self.get_layer(feature + ENCODER_GRADIENT).scale.assign(0.0)

    def modality_gates(self, inputs):
        """Each feature's mean gate in a gated fusion, `[batch, features]`, for
        a batch of inputs; None for a fusion without gates."""
        if not isinstance(self.fusion, GatedFusion):
            return None
        pooled = self(inputs, training=False)[POOLED]
        vectors, mask = self.get_layer("modality_dropout")(
            [pooled[name] for name in self.encoders], inputs[MODALITY_MASK], training=False
        )
        _, gates = self.fusion(vectors, modality_mask=mask, return_gates=True)
        return keras.ops.convert_to_numpy(keras.ops.mean(gates, axis=-1))

    @property
    def fuses_decisions(self):
        """True when the fused vector is already the task's logits (late fusion)."""
        return self.fusion.fuses_decisions

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "encoders": {name: keras.layers.serialize(encoder) for name, encoder in self.encoders.items()},
            "fusion": keras.layers.serialize(self.fusion),
            "modality_dropout": self.modality_dropout,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["encoders"] = {name: keras.layers.deserialize(e) for name, e in config["encoders"].items()}
        config["fusion"] = keras.layers.deserialize(config["fusion"])
        return cls(**config)

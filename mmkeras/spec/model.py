"""The `model:` section: an encoder per feature, the fusion and the head."""

import dataclasses

from mmkeras.layers.registry import check_model_section
from mmkeras.spec.fields import from_mapping, non_negative_number, positive_number, require

HEAD_FIELDS = ("hidden_dims", "dropout_rate")
# On-the-fly gradient modulation, without and with its gradient noise (GE).
OGM_METHODS = ("ogm", "ogm_ge")
BALANCE_METHODS = ("none", "gradient_blending", *OGM_METHODS)
# Dropping a whole modality now and then makes the model use every one of them
# (and answer when one is missing) instead of leaning on the easiest to memorise.
DEFAULT_MODALITY_DROPOUT = 0.2


@dataclasses.dataclass
class BalanceSpec:
    """How the modalities of a fused model are kept in balance (`model.balance`).

    Joint training lets the modality that is easiest to memorise dominate,
    and a fused model can end below its own best modality; these settings
    show it and counter it.

    Args:
        unimodal_heads: bool. A linear head per modality, trained beside the
            fused head: history and TensorBoard show each modality's loss,
            `evaluate` each modality's score. Ignored with one feature.
        head_weight: float. The factor on the gradient each unimodal head
            sends into its encoder: 1 (the default) also trains each encoder
            to predict on its own, so none is left undertrained while another
            carries the fused loss; 0 leaves the encoders to the fused loss
            and the heads only watch.
        method: str. "none"; "gradient_blending": every `blend_every`
            epochs, each head's factor is re-estimated from the heads'
            training and validation losses (Wang, Tran and Feiszli, 2020),
            so a modality that generalises trains its encoder harder and one
            that only memorises does not (needs validation data); "ogm" or
            "ogm_ge": on-the-fly gradient modulation (Peng et al., 2022),
            every training step updates the encoder of the modality whose
            head is ahead on the batch more slowly, by `1 - tanh(ogm_alpha *
            ratio)`, and "ogm_ge" adds gradient noise to every encoder.
        blend_every: int. Epochs per Gradient-Blending estimate.
        ogm_alpha: float. How hard OGM slows the modality that is ahead.
        switch_off: bool. Switch a modality off for good (the fusion then
            treats it as missing in every row, in training and in the
            exported model) when its head fits the training rows while its
            validation loss, no better than a constant prediction's, climbs
            two epochs running: what a shortcut column, one that gives the
            label away in the training data only, looks like. On by default
            (it never fired on the clean testbeds); needs unimodal heads and
            validation data, and does nothing without them.
        freeze_after: int or None. Early stopping per modality: once a
            modality's head has not improved its validation loss for this
            many epochs, no gradient reaches its encoder any more
            (`MultimodalBackbone.freeze`), while the other encoders, the
            fusion and the heads train on. None (the default) never freezes;
            needs unimodal heads and validation data.
    """

    unimodal_heads: bool = True
    head_weight: float = 1.0
    method: str = "none"
    blend_every: int = 2
    ogm_alpha: float = 0.5
    switch_off: bool = True
    freeze_after: int | None = None
    where: str = dataclasses.field(default="model.balance", repr=False, compare=False)

    def __post_init__(self):
        require(isinstance(self.unimodal_heads, bool), self.where, "`unimodal_heads` must be true or false.")
        require(isinstance(self.switch_off, bool), self.where, "`switch_off` must be true or false.")
        self.head_weight = non_negative_number(self.head_weight, self.where, "head_weight")
        methods = ", ".join(BALANCE_METHODS)
        require(
            self.method in BALANCE_METHODS,
            self.where,
            f"`method` must be one of {methods}, got {self.method!r}.",
        )
        require(
            self.method == "none" or self.unimodal_heads,
            self.where,
            f"`method: {self.method}` compares the unimodal heads; set `unimodal_heads: true`.",
        )
        require(
            isinstance(self.ogm_alpha, (int, float))
            and not isinstance(self.ogm_alpha, bool)
            and self.ogm_alpha > 0,
            self.where,
            f"`ogm_alpha` must be a number above 0, got {self.ogm_alpha!r}.",
        )
        self.ogm_alpha = float(self.ogm_alpha)
        require(
            self.freeze_after is None
            or (
                isinstance(self.freeze_after, int)
                and not isinstance(self.freeze_after, bool)
                and self.freeze_after >= 1
            ),
            self.where,
            f"`freeze_after` must be a whole number of epochs from 1, or null, got {self.freeze_after!r}.",
        )
        require(
            isinstance(self.blend_every, int)
            and not isinstance(self.blend_every, bool)
            and self.blend_every >= 1,
            self.where,
            f"`blend_every` must be a whole number of epochs from 1, got {self.blend_every!r}.",
        )


@dataclasses.dataclass
class GenerationSpec:
    """How a captioning model writes (`model.generation`).

    Args:
        beam_width: int. Captions kept at each step of the beam search; 1 is
            greedy decoding (the most likely next token each time).
        length_penalty: float. The finished beams are ranked by their
            log-probability over `((5 + tokens) / 6) ** length_penalty`
            (Wu et al., 2016): 0 favours short captions, larger values
            longer ones.
    """

    beam_width: int = 3
    length_penalty: float = 0.6
    where: str = dataclasses.field(default="model.generation", repr=False, compare=False)

    def __post_init__(self):
        require(
            isinstance(self.beam_width, int)
            and not isinstance(self.beam_width, bool)
            and self.beam_width >= 1,
            self.where,
            f"`beam_width` must be a whole number from 1 (greedy), got {self.beam_width!r}.",
        )
        self.length_penalty = non_negative_number(self.length_penalty, self.where, "length_penalty")


@dataclasses.dataclass
class ModelSpec:
    """Which encoder reads each feature, how they are fused, and the head.

    The values are the layers' own constructor arguments (see
    `mmkeras.layers`), so nothing is written twice; `type` picks the layer.

    Args:
        encoders: dict. Feature name to `{type: ..., **arguments}`; a feature
            left out gets its modality's default (lstm, cnn, spectrogram_cnn).
        fusion: dict. `{type: concat | late | gated | tensor |
            low_rank_tensor | hadamard | cross_attention, modality_dropout: 0.2, ...}`;
            `modality_dropout` defaults to `DEFAULT_MODALITY_DROPOUT`.
        head: dict. `{hidden_dims: [256], dropout_rate: 0.3}`.
        balance: BalanceSpec or dict. Per-modality heads and the balance
            between modalities (see `BalanceSpec`).
        projection_dim: int. Width of the shared space of a retrieval model.
        decoder: dict. A captioning model's decoder: `{type: transformer |
            lstm, **arguments}`; `transformer` when left out.
        generation: GenerationSpec or dict. How a captioning model writes
            (see `GenerationSpec`).
    """

    encoders: dict = dataclasses.field(default_factory=dict)
    fusion: dict = dataclasses.field(default_factory=lambda: {"type": "concat"})
    head: dict = dataclasses.field(default_factory=dict)
    balance: BalanceSpec = dataclasses.field(default_factory=BalanceSpec)
    projection_dim: int = 128
    decoder: dict = dataclasses.field(default_factory=dict)
    generation: GenerationSpec = dataclasses.field(default_factory=GenerationSpec)
    where: str = dataclasses.field(default="model", repr=False, compare=False)

    def __post_init__(self):
        require(
            isinstance(self.encoders, dict), f"{self.where}.encoders", "must map feature names to encoders."
        )
        require(isinstance(self.fusion, dict), f"{self.where}.fusion", "must be a mapping with a `type`.")
        self.fusion = {"type": "concat", "modality_dropout": DEFAULT_MODALITY_DROPOUT, **self.fusion}
        require(isinstance(self.head, dict), f"{self.where}.head", "must be a mapping.")
        unknown = set(self.head) - set(HEAD_FIELDS)
        require(
            not unknown,
            f"{self.where}.head",
            f"unknown field(s) {', '.join(sorted(unknown))}; known: {', '.join(HEAD_FIELDS)}.",
        )
        if not isinstance(self.balance, BalanceSpec):
            self.balance = from_mapping(BalanceSpec, self.balance or {}, f"{self.where}.balance")
        positive_number(self.projection_dim, self.where, "projection_dim")
        require(isinstance(self.decoder, dict), f"{self.where}.decoder", "must be a mapping.")
        if not isinstance(self.generation, GenerationSpec):
            self.generation = from_mapping(GenerationSpec, self.generation or {}, f"{self.where}.generation")

    def check_features(self, features):
        """Every encoder must name a feature, suit its modality and take the
        arguments given; so must the fusion layer."""
        check_model_section(self, features)

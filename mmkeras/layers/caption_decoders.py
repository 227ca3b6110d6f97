"""Caption decoders: the tokens so far and an image's regions to the next token's logits.

Each takes `(tokens, image_sequence)`: token ids `[batch, length]` (0 is
padding) and the image encoder's `sequence` output `[batch, regions,
channels]`, and returns logits `[batch, length, vocabulary_size]` in
float32, position t depending on tokens 0..t only, so one pass trains every
position (teacher forcing) and generation reads position t of a prefix.
"""

import keras
from keras import ops


class CaptionDecoder(keras.layers.Layer):
    """The contract above; subclasses add their layers and arguments.

    Args:
        vocabulary_size: int. Token ids it reads and predicts.
        sequence_length: int. The longest token sequence it reads.
    """

    def __init__(self, vocabulary_size, sequence_length, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary_size = vocabulary_size
        self.sequence_length = sequence_length

    def compute_output_shape(self, tokens_shape, image_sequence_shape):
        return (*tokens_shape, self.vocabulary_size)

    def get_config(self):
        config = super().get_config()
        config.update({"vocabulary_size": self.vocabulary_size, "sequence_length": self.sequence_length})
        return config


@keras.saving.register_keras_serializable(package="mmkeras")
class TransformerCaptionDecoder(CaptionDecoder):
    """Transformer decoder blocks (causal self-attention, then cross-attention
    to the image regions), KerasHub's `TransformerDecoder`, as in keras.io's
    image captioning example.

    Args:
        vocabulary_size: int. Token ids it reads and predicts.
        sequence_length: int. The longest token sequence it reads.
        hidden_dim: int. Width of the token embeddings and the blocks.
        num_layers: int. Decoder blocks.
        num_heads: int. Attention heads per block.
        intermediate_dim: int or None. Feed-forward width; 4 x hidden_dim.
        dropout_rate: float. Dropout inside the blocks.
    """

    def __init__(
        self,
        vocabulary_size,
        sequence_length,
        hidden_dim=256,
        num_layers=2,
        num_heads=4,
        intermediate_dim=None,
        dropout_rate=0.1,
        **kwargs,
    ):
        import keras_hub  # imported here: it adds seconds to every process start

        super().__init__(vocabulary_size, sequence_length, **kwargs)
        self.hidden_dim = hidden_dim
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim or 4 * hidden_dim
        self.dropout_rate = dropout_rate
        self.embedding = keras_hub.layers.TokenAndPositionEmbedding(
            vocabulary_size, sequence_length, hidden_dim, name="embedding"
        )
        self.image_projection = keras.layers.Dense(hidden_dim, name="image_projection")
        self.blocks = [
            keras_hub.layers.TransformerDecoder(
                self.intermediate_dim, num_heads, dropout=dropout_rate, name=f"block_{i}"
            )
            for i in range(num_layers)
        ]
        self.logits = keras.layers.Dense(vocabulary_size, dtype="float32", name="logits")

    def build(self, tokens_shape, image_sequence_shape):
        hidden = (*tokens_shape, self.hidden_dim)
        self.embedding.build(tokens_shape)
        self.image_projection.build(image_sequence_shape)
        for block in self.blocks:
            block.build(hidden, (*image_sequence_shape[:-1], self.hidden_dim))
        self.logits.build(hidden)

    def call(self, tokens, image_sequence, training=None):
        x = self.embedding(tokens)
        regions = self.image_projection(image_sequence)
        padding = ops.not_equal(tokens, 0)
        for block in self.blocks:
            x = block(x, regions, decoder_padding_mask=padding, training=training)
        return self.logits(x)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "num_layers": self.num_layers,
                "num_heads": self.num_heads,
                "intermediate_dim": self.intermediate_dim,
                "dropout_rate": self.dropout_rate,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="mmkeras")
class LSTMCaptionDecoder(CaptionDecoder):
    """An LSTM that starts from the image and attends to its regions at every
    step (Show, Attend and Tell; the attention reads the LSTM's output, as in
    Luong et al., so training is one parallel pass).

    The mean of the regions sets the LSTM's initial state; at each position
    additive attention over the regions gives a context vector, which with
    the LSTM output predicts the next token.

    Args:
        vocabulary_size: int. Token ids it reads and predicts.
        sequence_length: int. The longest token sequence it reads.
        embedding_dim: int. Width of the token embeddings.
        units: int. LSTM units, and the width the regions are projected to.
        dropout_rate: float. Dropout before the output layer.
    """

    def __init__(
        self, vocabulary_size, sequence_length, embedding_dim=256, units=256, dropout_rate=0.3, **kwargs
    ):
        super().__init__(vocabulary_size, sequence_length, **kwargs)
        self.embedding_dim = embedding_dim
        self.units = units
        self.dropout_rate = dropout_rate
        self.embedding = keras.layers.Embedding(
            vocabulary_size, embedding_dim, mask_zero=True, name="embedding"
        )
        self.image_projection = keras.layers.Dense(units, name="image_projection")
        self.initial_h = keras.layers.Dense(units, activation="tanh", name="initial_h")
        self.initial_c = keras.layers.Dense(units, activation="tanh", name="initial_c")
        self.lstm = keras.layers.LSTM(units, return_sequences=True, name="lstm")
        self.attention = keras.layers.AdditiveAttention(name="attention")
        self.combine = keras.layers.Dense(units, activation="tanh", name="combine")
        self.dropout = keras.layers.Dropout(dropout_rate)
        self.logits = keras.layers.Dense(vocabulary_size, dtype="float32", name="logits")

    def build(self, tokens_shape, image_sequence_shape):
        units = (*tokens_shape, self.units)
        regions = (*image_sequence_shape[:-1], self.units)
        self.embedding.build(tokens_shape)
        self.image_projection.build(image_sequence_shape)
        self.initial_h.build((image_sequence_shape[0], self.units))
        self.initial_c.build((image_sequence_shape[0], self.units))
        self.lstm.build((*tokens_shape, self.embedding_dim))
        self.attention.build([units, regions])
        self.combine.build((*tokens_shape, 2 * self.units))
        self.logits.build(units)

    def call(self, tokens, image_sequence, training=None):
        regions = self.image_projection(image_sequence)
        mean = ops.mean(regions, axis=1)
        embedded = self.embedding(tokens)
        outputs = self.lstm(
            embedded,
            initial_state=[self.initial_h(mean), self.initial_c(mean)],
            mask=ops.not_equal(tokens, 0),
            training=training,
        )
        context = self.attention([outputs, regions], training=training)
        x = self.combine(ops.concatenate([outputs, context], axis=-1))
        return self.logits(self.dropout(x, training=training))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "embedding_dim": self.embedding_dim,
                "units": self.units,
                "dropout_rate": self.dropout_rate,
            }
        )
        return config

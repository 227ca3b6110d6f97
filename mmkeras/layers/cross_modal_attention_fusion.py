"""MulT-style cross-modal attention over the modalities' sequences (Tsai et al., 2019)."""

import keras
from keras import ops

from mmkeras.layers.fusion import Fusion
from mmkeras.layers.pooling import MaskedMeanPooling


@keras.saving.register_keras_serializable(package="mmkeras")
class CrossModalBlock(keras.layers.Layer):
    """Target positions attend to a source sequence; residuals and layer norms.

    Args:
        hidden_dim: int. Width of both sequences.
        num_heads: int. Attention heads.
        intermediate_dim: int. Width of the feed-forward layer.
        dropout_rate: float. Dropout on attention and feed-forward outputs.
        null_position: bool. Prepend a learned position to the source that
            every target position may attend to. Softmax weights sum to 1, so
            without it a target position that matches nothing in the source
            (the word "red" over a picture with no red in it) still reads a
            mix of the source's positions, much like the one it would read on
            a match; with it, "nothing here" has a key and a value of its own.
    """

    def __init__(
        self, hidden_dim, num_heads, intermediate_dim, dropout_rate=0.0, null_position=False, **kwargs
    ):
        super().__init__(**kwargs)
        self.hidden_dim = hidden_dim
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim
        self.dropout_rate = dropout_rate
        self.null_position = null_position
        self.attention = keras.layers.MultiHeadAttention(
            num_heads, hidden_dim // num_heads, dropout=dropout_rate, name="attention"
        )
        self.attention_norm = keras.layers.LayerNormalization(name="attention_norm")
        self.feed_forward = keras.Sequential(
            [
                keras.layers.Dense(intermediate_dim, activation="gelu"),
                keras.layers.Dense(hidden_dim),
                keras.layers.Dropout(dropout_rate),
            ],
            name="feed_forward",
        )
        self.feed_forward_norm = keras.layers.LayerNormalization(name="feed_forward_norm")

    def build(self, target_shape, source_shape, source_mask_shape=None):
        if self.null_position:
            initializer = keras.initializers.RandomNormal(stddev=0.02)
            self.null = self.add_weight(name="null", shape=(self.hidden_dim,), initializer=initializer)
        self.attention.build(target_shape, source_shape)
        self.attention_norm.build(target_shape)
        self.feed_forward.build(target_shape)
        self.feed_forward_norm.build(target_shape)

    def call(self, target, source, source_mask, training=None):
        if self.null_position:
            batch = ops.shape(source)[0]
            null = ops.broadcast_to(ops.cast(self.null, source.dtype), (batch, 1, self.hidden_dim))
            source = ops.concatenate([null, source], axis=1)
            source_mask = ops.concatenate([ops.ones((batch, 1), "bool"), source_mask], axis=1)
        # Every target position may look at the source's real positions only.
        attention_mask = ops.repeat(ops.expand_dims(source_mask, 1), ops.shape(target)[1], axis=1)
        attended = self.attention(target, source, attention_mask=attention_mask, training=training)
        x = self.attention_norm(target + attended)
        return self.feed_forward_norm(x + self.feed_forward(x, training=training))

    def compute_output_shape(self, target_shape, source_shape, source_mask_shape=None):
        return target_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "num_heads": self.num_heads,
                "intermediate_dim": self.intermediate_dim,
                "dropout_rate": self.dropout_rate,
                "null_position": self.null_position,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="mmkeras")
class CrossModalAttentionFusion(Fusion):
    """Each modality's sequence attends to every other modality's sequence.

    For each ordered pair (target, source), `num_layers` cross-modal blocks
    let the target's positions attend to the source's (keys masked by the
    source's padding mask), and the result is mean-pooled over the target's
    real positions. The pairs' vectors are concatenated, and with
    `pair_products` also, for each two modalities, the element-wise product
    of their two vectors (A attending to B times B attending to A): a
    multiplicative interaction, as in MLB's Hadamard-product pooling for VQA
    (Kim et al., 2017), so that "does what the question names match what the
    picture shows" is one product away instead of a comparison the head must
    build from sums. Padded positions cannot change the output; a missing
    modality (0 in `modality_mask`) contributes zeros.

    Call with `(sequences, masks)` lists and optionally `modality_mask`.

    Args:
        hidden_dim: int. Every sequence is projected to this width.
        num_heads: int. Attention heads.
        num_layers: int. Cross-modal blocks per pair.
        intermediate_dim: int or None. Feed-forward width; 2 x hidden_dim.
        dropout_rate: float. Dropout inside the blocks.
        null_position: bool. Each source sequence gets a learned position
            that attention may choose instead of any real one (see
            `CrossModalBlock`).
        pair_products: bool. Also output each two modalities' product.
    """

    reads_sequences = True
    takes_modality_mask = True

    def __init__(
        self,
        hidden_dim=64,
        num_heads=4,
        num_layers=1,
        intermediate_dim=None,
        dropout_rate=0.0,
        null_position=False,
        pair_products=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.hidden_dim = hidden_dim
        self.num_heads = num_heads
        self.num_layers = num_layers
        self.intermediate_dim = intermediate_dim or 2 * hidden_dim
        self.dropout_rate = dropout_rate
        self.null_position = null_position
        self.pair_products = pair_products
        self.pooling = MaskedMeanPooling(name="pooling")

    def build(self, sequences_shape, masks_shape=None, modality_mask_shape=None):
        sequence_shapes = sequences_shape
        count = len(sequence_shapes)
        self.pairs = [(t, s) for t in range(count) for s in range(count) if t != s]
        self.projections = [keras.layers.Dense(self.hidden_dim, name=f"projection_{i}") for i in range(count)]
        for projection, shape in zip(self.projections, sequence_shapes):
            projection.build(shape)
        # One stack of blocks per (target, source) pair, in the order of `pairs`.
        self.blocks = []
        for target, source in self.pairs:
            stack = []
            for layer in range(self.num_layers):
                block = CrossModalBlock(
                    self.hidden_dim,
                    self.num_heads,
                    self.intermediate_dim,
                    self.dropout_rate,
                    self.null_position,
                    name=f"block_{target}_from_{source}_{layer}",
                )
                block.build(
                    (None, sequence_shapes[target][1], self.hidden_dim),
                    (None, sequence_shapes[source][1], self.hidden_dim),
                )
                stack.append(block)
            self.blocks.append(stack)

    def call(self, sequences, masks, modality_mask=None, training=None):
        projected = [projection(x) for projection, x in zip(self.projections, sequences)]
        masks = [ops.cast(mask, "bool") for mask in masks]
        pooled = []
        for (target, source), stack in zip(self.pairs, self.blocks):
            x = projected[target]
            for block in stack:
                x = block(x, projected[source], masks[source], training=training)
            vector = self.pooling([x, masks[target]])
            if modality_mask is not None:
                both = modality_mask[:, target] * modality_mask[:, source]
                vector = vector * ops.expand_dims(ops.cast(both, vector.dtype), -1)
            pooled.append(vector)
        if self.pair_products:
            by_pair = dict(zip(self.pairs, pooled))
            pooled += [by_pair[(a, b)] * by_pair[(b, a)] for a, b in self.pairs if a < b]
        return ops.concatenate(pooled, axis=-1)

    def compute_output_shape(self, sequences_shape, masks_shape=None, modality_mask_shape=None):
        count = len(sequences_shape)
        vectors = count * (count - 1) * (3 if self.pair_products else 2) // 2
        return (sequences_shape[0][0], self.hidden_dim * vectors)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "num_heads": self.num_heads,
                "num_layers": self.num_layers,
                "intermediate_dim": self.intermediate_dim,
                "dropout_rate": self.dropout_rate,
                "null_position": self.null_position,
                "pair_products": self.pair_products,
            }
        )
        return config

import numpy as np
import pytest

from mmkeras.layers import (
    BackboneImageEncoder,
    CNNImageEncoder,
    ConcatFusion,
    CrossModalAttentionFusion,
    GatedFusion,
    GradientScale,
    HadamardFusion,
    LateFusion,
    LowRankTensorFusion,
    LSTMTextEncoder,
    ModalityDropout,
    RecordMLPEncoder,
    SpectrogramCNNEncoder,
    TensorFusion,
    TransformerTextEncoder,
)
from tests.layer_test import run_layer_test

rng = np.random.RandomState(0)
TOKENS = np.array([[5, 3, 9, 0, 0, 0], [2, 0, 0, 0, 0, 0]], dtype="int32")
A = rng.rand(2, 3).astype("float32")
B = rng.rand(2, 4).astype("float32")
C = rng.rand(2, 2).astype("float32")
# Some modalities missing: what masks must handle in every precision.
PARTIAL = np.array([[1, 0, 1], [0, 0, 1]], dtype="float32")


def _encoder_shapes(pooled, steps, width):
    return {"pooled": (2, pooled), "sequence": (2, steps, width), "sequence_mask": (2, steps)}


@pytest.mark.parametrize("bidirectional, width", [(True, 16), (False, 8)])
def test_lstm_text_encoder(bidirectional, width):
    run_layer_test(
        LSTMTextEncoder,
        dict(vocabulary_size=12, embedding_dim=4, units=8, bidirectional=bidirectional, num_layers=2),
        [{"token_ids": TOKENS}],
        _encoder_shapes(width, 6, width),
        output_key="pooled",
    )


def test_transformer_text_encoder():
    run_layer_test(
        TransformerTextEncoder,
        dict(
            vocabulary_size=12,
            sequence_length=6,
            hidden_dim=8,
            num_layers=1,
            num_heads=2,
            intermediate_dim=16,
        ),
        [{"token_ids": TOKENS}],
        _encoder_shapes(8, 6, 8),
        output_key="pooled",
    )


def test_text_encoders_ignore_padding():
    encoder = LSTMTextEncoder(vocabulary_size=12, embedding_dim=4, units=8)
    short = encoder({"token_ids": np.array([[5, 3, 0, 0]], "int32")})["pooled"]
    longer = encoder({"token_ids": np.array([[5, 3, 0, 0, 0, 0, 0]], "int32")})["pooled"]
    np.testing.assert_allclose(short, longer, atol=1e-6)


def test_cnn_image_encoder():
    run_layer_test(
        CNNImageEncoder,
        dict(image_shape=(16, 16, 3), filters=[4, 8]),
        [{"images": rng.rand(2, 16, 16, 3).astype("float32")}],
        _encoder_shapes(8, 16, 8),  # 16x16 pooled twice: a 4x4 map of 16 positions
        output_key="pooled",
    )


def test_keras_application_backbone_encoder():
    run_layer_test(
        BackboneImageEncoder,
        dict(image_shape=(32, 32, 3), application="mobilenet_v3_small"),
        [{"images": rng.rand(2, 32, 32, 3).astype("float32") * 255}],
        _encoder_shapes(576, 1, 576),
        output_key="pooled",
    )


def test_spectrogram_cnn_encoder():
    run_layer_test(
        SpectrogramCNNEncoder,
        dict(spectrogram_shape=(20, 8), filters=[4, 6]),
        [{"audio": rng.randn(2, 20, 8).astype("float32")}],
        _encoder_shapes(6, 5, 12),  # time 20 -> 5 steps, each 2 bands x 6 channels
        output_key="pooled",
    )


@pytest.mark.parametrize(
    "cls, kwargs, expected",
    [
        (ConcatFusion, {}, (2, 9)),
        (ConcatFusion, {"projection_dim": 5}, (2, 15)),
        (TensorFusion, {}, (2, 4 * 5 * 3)),
        (TensorFusion, {"projection_dim": 2}, (2, 3 * 3 * 3)),
        (LowRankTensorFusion, {"output_dim": 6, "rank": 3}, (2, 6)),
    ],
)
def test_vector_fusion_layers(cls, kwargs, expected):
    run_layer_test(cls, kwargs, [[A, B, C]], expected)


def test_gated_fusion_layer():
    run_layer_test(
        GatedFusion, {"hidden_dim": 5}, [[A, B, C]], (2, 5), call_kwargs={"modality_mask": PARTIAL}
    )


def test_late_fusion_layer():
    run_layer_test(
        LateFusion,
        {"num_outputs": 4, "hidden_dims": [6], "combine": "learned"},
        [[A, B, C]],
        (2, 4),
        call_kwargs={"modality_mask": PARTIAL},
    )


def test_cross_modal_attention_fusion_layer():
    sequences = [rng.rand(2, 5, 3).astype("float32"), rng.rand(2, 7, 4).astype("float32")]
    masks = [np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool), np.ones((2, 7), bool)]
    run_layer_test(CrossModalAttentionFusion, {"hidden_dim": 8, "num_heads": 2}, [sequences, masks], (2, 16))


def test_cross_attention_pair_products_multiply_each_pairs_two_vectors():
    sequences = [rng.rand(2, 5, 3).astype("float32"), rng.rand(2, 7, 4).astype("float32"), rng.rand(2, 3, 2)]
    masks = [np.ones((2, 5), bool), np.ones((2, 7), bool), np.ones((2, 3), bool)]
    layer = CrossModalAttentionFusion(hidden_dim=4, num_heads=2, pair_products=True)
    run_layer_test(
        CrossModalAttentionFusion,
        {"hidden_dim": 4, "num_heads": 2, "pair_products": True, "null_position": True},
        [sequences, masks],
        (2, 4 * 9),
    )
    # Six ordered pairs' vectors, then the products of (0,1)x(1,0), (0,2)x(2,0), (1,2)x(2,1).
    vectors = np.split(layer(sequences, masks).numpy(), 9, axis=-1)
    pairs = dict(zip(layer.pairs, vectors))
    for product, (a, b) in zip(vectors[6:], [(0, 1), (0, 2), (1, 2)]):
        np.testing.assert_allclose(product, pairs[(a, b)] * pairs[(b, a)], rtol=1e-6)


def test_tensor_fusion_by_hand():
    # [1, 2; 1] (x) [3; 1] = [[3, 1], [6, 2], [3, 1]] -> flattened row by row.
    fused = TensorFusion()([np.array([[1.0, 2.0]]), np.array([[3.0]])])
    np.testing.assert_allclose(fused, [[3, 1, 6, 2, 3, 1]])
    # A third modality multiplies every entry by [z; 1]: [5; 1].
    fused = TensorFusion()([np.array([[1.0, 2.0]]), np.array([[3.0]]), np.array([[5.0]])])
    np.testing.assert_allclose(fused, [[15, 3, 5, 1, 30, 6, 10, 2, 15, 3, 5, 1]])


def test_low_rank_tensor_fusion_equals_the_full_weight_tensor():
    layer = LowRankTensorFusion(output_dim=4, rank=3)
    inputs = [A, B, C]
    output = layer(inputs).numpy()
    w1, w2, w3 = (f.numpy() for f in layer.factors)
    # Assemble the full (4 x 5 x 3 x out) weight from the layer's own factors.
    full = np.einsum("r,rio,rjo,rko->ijko", layer.rank_weights.numpy(), w1, w2, w3)
    outer = TensorFusion()(inputs).numpy().reshape(2, 4, 5, 3)
    expected = np.einsum("bijk,ijko->bo", outer, full) + layer.bias.numpy()
    np.testing.assert_allclose(output, expected, rtol=1e-4, atol=1e-5)


def test_hadamard_fusion_multiplies_each_modalitys_tanh_projection():
    run_layer_test(HadamardFusion, {"hidden_dim": 5}, [[A, B, C]], (2, 5))
    layer = HadamardFusion(hidden_dim=5)
    output = layer([A, B, C]).numpy()
    expected = np.ones((2, 5))
    for projection, x in zip(layer.projections, (A, B, C)):
        kernel, bias = (w.numpy() for w in projection.weights)
        expected *= np.tanh(x @ kernel + bias)
    np.testing.assert_allclose(output, expected, rtol=1e-5, atol=1e-6)


def test_gmu_gates_are_probabilities_and_missing_modalities_get_none():
    layer = GatedFusion(hidden_dim=6)
    fused, gates = layer([A * 10, B * 10, C * 10], return_gates=True)
    gates = gates.numpy()
    assert gates.shape == (2, 3, 6) and (gates >= 0).all() and (gates <= 1).all()
    np.testing.assert_allclose(gates.sum(axis=1), 1.0, atol=1e-6)
    _, masked = layer([A, B, C], modality_mask=np.array([[1, 0, 1], [0, 0, 1]], "float32"), return_gates=True)
    masked = masked.numpy()
    assert np.all(masked[0, 1] == 0) and np.all(masked[1, :2] == 0)
    np.testing.assert_allclose(masked[1, 2], 1.0)


@pytest.mark.parametrize("null_position", [False, True])
def test_cross_attention_ignores_padded_positions(null_position):
    layer = CrossModalAttentionFusion(hidden_dim=8, num_heads=2, num_layers=2, null_position=null_position)
    text = rng.rand(1, 6, 3).astype("float32")
    audio = rng.rand(1, 4, 5).astype("float32")
    text_mask = np.array([[1, 1, 1, 0, 0, 0]], bool)
    audio_mask = np.ones((1, 4), bool)
    before = layer([text, audio], [text_mask, audio_mask]).numpy()
    changed = text.copy()
    changed[:, 3:] = rng.rand(1, 3, 3) * 100
    after = layer([changed, audio], [text_mask, audio_mask]).numpy()
    np.testing.assert_allclose(before, after, atol=1e-5)
    changed[:, 1] += 1.0  # a real position does change it
    assert not np.allclose(before, layer([changed, audio], [text_mask, audio_mask]).numpy())


def test_modality_dropout_masks_missing_and_keeps_one():
    layer = ModalityDropout(rate=0.9, seed=1)
    tensors = [np.ones((64, 2), "float32"), np.ones((64, 3, 2), "float32")]
    present = np.ones((64, 2), "float32")
    present[0] = [1, 0]
    outputs, mask = layer(tensors, present, training=True)
    mask = mask.numpy()
    assert (mask.sum(axis=1) >= 1).all()  # never every modality of a row
    assert mask[0].tolist() == [1, 0]  # row 0 only has its first modality
    assert 0 < (mask == 0).mean() < 1  # some drops at rate 0.9
    np.testing.assert_array_equal(outputs[1].numpy()[:, 0, 0], mask[:, 1])
    outputs, mask = layer(tensors, present, training=False)
    np.testing.assert_array_equal(mask, present)  # predict time: only what is missing


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_gradient_scale_is_the_identity_forward_and_scales_the_gradient_back(dtype):
    import tensorflow as tf

    layer = GradientScale(0.25)
    x = tf.constant(rng.rand(3, 4), dtype)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        loss = tf.reduce_sum(y * y)
    np.testing.assert_array_equal(y.numpy(), x.numpy())
    np.testing.assert_allclose(tape.gradient(loss, x).numpy(), 0.25 * 2 * x.numpy(), rtol=1e-3)
    layer.scale.assign(0.0)  # changed between steps, as a callback would
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(layer(x) ** 2)
    assert not tape.gradient(loss, x).numpy().any()
    restored = GradientScale.from_config(layer.get_config())
    assert float(restored.scale.numpy()) == 0.25 and not restored.trainable_weights


def test_record_mlp_encoder():
    run_layer_test(
        RecordMLPEncoder,
        dict(record_width=7, hidden_dims=[12, 10]),
        [{"record": rng.randn(2, 7).astype("float32")}],
        _encoder_shapes(10, 1, 10),  # one step: the pooled vector
        output_key="pooled",
    )

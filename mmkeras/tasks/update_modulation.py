"""On-the-fly gradient modulation (OGM-GE): the encoder of the modality that
is ahead learns more slowly, batch by batch.

Peng, Wei, Deng, Wang and Hu, "Balanced Multimodal Learning via On-the-fly
Gradient Modulation" (CVPR 2022). Each step compares how well each modality
predicts the batch on its own; the encoder of one that is ahead gets its
update scaled down by `1 - tanh(alpha * ratio)`, and with generalisation
enhancement (GE) every encoder's gradient gets Gaussian noise of its own
spread, which the slower updates would otherwise lack.

The paper trains with SGD, where scaling the gradient scales the update.
Adam-style optimizers divide the gradient by its running spread, which
cancels a steady factor, so here the factor scales the update itself: the
learning rate each encoder variable is updated with.
"""

import keras
import tensorflow as tf


def ogm_coefficients(head_losses, alpha):
    """Each modality's update factor from its unimodal head's loss on a batch.

    A head's score is `exp(-loss)` (for cross-entropy, the geometric mean of
    the probability it gives the true class, where OGM-GE sums those
    probabilities; any loss works the same way). A modality whose score is
    `ratio` times the mean of the others' (ratio > 1) gets
    `1 - tanh(alpha * ratio)`; the others 1. With two modalities this is the
    paper's discrepancy ratio.

    Args:
        head_losses: float tensor `[modalities]`.
        alpha: float. How hard the leader is slowed.

    Returns:
        float32 tensor `[modalities]` in (0, 1].
    """
    scores = tf.exp(-tf.cast(head_losses, "float32"))
    count = tf.cast(tf.size(scores), "float32")
    others = (tf.reduce_sum(scores) - scores) / tf.maximum(count - 1.0, 1.0)
    ratio = scores / tf.maximum(others, 1e-12)
    return tf.where(ratio > 1.0, 1.0 - tf.tanh(alpha * ratio), tf.ones_like(ratio))


def modulate_updates(optimizer, encoder_variables, factors, noise):
    """Makes `optimizer` update each encoder's variables at its rate times
    its modality's factor, read from `factors` in the same step.

    The optimizer's own `update_step` is wrapped on this instance only, so
    what is saved with the model stays a stock Keras optimizer (a checkpoint
    loads anywhere); the same wrapper runs inside a LossScaleOptimizer and
    under every distribution strategy (each replica reads the same
    mirrored factor and draws the same noise).

    Args:
        optimizer: keras.optimizers.Optimizer. Not yet used for training.
        encoder_variables: list of lists of variables, one list per modality
            in the order of `factors`.
        factors: Keras variable `[modalities]`, set each step before the
            update (`ogm_coefficients`).
        noise: bool. Adds GE's noise to every encoder gradient.
    """
    # Under mixed_float16 a LossScaleOptimizer passes the unscaled gradients to its inner one.
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    modality_of = {
        optimizer._var_key(variable): index
        for index, variables in enumerate(encoder_variables)
        for variable in variables
    }
    # Compiling again with the same optimizer wraps its own step, not the wrapper.
    update_step = getattr(optimizer, "_unmodulated_update_step", optimizer.update_step)
    optimizer._unmodulated_update_step = update_step

    def modulated_update_step(gradient, variable, learning_rate):
        index = modality_of.get(optimizer._var_key(variable))
        if index is not None:
            factor = tf.gather(tf.convert_to_tensor(factors), index)
            learning_rate = learning_rate * tf.cast(factor, learning_rate.dtype)
            if noise:
                gradient = _with_noise(
                    gradient, optimizer.iterations, optimizer._get_variable_index(variable)
                )
        return update_step(gradient, variable, learning_rate)

    optimizer.update_step = modulated_update_step


def _with_noise(gradient, step, variable_index):
    """The gradient plus Gaussian noise with the gradient's own standard
    deviation, seeded by step and variable so every replica adds the same."""
    seed = tf.stack([tf.cast(step, "int32"), tf.constant(variable_index, "int32")])
    values = gradient.values if isinstance(gradient, tf.IndexedSlices) else gradient
    spread = tf.math.reduce_std(tf.cast(values, "float32"))
    noisy = values + tf.cast(tf.random.stateless_normal(tf.shape(values), seed) * spread, values.dtype)
    if isinstance(gradient, tf.IndexedSlices):
        return tf.IndexedSlices(noisy, gradient.indices, gradient.dense_shape)
    return noisy


def resolve_optimizer(optimizer):
    """An optimizer instance for a name, a config or an instance."""
    return optimizer if isinstance(optimizer, keras.optimizers.Optimizer) else keras.optimizers.get(optimizer)

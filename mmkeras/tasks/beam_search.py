"""Beam search in TensorFlow ops, for the serving graph (greedy is width 1)."""

import tensorflow as tf

_NEVER = -1e9  # a log-probability no candidate survives (finite: no inf - inf)


def beam_search(next_log_probs, batch_size, start_id, end_id, length, width=1, length_penalty=0.0):
    """The `width` best token sequences per row, best first.

    Args:
        next_log_probs: callable. `(tokens [batch * width, length], step)` to
            the log-probabilities `[batch * width, vocabulary]` of the token
            after position `step`; tokens after `step` are padding (0).
        batch_size: scalar int tensor. Rows to decode.
        start_id: int. The token every sequence starts with.
        end_id: int. The token that ends a sequence; after it, only padding.
        length: int. Sequence length, the start token included.
        width: int. Beams kept per row.
        length_penalty: float. The final ranking divides each beam's
            log-probability by `((5 + tokens) / 6) ** length_penalty`
            (Wu et al., 2016): 0 ranks by probability alone, which favours
            short captions; about 0.6 evens that out.

    Returns:
        (tokens `[batch, width, length - 1]` without the start token, 0
        after the end token; scores `[batch, width]`, the penalised
        log-probabilities they are ranked by).
    """
    rows = batch_size * width
    tokens = tf.concat([tf.fill([rows, 1], start_id), tf.zeros([rows, length - 1], tf.int32)], axis=1)
    # Only the first beam of each row is live at first: the others would repeat it.
    scores = tf.tile(tf.constant([[0.0] + [_NEVER] * (width - 1)]), [batch_size, 1])
    finished = tf.zeros([batch_size, width], tf.bool)

    def keep_going(step, tokens, scores, finished):
        return tf.logical_and(step < length - 1, tf.logical_not(tf.reduce_all(finished)))

    def extend(step, tokens, scores, finished):
        log_probs = next_log_probs(tokens, step)
        vocabulary = tf.shape(log_probs)[-1]
        log_probs = tf.reshape(log_probs, [batch_size, width, vocabulary])
        # A finished beam can only be padded, at no cost, so it keeps its score.
        padding_only = tf.where(tf.range(vocabulary) == 0, 0.0, _NEVER)
        log_probs = tf.where(finished[..., tf.newaxis], padding_only, log_probs)
        candidates = tf.reshape(scores[..., tf.newaxis] + log_probs, [batch_size, -1])
        scores, chosen = tf.math.top_k(candidates, k=width)
        beam, token = chosen // vocabulary, chosen % vocabulary
        tokens = tf.gather(tf.reshape(tokens, [batch_size, width, length]), beam, batch_dims=1)
        finished = tf.gather(finished, beam, batch_dims=1) | (token == end_id)
        position = tf.range(length) == step + 1
        tokens = tf.where(position, token[..., tf.newaxis], tokens)
        return step + 1, tf.reshape(tokens, [rows, length]), scores, finished

    _, tokens, scores, _ = tf.while_loop(
        keep_going,
        extend,
        (tf.constant(0), tokens, scores, finished),
        shape_invariants=(
            tf.TensorShape([]),
            tf.TensorShape([None, length]),
            tf.TensorShape([None, width]),
            tf.TensorShape([None, width]),
        ),
    )
    generated = tf.reshape(tokens, [batch_size, width, length])[..., 1:]
    counted = tf.cast(tf.reduce_sum(tf.cast(generated != 0, tf.int32), axis=-1), tf.float32)
    scores = scores / ((5.0 + counted) / 6.0) ** length_penalty
    order = tf.argsort(scores, axis=-1, direction="DESCENDING")
    return tf.gather(generated, order, batch_dims=1), tf.gather(scores, order, batch_dims=1)

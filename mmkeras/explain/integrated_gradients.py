"""Integrated gradients (Sundararajan et al., 2017) through every modality of a fused model at once.

Each feature moves on a straight line from a baseline that carries no
information to the row's value, all features together, and the gradient of
the explained output is integrated along that path (trapezoidal rule). The
attributions then add up to f(row) - f(baselines), up to the rule's error,
which shrinks with the number of steps (completeness). Baselines:

- image: a black picture, as the feature's preprocessing makes it;
- audio: the log-mel spectrogram of silence;
- record: zeros, that is each numeric column at its training mean (and not
  missing) and no category set;
- text: the token ids cannot move, so the text encoder's token vectors
  (before position embeddings are added: `TextEncoder.token_embedding`) are
  scaled from 0 to 1 instead; a token's attribution is the integral of the
  output's gradient by its scale.

Which modalities a row has (`modality_mask`) stays as it is.
"""

import contextlib
import dataclasses

import numpy as np
import tensorflow as tf

from mmkeras.preprocessing.audio import AudioPreprocessor
from mmkeras.preprocessing.image import ImagePreprocessor
from mmkeras.preprocessing.preprocessor import MODALITY_MASK
from mmkeras.preprocessing.text import TextPreprocessor
from mmkeras.tasks.fusion_task import PREDICTION

# Interpolated inputs per forward pass (bounds memory on large pictures), and
# intervals split per round of `complete_integrated_gradients`.
CHUNK = 32
DEFAULT_STEPS = 64
MAX_STEPS = 1024
# Narrower intervals are not split: their gaps are float32 round-off.
MIN_INTERVAL = 2.0**-16
# Complete enough: the attributions add up to f(row) - f(baselines) within
# this share of it, or within ABSOLUTE_TOLERANCE where it is tiny.
TOLERANCE = 0.02
ABSOLUTE_TOLERANCE = 1e-3


@dataclasses.dataclass
class Attribution:
    """One row's integrated gradients.

    Args:
        features: dict. Feature name to its attributions, shaped as its
            model input (a text: one per token).
        value: float. The explained output on the row.
        baseline_value: float. The same output on the baselines.
        steps: int. The path's intervals.
    """

    features: dict
    value: float
    baseline_value: float
    steps: int

    @property
    def totals(self):
        """Each feature's attributions summed: its part of value - baseline_value."""
        return {name: float(np.sum(values)) for name, values in self.features.items()}

    @property
    def completeness_gap(self):
        """How far the attributions' sum is from value - baseline_value."""
        return sum(self.totals.values()) - (self.value - self.baseline_value)


def baseline(layer, value):
    """The input that carries no information for a feature's preprocessing
    layer, shaped like `value` (one row, no batch axis); None for text."""
    if isinstance(layer, TextPreprocessor):
        return None
    if isinstance(layer, ImagePreprocessor):
        height, width = layer.size
        black = tf.io.encode_png(tf.zeros((height, width, 3 if layer.channels == 3 else 1), tf.uint8))
        return tf.cast(layer.decode_one(black), value.dtype)
    if isinstance(layer, AudioPreprocessor):
        return tf.cast(layer.log_mel(tf.zeros((1, layer.num_samples)))[0], value.dtype)
    return tf.zeros_like(value)


@contextlib.contextmanager
def _scaled_outputs(scales):
    """Within the block, each layer's output is multiplied by its scale.

    Keras calls `layer.call` through the instance, so an attribute shadows
    the class's method for this block only; the layer's mask is still
    computed from its inputs.
    """
    for layer, scale in scales.items():
        original = layer.call

        def call(*args, _original=original, _scale=scale, **kwargs):
            outputs = _original(*args, **kwargs)
            return outputs * tf.cast(_scale, outputs.dtype)

        layer.call = call
    try:
        yield
    finally:
        for layer in scales:
            del layer.call


@dataclasses.dataclass
class _Path:
    """A row's straight path from its baselines, sampled at `alphas` (0 to 1,
    sorted): the explained output and its gradient by every input at each
    point. The trapezoidal rule between neighbouring points integrates the
    gradients; each interval's own gap to completeness (the rule's integral
    of d output / d alpha against the output's change over it) says where the
    path needs more points."""

    task: object
    inputs: dict
    unit: int
    rows: dict
    baselines: dict
    text: list
    moves: dict = None
    alphas: np.ndarray = None
    outputs: np.ndarray = None
    gradients: dict = None
    slopes: np.ndarray = None

    @classmethod
    def start(cls, task, inputs, unit, steps):
        layers = task.preprocessor.features
        rows = {name: tf.convert_to_tensor(inputs[name])[0] for name in layers}
        baselines = {name: baseline(layer, rows[name]) for name, layer in layers.items()}
        text = [name for name, layer in layers.items() if isinstance(layer, TextPreprocessor)]
        # How far each feature moves along the path (a text's token scales: by 1).
        moves = {n: 1.0 if n in text else (rows[n] - baselines[n]).numpy() for n in layers}
        path = cls(task, inputs, unit, rows, baselines, text, moves)
        path.alphas, path.outputs, path.gradients = path.evaluate(np.linspace(0.0, 1.0, steps + 1))
        path.slopes = path.slopes_at(path.gradients)
        return path

    @property
    def steps(self):
        return len(self.alphas) - 1

    def slopes_at(self, gradients):
        """d output / d alpha at each point: the gradients along the path's direction."""
        along = {name: gradients[name].astype(np.float64) * self.moves[name] for name in gradients}
        return sum(values.reshape(len(values), -1).sum(axis=1) for values in along.values())

    def interval_gaps(self):
        widths = np.diff(self.alphas)
        return widths / 2 * (self.slopes[:-1] + self.slopes[1:]) - np.diff(self.outputs)

    def split_worst_intervals(self, count):
        """Adds the midpoints of the `count` intervals with the largest gaps
        (of those wider than MIN_INTERVAL); False if none is left to split."""
        gaps = np.where(np.diff(self.alphas) > MIN_INTERVAL, np.abs(self.interval_gaps()), -1.0)
        worst = np.argsort(-gaps)[:count]
        worst = worst[gaps[worst] >= 0]
        if not len(worst):
            return False
        alphas, outputs, gradients = self.evaluate((self.alphas[worst] + self.alphas[worst + 1]) / 2)
        order = np.argsort(np.concatenate([self.alphas, alphas]), kind="stable")
        self.alphas = np.concatenate([self.alphas, alphas])[order]
        self.outputs = np.concatenate([self.outputs, outputs])[order]
        self.gradients = {n: np.concatenate([self.gradients[n], gradients[n]])[order] for n in gradients}
        self.slopes = np.concatenate([self.slopes, self.slopes_at(gradients)])[order]
        return True

    def attribution(self):
        widths = np.diff(self.alphas)
        weights = np.concatenate([widths, [0.0]]) / 2 + np.concatenate([[0.0], widths]) / 2
        features = {
            name: np.tensordot(weights, gradients, axes=1) * self.moves[name]
            for name, gradients in self.gradients.items()
        }
        return Attribution(features, float(self.outputs[-1]), float(self.outputs[0]), self.steps)

    def evaluate(self, alphas):
        """(alphas, the explained output at each, {feature: its gradient at
        each, per token for a text and per input value otherwise})."""
        embeddings = {name: self.task.backbone.encoders[name].token_embedding for name in self.text}
        rows, text = self.rows, self.text
        outputs, gradients = [], {name: [] for name in rows}
        for start in range(0, len(alphas), CHUNK):
            chunk = tf.constant(alphas[start : start + CHUNK], tf.float32)
            size = int(chunk.shape[0])
            path, scales = {}, {}
            for name in rows:
                if name in text:
                    path[name] = tf.tile(rows[name][tf.newaxis], [size, 1])
                    scales[name] = tf.tile(chunk[:, tf.newaxis, tf.newaxis], [1, rows[name].shape[0], 1])
                else:
                    alpha = tf.reshape(chunk, [size] + [1] * len(rows[name].shape))
                    path[name] = self.baselines[name] + alpha * (rows[name] - self.baselines[name])
            path[MODALITY_MASK] = tf.tile(tf.convert_to_tensor(self.inputs[MODALITY_MASK]), [size, 1])
            moving = {name: scales[name] if name in text else path[name] for name in rows}
            with tf.GradientTape() as tape:
                tape.watch(list(moving.values()))
                with _scaled_outputs({embeddings[name]: scales[name] for name in text}):
                    output = self.task(path, training=False)[PREDICTION][:, self.unit]
            # A feature the model no longer reads (switched off) has no gradient.
            computed = tape.gradient(output, moving, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            for name, gradient in computed.items():
                gradient = gradient.numpy()
                gradients[name].append(gradient[..., 0] if name in text else gradient)
            outputs.append(output.numpy().astype(np.float64))
        return (
            np.asarray(alphas, np.float64),
            np.concatenate(outputs),
            {name: np.concatenate(values) for name, values in gradients.items()},
        )


def integrated_gradients(task, inputs, unit, steps=DEFAULT_STEPS):
    """The attributions of one output unit to every feature of one row.

    Args:
        task: FusionTask. The model, whose `prediction` output is explained.
        inputs: dict. One row's preprocessed inputs, each with a batch axis of 1.
        unit: int. The index of the explained output (a class's probability).
        steps: int. Intervals of the path; the gap to completeness shrinks
            roughly with their square.

    Returns:
        Attribution.
    """
    return _Path.start(task, inputs, unit, steps).attribution()


def complete_integrated_gradients(task, inputs, unit, steps=DEFAULT_STEPS):
    """`integrated_gradients` with points added until the attributions are
    complete within the tolerance, or the path has MAX_STEPS intervals. A
    path that crosses a steep region (a log-mel spectrogram leaving silence,
    token vectors growing from 0) needs many points there and few elsewhere,
    so each round halves the CHUNK intervals whose own gaps are largest."""
    path = _Path.start(task, inputs, unit, steps)
    while True:
        attribution = path.attribution()
        allowed = max(TOLERANCE * abs(attribution.value - attribution.baseline_value), ABSOLUTE_TOLERANCE)
        if abs(attribution.completeness_gap) <= allowed or path.steps >= MAX_STEPS:
            return attribution
        if not path.split_worst_intervals(min(CHUNK, MAX_STEPS - path.steps)):
            return attribution

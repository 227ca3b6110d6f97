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

# Interpolated inputs per forward pass: bounds memory on large pictures.
CHUNK = 32
DEFAULT_STEPS = 64
MAX_STEPS = 1024
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
    """A row's straight path from its baselines, with the gradient sums that
    the trapezoidal rule weighs: at both ends, and at the interior points of
    `steps` equal intervals (halving them keeps every point already taken)."""

    task: object
    inputs: dict
    unit: int
    rows: dict
    baselines: dict
    text: list
    ends: dict = None
    interior: dict = None
    outputs: np.ndarray = None
    steps: int = 0

    @classmethod
    def start(cls, task, inputs, unit, steps):
        layers = task.preprocessor.features
        rows = {name: tf.convert_to_tensor(inputs[name])[0] for name in layers}
        baselines = {name: baseline(layer, rows[name]) for name, layer in layers.items()}
        text = [name for name, layer in layers.items() if isinstance(layer, TextPreprocessor)]
        path = cls(task, inputs, unit, rows, baselines, text, steps=steps)
        path.ends, path.outputs = path.gradient_sums(np.array([0.0, 1.0], np.float32))
        path.interior, _ = path.gradient_sums(np.linspace(0.0, 1.0, steps + 1, dtype=np.float32)[1:-1])
        return path

    def halve_intervals(self):
        midpoints = ((np.arange(self.steps) + 0.5) / self.steps).astype(np.float32)
        sums, _ = self.gradient_sums(midpoints)
        self.interior = {name: self.interior[name] + sums[name] for name in sums}
        self.steps *= 2

    def attribution(self):
        features = {}
        for name, ends in self.ends.items():
            integral = (ends / 2 + self.interior[name]) / self.steps
            moved = 1.0 if name in self.text else (self.rows[name] - self.baselines[name]).numpy()
            features[name] = integral * moved
        return Attribution(features, float(self.outputs[1]), float(self.outputs[0]), self.steps)

    def gradient_sums(self, alphas):
        """({feature: the explained output's gradient summed over the points
        at `alphas`, per token for a text and per input value otherwise},
        the output at each point)."""
        embeddings = {name: self.task.backbone.encoders[name].token_embedding for name in self.text}
        rows, text = self.rows, self.text
        # A text's sums: one per token; the others': one per input value.
        sums = {name: np.zeros(rows[name].shape[:1] if name in text else rows[name].shape) for name in rows}
        outputs = []
        for start in range(0, len(alphas), CHUNK):
            chunk = tf.constant(alphas[start : start + CHUNK])
            size = int(chunk.shape[0])
            path, scales = {}, {}
            for name in rows:
                if name in self.text:
                    path[name] = tf.tile(rows[name][tf.newaxis], [size, 1])
                    scales[name] = tf.tile(chunk[:, tf.newaxis, tf.newaxis], [1, rows[name].shape[0], 1])
                else:
                    alpha = tf.reshape(chunk, [size] + [1] * len(rows[name].shape))
                    path[name] = self.baselines[name] + alpha * (rows[name] - self.baselines[name])
            path[MODALITY_MASK] = tf.tile(tf.convert_to_tensor(self.inputs[MODALITY_MASK]), [size, 1])
            moving = {name: scales[name] if name in self.text else path[name] for name in rows}
            with tf.GradientTape() as tape:
                tape.watch(list(moving.values()))
                with _scaled_outputs({embeddings[name]: scales[name] for name in self.text}):
                    output = self.task(path, training=False)[PREDICTION][:, self.unit]
            # A feature the model no longer reads (switched off) has no gradient.
            gradients = tape.gradient(output, moving, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            for name, gradient in gradients.items():
                summed = gradient.numpy().sum(axis=0)
                sums[name] += summed[..., 0] if name in self.text else summed
            outputs.append(output.numpy())
        return sums, np.concatenate(outputs) if outputs else np.zeros(0)


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
    """`integrated_gradients` with the intervals halved until the
    attributions are complete within the tolerance, or MAX_STEPS are
    reached: a path that crosses a steep region (a log-mel spectrogram
    leaving silence) needs more of them than a smooth one. Each halving
    evaluates only the new midpoints."""
    path = _Path.start(task, inputs, unit, steps)
    while True:
        attribution = path.attribution()
        allowed = max(TOLERANCE * abs(attribution.value - attribution.baseline_value), ABSOLUTE_TOLERANCE)
        if abs(attribution.completeness_gap) <= allowed or path.steps >= MAX_STEPS:
            return attribution
        path.halve_intervals()

"""Regression: one number per row, standardised for training."""

import math

import keras
import numpy as np
import tensorflow as tf

from mmkeras.errors import SpecError
from mmkeras.preprocessing.preprocessing_layer import PreprocessingLayer
from mmkeras.reporting import metrics as reports
from mmkeras.reporting import plots
from mmkeras.tasks.fusion_task import FusionTask
from mmkeras.tasks.task import EpochSummaries, register_task


def _as_number(value):
    """The value as a finite float, or None."""
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


@keras.saving.register_keras_serializable(package="mmkeras")
class NumericTarget(PreprocessingLayer):
    """Standardises a numeric target: `(value - mean) / std` (float32).

    Args:
        mean: float. The training split's mean; set by `adapt`.
        std: float. The training split's standard deviation; set by `adapt`.
    """

    def __init__(self, mean=0.0, std=1.0, **kwargs):
        super().__init__(**kwargs)
        self.mean = float(mean)
        self.std = float(std)

    def adapt(self, values):
        """Learns the mean and standard deviation of the readable values."""
        numbers = np.asarray([n for n in map(_as_number, map(str, values)) if n is not None], np.float64)
        if len(numbers):
            self.mean = float(numbers.mean())
            self.std = float(numbers.std()) or 1.0

    def problem(self, value):
        """Why a raw target cannot be encoded, or None when it can."""
        if _as_number(value) is None:
            return f"target `{value}` is not a finite number"
        return None

    def call_batched(self, values):
        return (tf.strings.to_number(values, tf.float32) - self.mean) / self.std

    def decode(self, standardized):
        """Standardised values back in the target's units."""
        return standardized * self.std + self.mean

    def get_config(self):
        config = super().get_config()
        config.update({"mean": self.mean, "std": self.std})
        return config


@register_task("numeric")
class Regressor(FusionTask):
    """Predicts a number; trained on the standardised target with MSE.

    Serving output: `prediction`, in the target's units. Its preprocessor's
    `target` is a `NumericTarget`.
    """

    higher_is_better = False

    @classmethod
    def target_encoder(cls, spec):
        return NumericTarget(name="target")

    @classmethod
    def head_output(cls, target):
        return 1, None

    def default_loss(self, label_smoothing=0.0):
        return keras.losses.MeanSquaredError()

    def default_metrics(self):
        return [keras.metrics.MeanAbsoluteError(name="mae"), keras.metrics.RootMeanSquaredError(name="rmse")]

    def serving_outputs(self, predictions):
        return {"prediction": self.preprocessor.target.decode(predictions[:, 0])}

    def _values(self, standardized):
        return self.preprocessor.target.decode(np.asarray(standardized, np.float64).reshape(-1))

    def explained_unit(self, prediction, label=None):
        if label is not None:
            raise SpecError("--label picks a class; this run predicts a number.")
        return 0, "prediction, in standard deviations of the training target"

    def prediction_columns(self, predictions):
        return [{"prediction": f"{value:.6f}"} for value in self._values(predictions)]

    def report(self, targets, predictions):
        return reports.regression_report(self._values(targets), self._values(predictions))

    def headline(self, report):
        return "rmse", report["rmse"]

    def report_figures(self, report, targets, predictions):
        return {
            "predicted_vs_true.png": plots.scatter_figure(self._values(targets), self._values(predictions))
        }

    def epoch_summaries(self, sample, predictions):
        values = self._values(predictions)
        titles = [f"true {true} | pred {value:.3f}" for true, value in zip(sample.raw_targets, values)]
        scatter = plots.scatter_figure(self._values(sample.targets), values)
        return EpochSummaries(images={"predicted_vs_true": scatter}, tables={}, titles=titles)

"""Evaluating a finished run (metrics, plots, modality ablation) and predicting with it."""

from mmkeras.evaluation.evaluate import evaluate_run
from mmkeras.evaluation.predict import predict_run

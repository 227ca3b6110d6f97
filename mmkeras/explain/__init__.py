"""Attributions of a run's predictions to its modalities, words, pixels and record columns."""

from mmkeras.explain.explain import explain_run
from mmkeras.explain.integrated_gradients import (
    Attribution,
    complete_integrated_gradients,
    integrated_gradients,
)

"""Hyperparameter search over a spec's `tune:` section, with KerasTuner."""

from mmkeras.tune.tuner import TuneResult, tune

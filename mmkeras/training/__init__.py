"""Training: strategies, the run folder, TensorBoard summaries, resuming."""

from mmkeras.training.callbacks import TrainingError
from mmkeras.training.run import load_run, train
from mmkeras.training.strategy import resolve_strategy

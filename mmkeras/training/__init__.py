"""Training: strategies, callbacks, TensorBoard summaries, resuming."""

from mmkeras.training.run import train
from mmkeras.training.seeds import train_seeds
from mmkeras.training.strategy import resolve_strategy

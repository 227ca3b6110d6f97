"""Real and generated datasets, each written as files + manifests + a spec."""

from mmkeras.datasets.avmnist import build_avmnist
from mmkeras.datasets.emoji import build_emoji, load_emoji
from mmkeras.datasets.files import DATA_ENV, data_root
from mmkeras.datasets.quickstart import build_quickstart

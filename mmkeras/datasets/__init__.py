"""Real and generated datasets, each written as files + manifests + a spec."""

from mmkeras.datasets.avmnist import build_avmnist
from mmkeras.datasets.easy_vqa import build_easy_vqa, load_easy_vqa
from mmkeras.datasets.emoji import build_emoji, load_emoji
from mmkeras.datasets.files import DATA_ENV, data_root
from mmkeras.datasets.flickr8k import build_flickr8k, load_flickr8k
from mmkeras.datasets.ham10000 import build_ham10000, load_ham10000
from mmkeras.datasets.quickstart import build_quickstart

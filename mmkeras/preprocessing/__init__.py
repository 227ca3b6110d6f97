"""Preprocessing layers: raw strings and encoded bytes to model inputs."""

from mmkeras.preprocessing.audio import AudioPreprocessor
from mmkeras.preprocessing.image import ImageAugmenter, ImagePreprocessor
from mmkeras.preprocessing.preprocessor import Preprocessor
from mmkeras.preprocessing.text import TextPreprocessor

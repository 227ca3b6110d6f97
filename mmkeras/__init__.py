"""mmkeras: multimodal deep learning with Keras and TensorFlow."""

from mmkeras.data import build_preprocessor, check_spec, make_dataset
from mmkeras.errors import BadRecordError, SpecError
from mmkeras.evaluation import evaluate_run, predict_run
from mmkeras.models import build_dual_encoder, build_model
from mmkeras.preprocessing import Preprocessor, load_preprocessor
from mmkeras.spec import Spec
from mmkeras.training import TrainingError, load_run, train

__version__ = "0.1.0"

"""mmkeras: multimodal deep learning with Keras and TensorFlow."""

from mmkeras.data import build_preprocessor, check_spec, make_dataset
from mmkeras.errors import (
    BadRecordError,
    DataError,
    ExportError,
    MMKerasError,
    RunFolderError,
    ServingError,
    SpecError,
    TrainingError,
)
from mmkeras.evaluation import evaluate_run, predict_run
from mmkeras.explain import explain_run
from mmkeras.models import MultimodalBackbone
from mmkeras.preprocessing import Preprocessor
from mmkeras.run_folder import Run, RunFolder, load_run
from mmkeras.spec import Spec
from mmkeras.tasks import Classifier, DualEncoder, Regressor, Task, build_task, task_class
from mmkeras.training import train, train_seeds
from mmkeras.tune import tune

__version__ = "0.2.0"

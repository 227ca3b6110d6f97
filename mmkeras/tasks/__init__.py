"""Tasks: one Keras model per kind of problem, owning its preprocessor.

| spec `data.target.type` | Task |
|---|---|
| categorical, binary, multilabel | `Classifier` |
| numeric | `Regressor` |
| sequence (a caption) | `Captioner` |
| (no target: text-image pairs) | `DualEncoder` |
"""

from mmkeras.tasks.caption_target import CaptionTarget
from mmkeras.tasks.captioner import Captioner
from mmkeras.tasks.classifier import Classifier, LabelEncoder
from mmkeras.tasks.dual_encoder import DualEncoder, recall_at_k
from mmkeras.tasks.fusion_task import FusionTask
from mmkeras.tasks.regressor import NumericTarget, Regressor
from mmkeras.tasks.task import Task, build_task, register_task, task_class

"""Models built from a spec: fused classifiers/regressors and a dual encoder."""

from mmkeras.models.builder import FUSED_EMBEDDING, PREDICTION, build_encoder, build_model
from mmkeras.models.dual_encoder import DualEncoder, build_dual_encoder, recall_at_k
from mmkeras.models.heads import compile_for_target, loss_and_metrics

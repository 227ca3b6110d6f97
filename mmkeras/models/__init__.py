"""The multimodal backbone (encoders and fusion) and how a spec builds it."""

from mmkeras.models.backbone import FUSED_EMBEDDING, MultimodalBackbone
from mmkeras.models.builder import build_backbone, build_encoder

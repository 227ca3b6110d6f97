"""Keras layers: encoders for each modality, fusion layers, modality dropout and gradient scaling."""

from mmkeras.layers.audio_encoders import SpectrogramCNNEncoder
from mmkeras.layers.concat_fusion import ConcatFusion
from mmkeras.layers.cross_modal_attention_fusion import CrossModalAttentionFusion, CrossModalBlock
from mmkeras.layers.gated_fusion import GatedFusion
from mmkeras.layers.gradient_scale import GradientScale
from mmkeras.layers.hadamard_fusion import HadamardFusion
from mmkeras.layers.image_encoders import BackboneImageEncoder, CNNImageEncoder
from mmkeras.layers.late_fusion import LateFusion
from mmkeras.layers.modality_dropout import ModalityDropout
from mmkeras.layers.pooling import MaskedMeanPooling
from mmkeras.layers.record_encoders import RecordMLPEncoder
from mmkeras.layers.tensor_fusion import LowRankTensorFusion, TensorFusion
from mmkeras.layers.text_encoders import (
    LSTMTextEncoder,
    PretrainedTextEncoder,
    TextEncoder,
    TransformerTextEncoder,
)

"""Audio encoder: a log-mel spectrogram to a pooled vector and a time sequence."""

import keras

from mmkeras.layers.encoder import Encoder
from mmkeras.layers.image_encoders import conv_blocks
from mmkeras.layers.pooling import FullMask


@keras.saving.register_keras_serializable(package="mmkeras")
class SpectrogramCNNEncoder(Encoder):
    """2-D convolutions over time and frequency, pooled over both.

    Input `audio` `[batch, frames, mel_bins]`; outputs `pooled`, `sequence`
    (one step per pooled time frame, its frequency bands and channels
    flattened) and `sequence_mask` (all true).

    Args:
        spectrogram_shape: (int, int). Frames and mel bins.
        filters: list of int. Conv widths, one block each.
        kernel_size: int. Conv kernel size.
        dropout_rate: float. Dropout after each block.
    """

    def __init__(self, spectrogram_shape, filters=(32, 64, 128), kernel_size=3, dropout_rate=0.0, **kwargs):
        name = kwargs.get("name") or "spectrogram_cnn_encoder"
        audio = keras.Input(shape=tuple(spectrogram_shape), name="audio")
        x = keras.layers.Reshape((*spectrogram_shape, 1), name=f"{name}_channel")(audio)
        # Standardise each spectrogram by its own statistics: log-mel values
        # sit far from zero and recording levels differ; no moving averages
        # means no gap between training and inference.
        x = keras.layers.LayerNormalization(axis=[1, 2, 3], name=f"{name}_input_norm")(x)
        feature_map = conv_blocks(x, filters, kernel_size, dropout_rate, name)
        steps, bands, channels = feature_map.shape[1:]
        sequence = keras.layers.Reshape((steps, bands * channels), name=f"{name}_time_steps")(feature_map)
        pooled = keras.layers.GlobalAveragePooling2D(name=f"{name}_pooled")(feature_map)
        outputs = {
            "pooled": pooled,
            "sequence": sequence,
            "sequence_mask": FullMask(name=f"{name}_mask")(sequence),
        }
        super().__init__(inputs={"audio": audio}, outputs=outputs, **kwargs)
        self.store_arguments(
            spectrogram_shape=spectrogram_shape,
            filters=filters,
            kernel_size=kernel_size,
            dropout_rate=dropout_rate,
        )

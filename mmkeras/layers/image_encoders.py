"""Image encoders: images to a pooled vector and the feature map as a sequence.

Input `images` `[batch, height, width, channels]`; outputs `pooled`,
`sequence` (the final feature map's positions, row by row) and
`sequence_mask` (all true).
"""

import keras

from mmkeras.layers.encoder import Encoder
from mmkeras.layers.pooling import FullMask

KERAS_APPLICATIONS = {
    "efficientnet_b0": "EfficientNetB0",
    "efficientnet_v2_b0": "EfficientNetV2B0",
    "resnet50": "ResNet50",
    "resnet50_v2": "ResNet50V2",
    "mobilenet_v3_small": "MobileNetV3Small",
    "mobilenet_v3_large": "MobileNetV3Large",
}


def _outputs(feature_map, name):
    sequence = keras.layers.Reshape((-1, feature_map.shape[-1]), name=f"{name}_positions")(feature_map)
    pooled = keras.layers.GlobalAveragePooling2D(name=f"{name}_pooled")(feature_map)
    return {"pooled": pooled, "sequence": sequence, "sequence_mask": FullMask(name=f"{name}_mask")(sequence)}


def conv_blocks(x, filters, kernel_size, dropout_rate, name, pool_size=2):
    """Conv -> batch norm -> ReLU -> max pool, once per entry of `filters`."""
    for index, width in enumerate(filters):
        x = keras.layers.Conv2D(
            width, kernel_size, padding="same", use_bias=False, name=f"{name}_conv_{index}"
        )(x)
        # momentum 0.9: the moving statistics settle within a short run's
        # few hundred steps (at Keras's 0.99 inference would see stale ones).
        # synchronized: under tf.distribute the batch statistics are those of
        # the global batch, so every replica and every worker keeps the same
        # moving statistics, as one device would.
        x = keras.layers.BatchNormalization(momentum=0.9, synchronized=True, name=f"{name}_bn_{index}")(x)
        x = keras.layers.ReLU(name=f"{name}_relu_{index}")(x)
        x = keras.layers.MaxPooling2D(pool_size, name=f"{name}_pool_{index}")(x)
        if dropout_rate:
            x = keras.layers.Dropout(dropout_rate, name=f"{name}_dropout_{index}")(x)
    return x


@keras.saving.register_keras_serializable(package="mmkeras")
class CNNImageEncoder(Encoder):
    """Convolution blocks with batch norm and max pooling.

    Args:
        image_shape: (int, int, int). Height, width, channels.
        filters: list of int. Conv widths, one block each.
        kernel_size: int. Conv kernel size.
        dropout_rate: float. Dropout after each block.
    """

    def __init__(self, image_shape, filters=(32, 64, 128), kernel_size=3, dropout_rate=0.0, **kwargs):
        name = kwargs.get("name") or "cnn_image_encoder"
        images = keras.Input(shape=tuple(image_shape), name="images")
        feature_map = conv_blocks(images, filters, kernel_size, dropout_rate, name)
        super().__init__(inputs={"images": images}, outputs=_outputs(feature_map, name), **kwargs)
        self.store_arguments(
            image_shape=image_shape, filters=filters, kernel_size=kernel_size, dropout_rate=dropout_rate
        )


@keras.saving.register_keras_serializable(package="mmkeras")
class BackboneImageEncoder(Encoder):
    """A `keras.applications` model or a KerasHub image backbone.

    `keras.applications` models are built with `weights=None` or load a local
    weights file (`weights: path/to/notop.h5`), since nothing is downloaded at
    run time; they expect the pixel range their own preprocessing expects
    (EfficientNet and MobileNetV3: [0, 255], set `value_range: [0, 255]`).
    A KerasHub image backbone comes from a local preset folder.

    Args:
        image_shape: (int, int, int). Height, width, channels.
        application: str or None. One of `KERAS_APPLICATIONS`.
        weights: str or None. A local weights file for the application.
        preset: str or None. A local KerasHub image backbone preset.
        trainable: bool. False freezes the backbone.
    """

    def __init__(self, image_shape, application=None, weights=None, preset=None, trainable=True, **kwargs):
        if (application is None) == (preset is None):
            raise ValueError("give exactly one of `application` or `preset`.")
        name = kwargs.pop("name", None) or "backbone_image_encoder"
        images = keras.Input(shape=tuple(image_shape), name="images")
        if application is not None:
            if application not in KERAS_APPLICATIONS:
                raise ValueError(
                    f"unknown application {application!r}; use one of {', '.join(KERAS_APPLICATIONS)}."
                )
            backbone = getattr(keras.applications, KERAS_APPLICATIONS[application])(
                include_top=False, weights=weights, input_shape=tuple(image_shape)
            )
        else:
            import keras_hub

            backbone = keras_hub.models.Backbone.from_preset(preset)
        backbone.trainable = trainable
        feature_map = backbone(images)
        super().__init__(inputs={"images": images}, outputs=_outputs(feature_map, name), name=name, **kwargs)
        self.backbone = backbone
        # `weights` is a Keras model property, so the file path is stored aside.
        self.store_arguments(image_shape=image_shape, application=application, preset=preset)
        self.weights_file = weights

    def get_config(self):
        return {**super().get_config(), "weights": self.weights_file, "trainable": self.backbone.trainable}

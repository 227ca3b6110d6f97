"""Record encoder: a row's numbers and categories to a pooled vector."""

import keras

from mmkeras.layers.encoder import Encoder
from mmkeras.layers.pooling import FullMask


@keras.saving.register_keras_serializable(package="mmkeras")
class RecordMLPEncoder(Encoder):
    """An MLP over the record's columns side by side.

    Input `record` `[batch, record_width]`: each numeric column's
    standardised value and missing flag, each categorical column one-hot
    (`RecordPreprocessor`), so the first layer learns an embedding per
    category and a weight per number. Outputs `pooled`, `sequence` (the
    pooled vector as one step, for fusions that attend over steps) and
    `sequence_mask` (all true).

    Args:
        record_width: int. Floats per row (`RecordPreprocessor.output_size`).
        hidden_dims: list of int. Widths of the hidden layers; the last is
            the pooled vector's.
        dropout_rate: float. Dropout after each hidden layer.

    Example:

    >>> encoder = RecordMLPEncoder(record_width=6)
    >>> encoder({"record": np.zeros((2, 6))})["pooled"].shape
    TensorShape([2, 64])
    """

    def __init__(self, record_width, hidden_dims=(64, 64), dropout_rate=0.1, **kwargs):
        name = kwargs.get("name") or "record_mlp_encoder"
        record = keras.Input(shape=(record_width,), name="record")
        x = record
        for index, width in enumerate(hidden_dims):
            x = keras.layers.Dense(width, activation="relu", name=f"{name}_dense_{index}")(x)
            x = keras.layers.Dropout(dropout_rate, name=f"{name}_dropout_{index}")(x)
        sequence = keras.layers.Reshape((1, hidden_dims[-1]), name=f"{name}_one_step")(x)
        mask = FullMask(name=f"{name}_mask")(sequence)
        outputs = {"pooled": x, "sequence": sequence, "sequence_mask": mask}
        super().__init__(inputs={"record": record}, outputs=outputs, **kwargs)
        self.store_arguments(record_width=record_width, hidden_dims=hidden_dims, dropout_rate=dropout_rate)

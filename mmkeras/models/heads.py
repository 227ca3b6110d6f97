"""What each target type needs at the top of a model: width, activation, loss, metrics."""

import keras


def output_units(target_type, num_labels):
    """Output width and activation for a target type."""
    if target_type == "categorical":
        return num_labels, "softmax"
    if target_type == "multilabel":
        return num_labels, "sigmoid"
    if target_type == "binary":
        return 1, "sigmoid"
    return 1, None


def loss_and_metrics(target_type, num_labels):
    """The loss and metrics to compile a model for a target type with."""
    if target_type == "categorical":
        return keras.losses.SparseCategoricalCrossentropy(), [
            keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
        ]
    if target_type == "binary":
        return keras.losses.BinaryCrossentropy(), [
            keras.metrics.BinaryAccuracy(name="accuracy"),
            keras.metrics.AUC(name="auc"),
            keras.metrics.Precision(name="precision"),
            keras.metrics.Recall(name="recall"),
        ]
    if target_type == "multilabel":
        return keras.losses.BinaryCrossentropy(), [
            keras.metrics.BinaryAccuracy(name="accuracy"),
            keras.metrics.AUC(name="auc", multi_label=True, num_labels=num_labels),
            keras.metrics.F1Score(name="f1", average="micro", threshold=0.5),
            keras.metrics.Precision(name="precision"),
            keras.metrics.Recall(name="recall"),
        ]
    return keras.losses.MeanSquaredError(), [
        keras.metrics.MeanAbsoluteError(name="mae"),
        keras.metrics.RootMeanSquaredError(name="rmse"),
    ]


def compile_for_target(model, target_type, num_labels, optimizer="adam"):
    """Compiles `model` with the loss and metrics its target type calls for."""
    loss, metrics = loss_and_metrics(target_type, num_labels)
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics)
    return model

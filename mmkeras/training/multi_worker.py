"""Training under MultiWorkerMirroredStrategy with a `strategy.run` step loop.

Keras 3.15's `fit` fails under MultiWorkerMirroredStrategy (upstream
keras-team/keras#20585: it runs eager collective reductions on per-replica
values). This loop runs the same compiled model, loss and optimizer one
`strategy.run` step at a time, averages the loss over the global batch with
`tf.nn.compute_average_loss`, and drives the same Keras callbacks
(checkpoints, CSV history, TensorBoard) as `fit` does.
"""

import keras
import tensorflow as tf

from mmkeras.training.tensorboard import DataSummaries


def _per_example_loss(model, target, prediction):
    loss = model.loss
    if isinstance(loss, keras.losses.Loss):
        return loss.call(target, prediction)
    return keras.losses.get(loss)(target, prediction)


def fit_multi_worker(
    model, strategy, train_data, epochs, steps_per_epoch, callbacks, global_batch_size, validation_data=None
):
    """Trains `model` (built in `strategy.scope()`) on a distributed dataset.

    Args:
        model: keras.Model. Compiled (its loss and optimizer are used).
        strategy: tf.distribute.Strategy. A MultiWorkerMirroredStrategy.
        train_data: tf.distribute.DistributedDataset. Per-replica batches.
        epochs: int. Epochs to run.
        steps_per_epoch: int. Steps per epoch (the same on every worker).
        callbacks: list. Keras callbacks; BackupAndRestore and the
            DataSummaries (which call `predict`) are skipped here.
        global_batch_size: int. The batch over all replicas of all workers.
        validation_data: tf.data.Dataset or None. Evaluated on each worker
            (same rows everywhere) for `val_loss`.

    Returns:
        The list of per-epoch logs.
    """
    @tf.function
    def train_step(iterator):
        def step(inputs, target):
            with tf.GradientTape() as tape:
                prediction = model(inputs, training=True)
                per_example = _per_example_loss(model, target, prediction)
                loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch_size)
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses)) if model.losses else 0.0
            gradients = tape.gradient(loss, model.trainable_variables)
            model.optimizer.apply_gradients(zip(gradients, model.trainable_variables))
            return loss

        return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(step, args=next(iterator)), axis=None)

    @tf.function
    def validation_loss(inputs, target):
        return tf.reduce_mean(_per_example_loss(model, target, model(inputs, training=False)))

    kept = [c for c in callbacks if not isinstance(c, (keras.callbacks.BackupAndRestore, DataSummaries))]
    callback_list = keras.callbacks.CallbackList(kept, model=model, epochs=epochs, steps=steps_per_epoch, verbose=0)
    callback_list.on_train_begin()
    history = []
    for epoch in range(epochs):
        iterator = iter(train_data)  # one pass of this worker's shard per epoch
        callback_list.on_epoch_begin(epoch)
        total = 0.0
        for batch in range(steps_per_epoch):
            callback_list.on_train_batch_begin(batch)
            loss = float(train_step(iterator))
            total += loss
            callback_list.on_train_batch_end(batch, {"loss": loss})
            if model.stop_training:
                break
        logs = {"loss": total / (batch + 1)}
        if validation_data is not None:
            losses = [float(validation_loss(inputs, target)) for inputs, target in validation_data]
            logs["val_loss"] = sum(losses) / max(len(losses), 1)
        callback_list.on_epoch_end(epoch, logs)
        history.append(logs)
        if model.stop_training:
            break
    callback_list.on_train_end(history[-1] if history else {})
    return history

"""Training under MultiWorkerMirroredStrategy with a `strategy.run` step loop.

Keras 3.15's `fit` fails under MultiWorkerMirroredStrategy (upstream
keras-team/keras#20585: it runs eager collective reductions on per-replica
values). This loop runs the model's own `train_step` and `test_step` one
`strategy.run` at a time, so the compiled loss (class weights arrive as
sample weights from the pipeline), loss scaling under mixed_float16,
regularisation and the compiled metrics are exactly those of `fit`, and it
drives the same Keras callbacks (backup, checkpoints, CSV history,
TensorBoard).
"""

import keras
import tensorflow as tf

from mmkeras.errors import TrainingError
from mmkeras.training.callbacks import FiniteBackupAndRestore
from mmkeras.training.tensorboard import DataSummaries


class SharedBackupAndRestore(FiniteBackupAndRestore):
    """BackupAndRestore for several workers: the chief writes, every worker reads.

    All workers must restart from the same epoch with the same weights, so
    they all restore from the chief's backup folder, which must be on
    storage they share.

    Args:
        backup_dir: str. The chief's backup folder.
        writer: bool. Whether this worker writes (the chief) or only reads.
    """

    def __init__(self, backup_dir, writer, **kwargs):
        super().__init__(backup_dir, **kwargs)
        self.writer = writer

    def on_epoch_end(self, epoch, logs=None):
        if self.writer:
            super().on_epoch_end(epoch, logs)

    def on_train_end(self, logs=None):
        if self.writer:
            super().on_train_end(logs)

    def initial_epoch(self):
        """The epoch to start from after `on_train_begin` restored the backup."""
        # Keras's BackupAndRestore hands the restored epoch to fit this way.
        return getattr(self.model, "_initial_epoch", None) or 0


def _agree_on_initial_epoch(strategy, epoch, backup_dir):
    """Fails clearly when the workers did not all find the same backup."""
    epochs = strategy.gather(strategy.run(lambda: tf.constant([epoch])), axis=0).numpy()
    if len(set(epochs.tolist())) > 1:
        raise TrainingError(
            f"the workers would resume from different epochs {sorted(set(epochs.tolist()))}: "
            f"some could not read the backup in {backup_dir}. Every worker must be given the "
            "same --output-dir on storage all of them share."
        )


class MultiWorkerLoop:
    """`fit` and `evaluate` for a compiled model under MultiWorkerMirroredStrategy.

    Args:
        model: keras.Model. Built and compiled in `strategy.scope()`; its
            `train_step` and `test_step` run.
        strategy: tf.distribute.Strategy. A MultiWorkerMirroredStrategy.
        element_spec: nested tf.TensorSpec. One replica's batch, to build the
            compiled metrics before the first step, as `fit` does.
    """

    def __init__(self, model, strategy, element_spec):
        self.model = model
        self.strategy = strategy
        with strategy.scope():
            # What fit does before its first step (a private Keras method):
            # build the compiled metrics' and loss's state from the shapes.
            model._symbolic_build(data_batch=element_spec)

    def _mean_over_replicas(self, outputs):
        return {
            name: self.strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None)
            for name, value in outputs.items()
        }

    @tf.function
    def _train_step(self, iterator):
        # Every worker gets the same reduced logs, so a NaN or early stop is
        # decided the same way everywhere and no worker waits on another.
        return self._mean_over_replicas(self.strategy.run(self.model.train_step, args=(next(iterator),)))

    @tf.function
    def _test_steps(self, dataset):
        for batch in dataset:
            self.strategy.run(self.model.test_step, args=(batch,))

    @tf.function
    def _results(self):
        # In cross-replica context each metric's result is reduced over every
        # replica of every worker: the exact value, not a mean of means.
        return self.model.get_metrics_result()

    def evaluate(self, dataset):
        """The compiled loss and metrics over a distributed dataset."""
        self.model.reset_metrics()
        self._test_steps(dataset)
        return {name: float(value) for name, value in self._results().items()}

    def fit(self, train_data, epochs, steps_per_epoch, callbacks, validation_data=None, verbose=1):
        """Trains like `Model.fit` and returns the per-epoch logs.

        Args:
            train_data: tf.distribute.DistributedDataset. Repeating batches of
                `(inputs, target)` or `(inputs, target, sample_weight)`.
            epochs: int. The last epoch to run.
            steps_per_epoch: int. Steps per epoch (the same on every worker).
            callbacks: list. Keras callbacks; a SharedBackupAndRestore among
                them resumes a killed run. DataSummaries (which call
                `predict`, broken under this strategy) are skipped.
            validation_data: tf.distribute.DistributedDataset or None.
                Evaluated after each epoch for the `val_` metrics.
            verbose: int. Progress bar on the chief when not 0.
        """
        model, strategy = self.model, self.strategy
        kept = [c for c in callbacks if not isinstance(c, DataSummaries)]
        callback_list = keras.callbacks.CallbackList(
            kept,
            add_progbar=verbose != 0 and strategy.extended.should_checkpoint,
            model=model,
            epochs=epochs,
            steps=steps_per_epoch,
            verbose=verbose,
        )
        with strategy.scope():
            callback_list.on_train_begin()
        backups = [c for c in kept if isinstance(c, SharedBackupAndRestore)]
        initial_epoch = backups[0].initial_epoch() if backups else 0
        _agree_on_initial_epoch(strategy, initial_epoch, backups[0].backup_dir if backups else None)

        iterator = iter(train_data)
        history = []
        model.stop_training = False
        for epoch in range(initial_epoch, epochs):
            model.reset_metrics()
            callback_list.on_epoch_begin(epoch)
            for step in range(steps_per_epoch):
                callback_list.on_train_batch_begin(step)
                logs = {name: float(value) for name, value in self._train_step(iterator).items()}
                callback_list.on_train_batch_end(step, logs)
                if model.stop_training:
                    break
            logs = {name: float(value) for name, value in self._results().items()}
            if validation_data is not None:
                logs.update({f"val_{name}": value for name, value in self.evaluate(validation_data).items()})
            callback_list.on_epoch_end(epoch, logs)
            history.append(logs)
            if model.stop_training:
                break
        callback_list.on_train_end(history[-1] if history else {})
        return history

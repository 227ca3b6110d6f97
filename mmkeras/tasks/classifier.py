"""Classification: one label of many, yes or no, or several labels at once."""

import collections

import keras
import numpy as np
import tensorflow as tf

from mmkeras.errors import SpecError
from mmkeras.preprocessing.preprocessing_layer import PreprocessingLayer
from mmkeras.reporting import metrics as reports
from mmkeras.reporting import plots
from mmkeras.tasks.fusion_task import FusionTask
from mmkeras.tasks.losses import SparseCrossentropy
from mmkeras.tasks.task import EpochSummaries, register_task

MODES = ("categorical", "binary", "multilabel")
# The probability from which a binary row, or one label of a multi-label
# row, is predicted positive.
THRESHOLD = 0.5
# A target whose commonest class has this many times the rows of its rarest is
# imbalanced: it gets class weights by default and balanced accuracy as its
# headline metric.
IMBALANCE_RATIO = 3.0
# The class of a categorical target's labels folded away by `min_count`.
OTHER_LABEL = "[other]"


def sorted_labels(labels):
    """Sorts labels numerically when they all are numbers, else as strings."""
    labels = sorted(set(labels))
    try:
        return sorted(labels, key=float)
    except ValueError:
        return labels


@keras.saving.register_keras_serializable(package="mmkeras")
class LabelEncoder(PreprocessingLayer):
    """Encodes raw labels (strings) for a classifier.

    - categorical: the label's index in `labels` (int32).
    - binary: 1.0 for the second of the two labels, else 0.0 (float32).
    - multilabel: a multi-hot vector over `labels`, labels joined by `sep`.

    Args:
        mode: str. "categorical", "binary" or "multilabel".
        labels: list or None. The label vocabulary; learned by `adapt`.
        sep: str. Label separator of a multilabel target.
        counts: dict or None. Training rows per label; counted by `adapt`.
        min_count: int or None. Categorical: `adapt` keeps the labels with
            at least this many rows and puts `OTHER_LABEL` first, at index
            0, for the rest and for any label it never saw.

    Example:

    >>> encoder = LabelEncoder("categorical")
    >>> encoder.adapt(["cat", "dog", "cat"])
    >>> encoder(["dog", "cat"]).numpy()
    array([1, 0], dtype=int32)
    """

    def __init__(self, mode="categorical", labels=None, sep="|", counts=None, min_count=None, **kwargs):
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}.")
        self.mode = mode
        self.labels = list(labels) if labels is not None else None
        self.sep = sep
        self.counts = dict(counts) if counts is not None else None
        self.min_count = min_count
        self.lookup = self._make_lookup()

    def split(self, value):
        """The labels of one raw value, as Python strings."""
        if self.mode != "multilabel":
            return [value.strip()] if value.strip() else []
        return [label.strip() for label in value.split(self.sep) if label.strip()]

    def adapt(self, values):
        """Learns the label set (unless given) and each label's count from the
        training split's raw targets."""
        counts = collections.Counter(label for value in values for label in self.split(str(value)))
        if self.labels is None and self.min_count:
            kept = [label for label in sorted_labels(counts) if counts[label] >= self.min_count]
            self.labels = [OTHER_LABEL, *kept]
            counts[OTHER_LABEL] = sum(n for label, n in counts.items() if label not in kept)
        elif self.labels is None:
            self.labels = sorted_labels(counts)
        self.counts = {label: counts.get(label, 0) for label in self.labels}
        if self.mode == "binary" and len(self.labels) != 2:
            raise SpecError(
                f"a binary target needs exactly two labels, found {len(self.labels)}: "
                f"{self.labels[:10]}. Use `type: categorical` for more classes."
            )
        self.lookup = self._make_lookup()

    @property
    def imbalance(self):
        """How many times more rows the commonest class has than the rarest
        (1.0 when unknown: a model saved before labels were counted)."""
        seen = [n for n in (self.counts or {}).values() if n]  # an empty `[other]` is no class to weigh
        if not seen or self.mode == "multilabel":
            return 1.0
        return max(seen) / min(seen)

    def inverse_frequency_weights(self):
        """Class index to `rows / (classes * rows of the class)`: every class
        then weighs as much in the loss as the others. A class without
        training rows (an empty `[other]`) weighs 1 and counts for none."""
        seen = [n for n in self.counts.values() if n]
        return {
            index: sum(seen) / (len(seen) * self.counts[label]) if self.counts[label] else 1.0
            for index, label in enumerate(self.labels)
        }

    @property
    def folds(self):
        """Whether labels outside the vocabulary become `OTHER_LABEL`."""
        return bool(self.min_count)

    def problem(self, value):
        """Why a raw target cannot be encoded, or None when it can."""
        unknown = [label for label in self.split(value) if label not in self.labels and not self.folds]
        if unknown:
            known = ", ".join(sorted(self.labels)[:20])
            return f"unknown label `{unknown[0]}` (the training labels are: {known})"
        return None

    def _make_lookup(self):
        if self.labels is None:
            return None
        return keras.layers.StringLookup(
            # Folding: index 0, the out-of-vocabulary index, is `OTHER_LABEL`.
            vocabulary=self.labels[1:] if self.folds else self.labels,
            num_oov_indices=1 if self.folds else 0,
            output_mode="multi_hot" if self.mode == "multilabel" else "int",
        )

    def call_batched(self, values):
        if self.mode == "multilabel":
            labels = tf.strings.strip(tf.strings.split(values, self.sep))
            labels = tf.ragged.boolean_mask(labels, tf.strings.length(labels) > 0)
            return tf.cast(self.lookup(labels), tf.float32)
        index = tf.cast(self.lookup(values), tf.int32)
        return tf.cast(index, tf.float32) if self.mode == "binary" else index

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "mode": self.mode,
                "labels": self.labels,
                "sep": self.sep,
                "counts": self.counts,
                "min_count": self.min_count,
            }
        )
        return config


@register_task("categorical", "binary", "multilabel")
class Classifier(FusionTask):
    """Predicts one label of many (softmax), yes or no (one sigmoid), or
    several labels at once (a sigmoid per label).

    Serving outputs: categorical `probabilities`, `class_index`, `label`;
    binary `probability` (of the second label) and `label`; multilabel
    `scores`. Its preprocessor's `target` is a `LabelEncoder`.
    """

    stratifies_splits = True

    @classmethod
    def target_encoder(cls, spec):
        target = spec.data.target
        return LabelEncoder(
            mode=target.type, labels=target.labels, sep=target.sep, min_count=target.min_count, name="target"
        )

    @classmethod
    def head_output(cls, target):
        if target.mode == "categorical":
            return len(target.labels), "softmax"
        if target.mode == "multilabel":
            return len(target.labels), "sigmoid"
        return 1, "sigmoid"

    @property
    def mode(self):
        return self.preprocessor.target.mode

    @property
    def labels(self):
        return self.preprocessor.target.labels

    def default_loss(self, label_smoothing=0.0):
        if self.mode == "categorical":
            if label_smoothing:
                return SparseCrossentropy(label_smoothing)
            return keras.losses.SparseCategoricalCrossentropy()
        return keras.losses.BinaryCrossentropy(label_smoothing=label_smoothing)

    def target_as_prediction(self, targets):
        if self.mode == "categorical":
            return np.eye(len(self.labels), dtype=np.float32)[np.asarray(targets)]
        return super().target_as_prediction(targets)

    def default_metrics(self):
        if self.mode == "categorical":
            return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        metrics = [keras.metrics.BinaryAccuracy(name="accuracy", threshold=THRESHOLD)]
        if self.mode == "binary":
            metrics.append(keras.metrics.AUC(name="auc"))
        else:
            metrics += [
                keras.metrics.AUC(name="auc", multi_label=True, num_labels=len(self.labels)),
                keras.metrics.F1Score(name="f1", average="micro", threshold=THRESHOLD),
            ]
        return metrics + [
            keras.metrics.Precision(name="precision", thresholds=THRESHOLD),
            keras.metrics.Recall(name="recall", thresholds=THRESHOLD),
        ]

    # Decoding.

    def serving_outputs(self, predictions):
        labels = tf.constant(self.labels)
        if self.mode == "categorical":
            index = tf.argmax(predictions, axis=-1, output_type=tf.int32)
            return {"probabilities": predictions, "class_index": index, "label": tf.gather(labels, index)}
        if self.mode == "binary":
            probability = predictions[:, 0]
            return {
                "probability": probability,
                "label": tf.gather(labels, tf.cast(probability >= THRESHOLD, tf.int32)),
            }
        return {"scores": predictions}

    def _predicted_index(self, predictions):
        """(class index, its probability) per row of a categorical or binary classifier."""
        predictions = np.asarray(predictions)
        if self.mode == "binary":
            positive = predictions.reshape(-1)
            chosen = (positive >= THRESHOLD).astype(int)
            return chosen, np.where(chosen == 1, positive, 1 - positive)
        return predictions.argmax(axis=1), predictions.max(axis=1)

    def explained_unit(self, prediction, label=None):
        if label is not None and label not in self.labels:
            raise SpecError(f"--label {label!r} is not one of the run's labels: {', '.join(self.labels)}.")
        if self.mode == "binary":  # one output: the second label's probability
            return 0, f"probability of {self.labels[1]}"
        index = self.labels.index(label) if label is not None else int(np.argmax(prediction))
        return index, f"probability of {self.labels[index]}"

    def prediction_columns(self, predictions):
        predictions = np.asarray(predictions)
        rows = []
        if self.mode == "multilabel":
            for scores in predictions:
                chosen = [label for label, p in zip(self.labels, scores) if p >= THRESHOLD]
                columns = {"predicted_labels": self.preprocessor.target.sep.join(chosen)}
                columns.update({f"probability_{label}": f"{p:.6f}" for label, p in zip(self.labels, scores)})
                rows.append(columns)
            return rows
        chosen, confidence = self._predicted_index(predictions)
        for row, index, probability in zip(predictions, chosen, confidence):
            columns = {"predicted_label": self.labels[index], "probability": f"{probability:.6f}"}
            if self.mode == "categorical":
                columns.update({f"probability_{label}": f"{p:.6f}" for label, p in zip(self.labels, row)})
            rows.append(columns)
        return rows

    # Evaluation.

    def report(self, targets, predictions):
        if self.mode == "multilabel":
            predicted = (np.asarray(predictions) >= THRESHOLD).astype(int)
            return reports.multilabel_report(targets, predicted, self.labels)
        true = np.asarray(targets).reshape(-1).astype(int)
        report = reports.classification_report(true, self._predicted_index(predictions)[0], self.labels)
        if self.mode == "binary":
            positive = np.asarray(predictions).reshape(-1)
            report["roc_auc"] = reports.roc_curve(true, positive)[2]
            report["average_precision"] = reports.precision_recall_curve(true, positive)[2]
        return report

    def headline(self, report):
        if self.mode == "multilabel":
            return "micro_f1", report["micro_f1"]
        # On imbalanced classes accuracy rewards ignoring the rare ones: the
        # majority class alone would score high.
        name = "balanced_accuracy" if self.preprocessor.target.imbalance >= IMBALANCE_RATIO else "accuracy"
        return name, report[name]

    def report_figures(self, report, targets, predictions):
        figures = {}
        if self.mode == "multilabel":
            f1 = {label: scores["f1"] for label, scores in report["per_label"].items()}
            figures["per_label_f1.png"] = plots.bar_figure(f1, "F1 per label", "F1")
            return figures
        figures["confusion_matrix.png"] = plots.confusion_matrix_figure(
            report["confusion_matrix"], self.labels
        )
        f1 = {label: scores["f1"] for label, scores in report["per_class"].items()}
        figures["per_class_f1.png"] = plots.bar_figure(f1, "F1 per class", "F1")
        if self.mode == "binary":
            true = np.asarray(targets).reshape(-1)
            positive = np.asarray(predictions).reshape(-1)
            fpr, tpr, auc = reports.roc_curve(true, positive)
            figures["roc.png"] = plots.curve_figure(
                fpr, tpr, "false positive rate", "true positive rate", f"ROC (AUC {auc:.3f})", diagonal=True
            )
            recall, precision, ap = reports.precision_recall_curve(true, positive)
            figures["precision_recall.png"] = plots.curve_figure(
                recall, precision, "recall", "precision", f"Precision-recall (AP {ap:.3f})"
            )
        return figures

    # TensorBoard.

    def epoch_summaries(self, sample, predictions):
        if self.mode == "multilabel":
            titles = [
                f"true {true} | pred {columns['predicted_labels'] or '(none)'}"
                for true, columns in zip(sample.raw_targets, self.prediction_columns(predictions))
            ]
            return EpochSummaries({}, {}, titles)
        chosen, confidence = self._predicted_index(predictions)
        true = np.asarray(sample.targets).reshape(-1).astype(int)
        matrix = reports.confusion_matrix(true, chosen, len(self.labels))
        titles = []
        for raw, index, probability in zip(sample.raw_targets, chosen, confidence):
            guess = self.labels[index]
            titles.append(f"{'✓' if guess == raw else '✗'} true {raw} | pred {guess} ({probability:.2f})")
        return EpochSummaries(
            images={"confusion_matrix": plots.confusion_matrix_figure(matrix, self.labels)},
            tables={"worst_misclassified": self._worst_table(sample, true, chosen, confidence)},
            titles=titles,
        )

    def _worst_table(self, sample, true, chosen, confidence, count=10):
        """The most confident mistakes, as a Markdown table."""
        wrong = np.flatnonzero(chosen != true)
        worst = wrong[np.argsort(-confidence[wrong])][:count]
        lines = ["| row | true | predicted | confidence |", "|---|---|---|---|"]
        for index in worst:
            lines.append(
                f"| {sample.keys[index]} | {sample.raw_targets[index]} | "
                f"{self.labels[chosen[index]]} | {confidence[index]:.3f} |"
            )
        if not len(worst):
            lines.append("| (none misclassified) | | | |")
        return "\n".join(lines)

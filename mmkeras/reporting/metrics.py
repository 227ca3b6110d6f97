"""Metrics from arrays of targets and predictions (NumPy, no model needed)."""

import numpy as np


def confusion_matrix(true, predicted, num_classes):
    """Counts, rows = true class, columns = predicted class."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(true, int), np.asarray(predicted, int)), 1)
    return matrix


def per_class_scores(matrix, labels):
    """Precision, recall, F1 and support of each class from a confusion matrix."""
    scores = {}
    for index, label in enumerate(labels):
        hits = matrix[index, index]
        predicted = matrix[:, index].sum()
        actual = matrix[index].sum()
        precision = hits / predicted if predicted else 0.0
        recall = hits / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        scores[label] = {
            "precision": float(precision),
            "recall": float(recall),
            "f1": float(f1),
            "support": int(actual),
        }
    return scores


def roc_curve(true, scores):
    """False and true positive rates over every threshold, and the AUC."""
    order = np.argsort(-np.asarray(scores))
    true = np.asarray(true, float)[order]
    tps = np.concatenate([[0], np.cumsum(true)])
    fps = np.concatenate([[0], np.cumsum(1 - true)])
    tpr = tps / max(tps[-1], 1)
    fpr = fps / max(fps[-1], 1)
    return fpr, tpr, float(np.trapezoid(tpr, fpr))


def precision_recall_curve(true, scores):
    """Precision and recall over every threshold, and the average precision."""
    order = np.argsort(-np.asarray(scores))
    true = np.asarray(true, float)[order]
    tps = np.cumsum(true)
    precision = tps / np.arange(1, len(true) + 1)
    recall = tps / max(tps[-1], 1)
    average_precision = float(np.sum(precision * true) / max(true.sum(), 1))
    return recall, precision, average_precision


def classification_report(true, predicted, labels):
    """Accuracy, per-class scores, macro F1 and the confusion matrix.

    Args:
        true: array of class indices.
        predicted: array of predicted class indices.
        labels: list. The class names, by index.
    """
    true = np.asarray(true).astype(int)
    predicted = np.asarray(predicted).astype(int)
    matrix = confusion_matrix(true, predicted, len(labels))
    report = {
        "accuracy": float((true == predicted).mean()),
        "per_class": per_class_scores(matrix, labels),
        "confusion_matrix": matrix.tolist(),
        "labels": list(labels),
        "rows": int(len(predicted)),
    }
    report["macro_f1"] = float(np.mean([s["f1"] for s in report["per_class"].values()]))
    # The mean recall over the classes present: 1 / classes for a constant guess.
    recalls = [s["recall"] for s in report["per_class"].values() if s["support"]]
    report["balanced_accuracy"] = float(np.mean(recalls)) if recalls else 0.0
    return report


def multilabel_report(true, predicted, labels):
    """Micro precision, recall and F1, exact match and per-label scores.

    Args:
        true: multi-hot array `[rows, labels]`.
        predicted: multi-hot array of the predicted labels.
        labels: list. The label names, by column.
    """
    true = np.asarray(true).astype(int)
    predicted = np.asarray(predicted).astype(int)
    per_label = {}
    for index, label in enumerate(labels):
        matrix = confusion_matrix(true[:, index], predicted[:, index], 2)
        per_label[label] = per_class_scores(matrix, ["no", "yes"])["yes"]
    hits = (true & predicted).sum()
    precision = hits / max(predicted.sum(), 1)
    recall = hits / max(true.sum(), 1)
    return {
        "micro_precision": float(precision),
        "micro_recall": float(recall),
        "micro_f1": float(2 * precision * recall / (precision + recall)) if precision + recall else 0.0,
        "exact_match": float((true == predicted).all(axis=1).mean()),
        "per_label": per_label,
        "rows": int(len(true)),
    }


def regression_report(true, predicted):
    """Mean absolute and root mean squared error, in the target's units."""
    error = np.asarray(predicted).reshape(-1) - np.asarray(true).reshape(-1)
    return {
        "mae": float(np.abs(error).mean()),
        "rmse": float(np.sqrt((error**2).mean())),
        "rows": int(len(error)),
    }

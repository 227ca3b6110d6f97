"""Figures for TensorBoard and `mmkeras evaluate`, rendered to PNG bytes."""

import io

import numpy as np
from matplotlib.figure import Figure
from PIL import Image


def _subplots(*args, figsize, **kwargs):
    # Figures made without pyplot leave the user's backend alone (a notebook's
    # inline plots keep working) and are freed with the object. The tight
    # layout fits the labels in one drawing, where `bbox_inches="tight"`
    # draws each figure twice (a second a figure, every epoch).
    figure = Figure(figsize=figsize, layout="tight")
    return figure, figure.subplots(*args, **kwargs)


def to_png(figure):
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def confusion_matrix_figure(matrix, labels, title="Confusion matrix"):
    matrix = np.asarray(matrix)
    size = max(4, 0.5 * len(labels) + 2)
    figure, axis = _subplots(figsize=(size, size))
    normalised = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    axis.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    axis.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axis.set_yticks(range(len(labels)), labels)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(title)
    if len(labels) <= 20:
        for (row, column), count in np.ndenumerate(matrix):
            color = "white" if normalised[row, column] > 0.5 else "black"
            axis.text(column, row, str(count), ha="center", va="center", color=color, fontsize=8)
    return to_png(figure)


def examples_figure(pictures, titles, captions=None, columns=4):
    """A grid of images or spectrograms, each titled (true vs predicted)."""
    count = len(pictures)
    rows = int(np.ceil(count / columns))
    figure, axes = _subplots(rows, columns, figsize=(3 * columns, 3.2 * rows), squeeze=False)
    for index, axis in enumerate(axes.flat):
        axis.axis("off")
        if index >= count:
            continue
        picture = np.asarray(pictures[index])
        if picture.ndim == 3 and picture.shape[-1] == 1:
            picture = picture[..., 0]
        if picture.ndim == 2 and picture.shape[0] > picture.shape[1]:
            picture = picture.T  # spectrogram: time along x
        low, high = float(picture.min()), float(picture.max())
        shown = (picture - low) / (high - low) if high > low else picture * 0
        axis.imshow(shown, cmap="magma" if picture.ndim == 2 else None, aspect="auto")
        axis.set_title(titles[index], fontsize=9, color="green" if "✓" in titles[index] else "red")
        if captions:
            axis.text(
                0.5, -0.08, captions[index][:40], transform=axis.transAxes, ha="center", va="top", fontsize=8
            )
    return to_png(figure)


def curve_figure(x, y, xlabel, ylabel, title, diagonal=False):
    figure, axis = _subplots(figsize=(4.5, 4.5))
    axis.plot(x, y)
    if diagonal:
        axis.plot([0, 1], [0, 1], linestyle="--", color="grey")
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    return to_png(figure)


def training_curves_figure(history, metric, loss="loss"):
    """Loss and `metric` per epoch, training beside validation, from a run's history.

    Args:
        history: dict. Column name (`loss`, `val_loss`, `accuracy`, ...) to
            its values per epoch, as `history.csv` holds them.
        metric: str. The metric to plot beside the loss.
        loss: str. The loss column to plot (`fused_loss` for a model whose
            `loss` also holds its unimodal heads').
    """
    figure, axes = _subplots(1, 2, figsize=(9, 3.5))
    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    for axis, name in zip(axes, (loss, metric)):
        for prefix, label in (("", "training"), ("val_", "validation")):
            if history.get(prefix + name):
                axis.plot(epochs, history[prefix + name], marker="o", label=label)
        axis.set_xlabel("epoch")
        axis.set_title(name)
        axis.legend()
    return to_png(figure)


def head_curves_figure(history, heads):
    """Each head's loss per epoch (training dashed, validation solid) and its
    overfitting-to-generalisation ratio: which modality learns, which memorises.

    Args:
        history: dict. `history.csv`'s columns, as for `training_curves_figure`.
        heads: list of str. Head names (`fused` and each feature).
    """
    figure, axes = _subplots(1, 2, figsize=(10, 3.8))
    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    for index, head in enumerate(heads):
        color = f"C{index}"
        axes[0].plot(epochs, history.get(f"val_{head}_loss", []), marker="o", color=color, label=head)
        axes[0].plot(epochs, history.get(f"{head}_loss", []), linestyle="--", color=color)
        axes[1].plot(epochs, history.get(f"{head}_ogr", []), marker="o", color=color, label=head)
    axes[0].set_title("loss per head (validation solid, training dashed)")
    axes[1].set_title("overfitting-to-generalisation ratio (lower is better)")
    for axis in axes:
        axis.set_xlabel("epoch")
        axis.legend()
    return to_png(figure)


def scatter_figure(true, predicted, title="Predicted vs true"):
    figure, axis = _subplots(figsize=(4.5, 4.5))
    axis.scatter(true, predicted, s=6, alpha=0.6)
    low, high = float(np.min(true)), float(np.max(true))
    axis.plot([low, high], [low, high], linestyle="--", color="grey")
    axis.set_xlabel("true")
    axis.set_ylabel("predicted")
    axis.set_title(title)
    return to_png(figure)


def bar_figure(values, title, ylabel):
    """Bars for a {name: value} mapping (per-class F1, modality ablation)."""
    figure, axis = _subplots(figsize=(max(4, 0.6 * len(values) + 2), 3.5))
    names = list(values)
    axis.bar(range(len(names)), [values[n] for n in names], color="steelblue")
    axis.set_xticks(range(len(names)), names, rotation=45, ha="right")
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    return to_png(figure)


def sprite_image(pictures, size=32):
    """Thumbnails tiled in a square, as TensorBoard's projector expects."""
    count = len(pictures)
    side = int(np.ceil(np.sqrt(count)))
    sheet = np.ones((side * size, side * size, 3), dtype=np.uint8) * 255
    for index, picture in enumerate(pictures):
        picture = np.asarray(picture, dtype=np.float32)
        if picture.ndim == 2:
            picture = picture[..., None]
        low, high = picture.min(), picture.max()
        picture = (picture - low) / (high - low) if high > low else picture * 0
        picture = np.repeat(picture, 3, axis=-1) if picture.shape[-1] == 1 else picture[..., :3]
        rows = np.linspace(0, picture.shape[0] - 1, size).astype(int)
        columns = np.linspace(0, picture.shape[1] - 1, size).astype(int)
        thumbnail = (picture[rows][:, columns] * 255).astype(np.uint8)
        r, c = divmod(index, side)
        sheet[r * size : (r + 1) * size, c * size : (c + 1) * size] = thumbnail
    buffer = io.BytesIO()
    Image.fromarray(sheet).save(buffer, "PNG")
    return buffer.getvalue()

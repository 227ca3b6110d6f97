"""Figures for TensorBoard and `mmkeras evaluate`, rendered to PNG bytes."""

import io

import matplotlib
import numpy as np
from matplotlib import font_manager
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont

# The example grid: each picture's side and the height of a line of text, in pixels.
EXAMPLE_SIZE = 200
EXAMPLE_LINE = 18
# What fits across a cell in the title font; longer titles end in an ellipsis.
TITLE_CHARACTERS = 44


def _subplots(*args, figsize, **kwargs):
    # Figures made without pyplot leave the user's backend alone (a notebook's
    # inline plots keep working) and are freed with the object. The tight
    # layout fits the labels in a pass that renders nothing, where
    # `bbox_inches="tight"` renders each figure twice (a second a figure).
    figure = Figure(figsize=figsize, layout="tight")
    return figure, figure.subplots(*args, **kwargs)


def to_png(figure):
    buffer = io.BytesIO()
    # The fastest zlib level: a figure a few percent larger, drawn every epoch.
    figure.savefig(buffer, format="png", dpi=100, pil_kwargs={"compress_level": 1})
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
    """A grid of images or spectrograms, each titled (true vs predicted, green
    when marked ✓, red when marked ✗; a generated caption) and captioned.
    Drawn with PIL, not matplotlib: TensorBoard gets one every epoch, and
    matplotlib took about two seconds a grid."""
    count = len(pictures)
    rows = int(np.ceil(count / columns))
    title_font, caption_font = _font(13), _font(11)
    cell_width, cell_height = EXAMPLE_SIZE + 100, EXAMPLE_SIZE + 2 * EXAMPLE_LINE + 12
    sheet = Image.new("RGB", (columns * cell_width, rows * cell_height), "white")
    draw = ImageDraw.Draw(sheet)
    for index in range(count):
        picture = np.asarray(pictures[index], dtype=np.float32)
        if picture.ndim == 3 and picture.shape[-1] == 1:
            picture = picture[..., 0]
        if picture.ndim == 2 and picture.shape[0] > picture.shape[1]:
            picture = picture.T  # spectrogram: time along x
        thumbnail = Image.fromarray(_to_rgb(picture, colormap="magma")).resize(
            (EXAMPLE_SIZE, EXAMPLE_SIZE), Image.Resampling.NEAREST
        )
        row, column = divmod(index, columns)
        left, top = column * cell_width, row * cell_height
        centre = left + cell_width // 2
        colour = "green" if "✓" in titles[index] else "red" if "✗" in titles[index] else "black"
        title = (
            titles[index]
            if len(titles[index]) <= TITLE_CHARACTERS
            else titles[index][: TITLE_CHARACTERS - 1] + "…"
        )
        draw.text((centre, top + 4), title, fill=colour, font=title_font, anchor="mt")
        sheet.paste(thumbnail, (centre - EXAMPLE_SIZE // 2, top + EXAMPLE_LINE + 4))
        if captions:
            below = top + EXAMPLE_LINE + EXAMPLE_SIZE + 8
            draw.text((centre, below), captions[index][:40], fill="black", font=caption_font, anchor="mt")
    return _png(sheet)


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
        rgb = _to_rgb(picture[..., 0] if picture.ndim == 3 and picture.shape[-1] == 1 else picture)
        rows = np.linspace(0, rgb.shape[0] - 1, size).astype(int)
        columns = np.linspace(0, rgb.shape[1] - 1, size).astype(int)
        r, c = divmod(index, side)
        sheet[r * size : (r + 1) * size, c * size : (c + 1) * size] = rgb[rows][:, columns]
    return _png(Image.fromarray(sheet))


def _to_rgb(picture, colormap=None):
    """A picture (`[h, w]` or `[h, w, channels]`) stretched to 0-255 RGB; a
    one-channel one is grey, or in `colormap`'s colours."""
    low, high = float(picture.min()), float(picture.max())
    shown = (picture - low) / (high - low) if high > low else picture * 0
    if shown.ndim == 2:
        if colormap is None:
            shown = np.repeat(shown[..., None], 3, axis=-1)
        else:
            shown = matplotlib.colormaps[colormap](shown)[..., :3]
    return (shown[..., :3] * 255).astype(np.uint8)


def _font(size):
    # matplotlib's own DejaVu Sans: always installed with it, and it has ✓ and ✗.
    return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)


def _png(image):
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()

"""Pictures of one row's attributions, and an HTML page of the texts' highlighted words.

Red marks what raised the explained output, blue what lowered it; the
colour's strength is the attribution against the largest one in its panel.
"""

import html

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mmkeras.reporting.plots import to_png

COLORMAP = "RdBu_r"
# Inches of figure height per kind of panel.
HEIGHTS = {"text": 1.0, "image": 3.2, "audio": 2.8, "record": 2.4, "modalities": 2.4}


def _shades(scores):
    """RGBA colours for signed scores: white at 0, red up, blue down."""
    scores = np.asarray(scores, np.float64)
    limit = max(float(np.abs(scores).max(initial=0)), 1e-12)
    return matplotlib.colormaps[COLORMAP](0.5 + 0.5 * np.clip(scores / limit, -1, 1))


def _signed_map(axis, scores, title, **kwargs):
    limit = max(float(np.abs(scores).max()), 1e-12)
    shown = axis.imshow(scores, cmap=COLORMAP, vmin=-limit, vmax=limit, **kwargs)
    axis.figure.colorbar(shown, ax=axis, fraction=0.046, pad=0.04)
    axis.set_title(title, fontsize=9)


def _text_panel(axis, part):
    """The tokens in reading order, each on its attribution's colour, wrapped to the panel."""
    axis.set_axis_off()
    axis.set_title(f"{part['name']} (text): words", fontsize=9, loc="left")
    renderer = axis.figure.canvas.get_renderer()
    to_axis = axis.transAxes.inverted()
    x, y, line_height = 0.0, 0.9, 0.3
    scores = np.asarray(part["scores"])
    strong = np.abs(scores) > 0.6 * max(float(np.abs(scores).max(initial=0)), 1e-12)
    for token, color, dark in zip(part["tokens"], _shades(scores), strong):
        for _ in range(2):  # a token past the right edge starts the next line
            drawn = axis.text(
                x,
                y,
                token,
                transform=axis.transAxes,
                va="top",
                fontsize=11,
                color="white" if dark else "black",
                bbox={"boxstyle": "round,pad=0.15", "facecolor": color, "edgecolor": "none"},
            )
            right = drawn.get_window_extent(renderer).transformed(to_axis).x1
            if right <= 1.0 or x == 0.0:
                break
            drawn.remove()
            x, y = 0.0, y - line_height
        x = right + 0.012


def _picture_panels(axes, part):
    picture = part["picture"]
    grey = picture.shape[-1] == 1
    axes[0].imshow(picture[..., 0] if grey else picture, cmap="gray" if grey else None)
    axes[0].set_title(f"{part['name']} (image)", fontsize=9)
    _signed_map(axes[1], part["scores"], "pixel attributions")


def _spectrogram_panels(axes, part):
    # Time runs left to right, low frequencies at the bottom.
    axes[0].imshow(part["spectrogram"].T, origin="lower", aspect="auto", cmap="magma")
    axes[0].set_title(f"{part['name']} (audio): log-mel spectrogram", fontsize=9)
    axes[0].set_xlabel("frame")
    axes[0].set_ylabel("mel bin")
    _signed_map(axes[1], part["scores"].T, "time-frequency attributions", origin="lower", aspect="auto")


def _record_panel(axis, part):
    scores = np.asarray(part["scores"])
    positions = np.arange(len(scores))
    axis.barh(positions, scores, color=_shades(scores))
    axis.set_yticks(positions, part["columns"], fontsize=8)
    axis.invert_yaxis()
    axis.axvline(0, color="grey", linewidth=0.8)
    axis.set_title(f"{part['name']} (record): one bar per column", fontsize=9)


def _modalities_panel(axis, totals, gates):
    names = list(totals)
    values = np.array([totals[n] for n in names])
    positions = np.arange(len(names))
    width = 0.4 if gates else 0.8
    axis.bar(positions, values, width, color=_shades(values), edgecolor="grey", label="attribution")
    magnitude = np.abs(values).sum()
    for position, value in zip(positions, values):
        share = abs(value) / magnitude if magnitude else 0.0
        axis.annotate(f"{share:.0%}", (position, value), ha="center", va="bottom", fontsize=8)
    axis.axhline(0, color="grey", linewidth=0.8)
    axis.set_xticks(positions, names)
    axis.set_ylabel("attribution")
    axis.set_title("each modality's part of the output (share of all attribution)", fontsize=9)
    if gates:
        twin = axis.twinx()
        twin.bar(positions + width, [gates[n] for n in names], width, color="darkgrey", label="gate")
        twin.set_ylim(0, 1)
        twin.set_ylabel("mean gate")


def explanation_figure(title, parts, totals, gates=None):
    """One row's attributions as PNG bytes.

    Args:
        title: str. What is explained (the row, the output, its value).
        parts: list of dict. One per feature, with `name`, `kind` and the
            panel's data: text `tokens` and `scores`; image `picture`
            (`[h, w, c]` in 0..1) and `scores` (`[h, w]`); audio
            `spectrogram` and `scores` (`[frames, mel bins]`); record
            `columns` (labels) and `scores`.
        totals: dict. Feature name to its summed attribution.
        gates: dict or None. Feature name to its mean gate (gated fusion).
    """
    kinds = [part["kind"] for part in parts] + ["modalities"]
    figure = Figure(figsize=(9, sum(HEIGHTS[kind] for kind in kinds) + 0.6), layout="tight")
    FigureCanvasAgg(figure)
    grid = figure.add_gridspec(len(kinds), 2, height_ratios=[HEIGHTS[kind] for kind in kinds])
    for row, part in enumerate(parts):
        if part["kind"] in ("image", "audio"):
            axes = [figure.add_subplot(grid[row, 0]), figure.add_subplot(grid[row, 1])]
            (_picture_panels if part["kind"] == "image" else _spectrogram_panels)(axes, part)
        else:
            (_text_panel if part["kind"] == "text" else _record_panel)(figure.add_subplot(grid[row, :]), part)
    _modalities_panel(figure.add_subplot(grid[len(parts), :]), totals, gates)
    figure.suptitle(title, fontsize=10)
    return to_png(figure)


def _highlighted_html(tokens, scores):
    spans = []
    for token, score, (red, green, blue, _) in zip(tokens, scores, _shades(scores)):
        color = f"rgb({red * 255:.0f}, {green * 255:.0f}, {blue * 255:.0f})"
        spans.append(f'<span title="{score:+.4f}" style="background: {color}">{html.escape(token)}</span>')
    return " ".join(spans)


def explanations_html(records):
    """A page with each row's texts as highlighted words, its modality shares and its figure.

    Args:
        records: list of dict. Each row's record in attributions.json: `row`,
            `explained`, `value`, `modalities`, `text` and `figure`.
    """
    body = []
    for record in records:
        body.append(
            f"<h2>{html.escape(record['row'])}: {html.escape(record['explained'])} {record['value']:.3f}</h2>"
        )
        shares = ", ".join(f"{html.escape(n)} {m['share']:.0%}" for n, m in record["modalities"].items())
        body.append(f"<p>Share of the attribution: {shares}</p>")
        for name, pairs in record["text"].items():
            tokens, scores = zip(*pairs) if pairs else ((), ())
            body.append(f"<p><b>{html.escape(name)}</b>: {_highlighted_html(tokens, scores)}</p>")
        body.append(f'<img src="{html.escape(record["figure"])}" style="max-width: 900px">')
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>mmkeras explain</title>'
        "<style>body { font-family: sans-serif; margin: 2em; } span { padding: 1px 3px; "
        "border-radius: 3px; line-height: 1.8; }</style></head><body>\n"
        "<h1>Integrated gradients</h1>\n<p>Red words raised the explained output, blue ones lowered it; "
        "hover over a word for its attribution.</p>\n" + "\n".join(body) + "\n</body></html>\n"
    )

"""Figures the chapters share: heatmaps (attention weights, positional encodings) and line plots
(loss curves, learning-rate schedules). Each returns its Axes and never calls plt.show().

`sharp_figures()` makes a notebook show its figures as PNGs drawn at twice their size, so they
stay sharp on high-DPI screens; `figure_png` is the formatter it installs."""

from __future__ import annotations

import io
import struct
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.text import Text

# PNG text keys the browser check reads (tests/browser/test_pages.py): how many PNG pixels make
# one CSS pixel, and the figure's smallest text in CSS pixels when shown at its own size.
ZOOM_KEY = "Book zoom"
SMALLEST_TEXT_KEY = "Book smallest text px"


def _to_numpy(values) -> np.ndarray:
    """A tensor (any device or dtype) or array-like as a NumPy array."""
    if isinstance(values, torch.Tensor):
        return values.detach().float().cpu().numpy()
    return np.asarray(values)


def heatmap(
    matrix,
    ax: Axes | None = None,
    xlabels: Sequence[str] | None = None,
    ylabels: Sequence[str] | None = None,
    title: str | None = None,
    cmap: str = "viridis",
    colorbar: bool = True,
    xlabel: str | None = None,
    ylabel: str | None = None,
) -> Axes:
    """Draw a 2-D matrix (rows down, columns across), e.g. attention weights (query, key)."""
    values = _to_numpy(matrix)
    if values.ndim != 2:
        raise ValueError(
            f"heatmap draws a 2-D matrix, got shape {values.shape}; select one map, e.g. w[0, head]"
        )
    if ax is None:
        _, ax = plt.subplots()
    image = ax.imshow(values, cmap=cmap, aspect="auto", interpolation="nearest")
    if xlabels is not None:
        ax.set_xticks(range(len(xlabels)), labels=xlabels, rotation=90)
    if ylabels is not None:
        ax.set_yticks(range(len(ylabels)), labels=ylabels)
    if colorbar:
        ax.figure.colorbar(image, ax=ax)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    return ax


def line_plot(
    xs,
    ys_dict: Mapping[str, Sequence[float]],
    ax: Axes | None = None,
    xlabel: str | None = None,
    ylabel: str | None = None,
    title: str | None = None,
    logy: bool = False,
) -> Axes:
    """One labelled line per entry of ys_dict against xs (a shared sequence, or a dict by name)."""
    if ax is None:
        _, ax = plt.subplots()
    for name, ys in ys_dict.items():
        x = xs[name] if isinstance(xs, Mapping) else xs
        ax.plot(_to_numpy(x), _to_numpy(ys), label=name)
    if logy:
        ax.set_yscale("log")
    ax.legend()
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    return ax


def smallest_text_pt(fig: Figure) -> float | None:
    """The font size in points of the smallest visible, non-empty text of `fig` (None if none)."""
    sizes = [
        t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()
    ]
    return min(sizes, default=None)


def figure_png(fig: Figure, zoom: int = 2) -> tuple[bytes, dict]:
    """`fig` as a PNG drawn at `zoom` times its size, and the display metadata that shows it at 1x.

    The PNG's text chunks record `zoom` and the smallest text in CSS pixels at 1x (a point is
    fig.dpi / 72 pixels), so a page that shrinks the image can be checked for unreadable text.
    """
    smallest = smallest_text_pt(fig)
    smallest_px = "none" if smallest is None else f"{smallest * fig.dpi / 72:.2f}"
    canvas = io.BytesIO()
    fig.canvas.print_figure(
        canvas,
        format="png",
        dpi=zoom * fig.dpi,
        bbox_inches="tight",
        metadata={ZOOM_KEY: str(zoom), SMALLEST_TEXT_KEY: smallest_px},
    )
    png = canvas.getvalue()
    width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk opens every PNG
    return png, {"width": width // zoom, "height": height // zoom}


def sharp_figures() -> None:
    """In a Jupyter kernel, show every matplotlib figure through `figure_png` (else do nothing)."""
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None:
        return
    # The inline backend registers its own PNG formatter when it loads, at the first figure:
    # load it now, so that it cannot replace this one later.
    plt.close(plt.figure())
    shell.display_formatter.formatters["image/png"].for_type(Figure, figure_png)

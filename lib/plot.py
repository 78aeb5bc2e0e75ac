"""Figures the chapters share: heatmaps (attention weights, positional encodings) and line plots
(loss curves, learning-rate schedules). Each returns its Axes and never calls plt.show()."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes


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

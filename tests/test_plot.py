import io

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.axes import Axes

from lib.plot import heatmap, line_plot


@pytest.fixture(autouse=True)
def _offscreen():
    matplotlib.use("Agg")  # draw off-screen; lib.plot itself never picks a backend
    yield
    plt.close("all")


def test_heatmap_of_attention_weights():
    weights = torch.softmax(torch.randn(4, 5), dim=-1).requires_grad_()
    ax = heatmap(weights, xlabels=list("abcde"), ylabels=list("wxyz"), title="attention")
    assert isinstance(ax, Axes)
    assert ax.get_title() == "attention"
    assert [t.get_text() for t in ax.get_xticklabels()] == list("abcde")
    np.testing.assert_allclose(ax.images[0].get_array(), weights.detach().numpy())
    assert len(ax.figure.axes) == 2  # the map and its colour bar


def test_heatmap_draws_into_a_given_axes_without_colorbar():
    fig, (left, right) = plt.subplots(1, 2)
    assert heatmap(np.eye(3), ax=right, colorbar=False, cmap="RdBu") is right
    assert len(fig.axes) == 2 and not left.images
    with pytest.raises(ValueError, match="2-D matrix, got shape"):
        heatmap(torch.zeros(2, 3, 4))


def test_line_plot_of_losses():
    losses = {"train": [3.0, 2.0, 1.5], "val": torch.tensor([3.1, 2.2, 1.9])}
    ax = line_plot([0, 10, 20], losses, logy=True)
    assert isinstance(ax, Axes)
    assert [line.get_label() for line in ax.lines] == ["train", "val"]
    assert ax.get_yscale() == "log"
    ax = line_plot({"lr": [0, 1, 2, 3]}, {"lr": [0.0, 1.0, 0.5, 0.1]}, xlabel="step")
    assert ax.get_xlabel() == "step"
    ax.figure.canvas.draw()  # renders without error


def test_figure_png_is_drawn_at_twice_its_display_size_and_records_its_smallest_text():
    from PIL import Image

    from lib.plot import SMALLEST_TEXT_KEY, ZOOM_KEY, figure_png

    fig, ax = plt.subplots(figsize=(4, 3), dpi=100)
    ax.set_title("title", fontsize=14)
    ax.set_xlabel("x", fontsize=7)
    png, metadata = figure_png(fig)
    image = Image.open(io.BytesIO(png))
    assert image.size == (2 * metadata["width"], 2 * metadata["height"])
    assert 300 < metadata["width"] <= 400  # 4 inches at 100 dpi, trimmed to the drawn area
    assert image.text[ZOOM_KEY] == "2"
    assert float(image.text[SMALLEST_TEXT_KEY]) == pytest.approx(7 * 100 / 72, abs=0.01)

"""Run plots read right: titles say what is shown and fit the figure, epochs are whole numbers, regression plots name
the target and give R² (issue 13, part 4)."""

from __future__ import annotations

import numpy as np
import torch

from deepkit.viz.cnn_plots import image_grid_figure
from deepkit.viz.plots import _plt, curve_figures, pred_vs_true_figure

HISTORY = [
    {"epoch": e, "step": 10 * e, "train_loss": 3 - e * 0.5, "val_loss": 3.1 - e * 0.4, "val_perplexity": 20 - e}
    for e in (1, 2, 3)
]


def test_curves_say_which_splits_they_show_and_tick_whole_epochs():
    figures = curve_figures(HISTORY)
    try:
        assert set(figures) == {"loss", "perplexity"}
        assert figures["loss"].axes[0].get_title() == "loss: training vs validation"
        ax = figures["perplexity"].axes[0]
        assert ax.get_title() == "perplexity (validation)" and [t.get_text() for t in ax.get_legend().texts] == [
            "validation"
        ]
        for fig in figures.values():
            ticks = [t for t in fig.axes[0].get_xticks() if 1 <= t <= 3]
            assert ticks and all(float(t).is_integer() for t in ticks), ticks
    finally:
        for fig in figures.values():
            _plt().close(fig)


def test_a_long_grid_title_stays_inside_the_figure():
    title = "most confident mistakes on test: 5 of 360 wrong " * 2
    for n in (1, 3, 16):
        fig = image_grid_figure(torch.rand(n, 1, 8, 8), [f"true {i} → {i + 1} (0.99)" for i in range(n)], title)
        try:
            fig.canvas.draw()
            box = fig._suptitle.get_window_extent()
            assert box.x0 >= 0 and box.x1 <= fig.bbox.x1 and box.y1 <= fig.bbox.y1, (n, box, fig.bbox)
            axes_top = max(ax.get_window_extent().y1 for ax in fig.axes)
            assert axes_top <= box.y0 + 1, "the images overlap the title"
        finally:
            _plt().close(fig)


def test_pred_vs_true_names_the_target_and_gives_r2():
    true = np.linspace(0, 10, 50)
    fig = pred_vs_true_figure(true + 0.1, true, "predicted vs true (test)", "progression", 0.987)
    try:
        ax = fig.axes[0]
        assert ax.get_xlabel() == "true progression" and ax.get_ylabel() == "predicted progression"
        assert ax.get_title() == "predicted vs true (test), R² = 0.987"
    finally:
        _plt().close(fig)

"""PNG plots of a run. matplotlib is imported lazily with the Agg backend (no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deepkit.train.callbacks import Callback, Trainer

_SKIP = {"epoch", "step", "lr", "samples_per_s", "time", "peak_rss_mb", "peak_gpu_mb"}
MAX_CONFUSION_CLASSES = 100  # more classes: no confusion-matrix plot (CIFAR-100 still gets one)
MAX_FIGURE_INCHES = 20.0  # at 100 dpi: no plot wider or taller than 2,000 pixels


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, dpi: int = 100) -> Path:
    """Lay out ``fig``, write it to ``path`` (its folder made), close it; returns the path."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    _plt().close(fig)
    return path


def curve_figures(history: list[dict[str, float]]) -> dict[str, object]:
    """One figure per logged quantity (loss, accuracy, perplexity, ...): its training and validation values per
    epoch, whichever exist. Epoch ticks are whole numbers."""
    from matplotlib.ticker import MaxNLocator

    plt = _plt()
    epochs = [int(r["epoch"]) for r in history]
    names = []
    for key in history[0]:
        if key in _SKIP or key.startswith("lr_"):  # per-optimizer lrs (GAN) have no train/val pair
            continue
        base = key.split("_", 1)[1] if key.startswith(("train_", "val_")) else key
        if base not in names:
            names.append(base)
    figures = {}
    for name in names:
        fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
        shown = []
        for split, label, style in (("train", "training", "-o"), ("val", "validation", "-s")):
            key = f"{split}_{name}"
            if key in history[0]:
                ax.plot(epochs, [r.get(key, np.nan) for r in history], style, ms=3, label=label)
                shown.append(label)
        if not shown:  # a quantity logged without a split prefix
            ax.plot(epochs, [r.get(name, np.nan) for r in history], "-o", ms=3, label=name)
        title = (
            f"{name}: training vs validation" if len(shown) == 2 else f"{name} ({shown[0] if shown else 'per epoch'})"
        )
        ax.set(xlabel="epoch", ylabel=name, title=title)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        figures[name] = fig
    return figures


def plot_curves(history: list[dict[str, float]], out_dir: str | Path) -> list[Path]:
    """One PNG per quantity (loss.png, accuracy.png, ...), see :func:`curve_figures`. Returns the files written."""
    if not history:
        return []
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, fig in curve_figures(history).items():
        path = out_dir / f"{name}.png"
        fig.savefig(path)
        _plt().close(fig)
        written.append(path)
    return written


def plot_confusion_matrix(cm: np.ndarray, class_names: list[str], path: str | Path, title: str = "") -> Path:
    """Counts with row-normalized colour (true class per row, predicted per column); at most 2,000×2,000 pixels."""
    plt = _plt()
    cm = np.asarray(cm)
    k = len(cm)
    size = min(max(4.0, 0.45 * k + 2), MAX_FIGURE_INCHES)
    fig, ax = plt.subplots(figsize=(size, size), dpi=100)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    if k <= 30:
        for i in range(k):
            for j in range(k):
                ax.text(
                    j,
                    i,
                    int(cm[i, j]),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black",
                )
        ax.set_xticks(range(k), class_names, rotation=90 if k > 10 else 0)
        ax.set_yticks(range(k), class_names)
    ax.set(xlabel="predicted", ylabel="true", title=title or "confusion matrix")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def pred_vs_true_figure(
    pred: np.ndarray, true: np.ndarray, title: str = "", target: str | None = None, r2: float | None = None
):
    """Scatter of predicted against true values of a regression, with the identity line, the target's name on the
    axes and R² in the title."""
    plt = _plt()
    pred, true = np.asarray(pred).reshape(-1), np.asarray(true).reshape(-1)
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    ax.scatter(true, pred, s=10, alpha=0.6)
    lo, hi = float(min(true.min(), pred.min())), float(max(true.max(), pred.max()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="perfect")
    what = target or "target"
    title = title or "predicted vs true"
    if r2 is not None:
        title += f", R² = {r2:.3f}"
    ax.set(xlabel=f"true {what}", ylabel=f"predicted {what}", title=title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_pred_vs_true(
    pred: np.ndarray,
    true: np.ndarray,
    path: str | Path,
    title: str = "",
    target: str | None = None,
    r2: float | None = None,
) -> Path:
    fig = pred_vs_true_figure(pred, true, title, target, r2)
    fig.savefig(path)
    _plt().close(fig)
    return Path(path)


class CurvePlots(Callback):
    """Writes ``RUN_DIR/plots/*.png`` curves when ``fit`` ends."""

    def __init__(self, run_dir: str | Path):
        self.dir = Path(run_dir) / "plots"

    def on_fit_end(self, trainer: Trainer) -> None:
        plot_curves(trainer.state.history, self.dir)

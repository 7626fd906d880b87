"""Plots for sequence models: forecast vs truth, gradient norm per time step."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deepkit.viz.plots import _plt


def plot_forecast(
    labels: list[str], values: np.ndarray, test_start: int, forecasts: dict[str, np.ndarray], path: str | Path
) -> Path:
    """The series with the held-out period shaded and each forecast drawn over it."""
    plt = _plt()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(9, 4))
    t = np.arange(len(values))
    ax.plot(t, values, color="black", lw=1.2, label="truth")
    ax.axvspan(test_start - 0.5, len(values) - 0.5, color="0.92", label="test period")
    for name, pred in forecasts.items():
        ax.plot(t[test_start:], pred, lw=1.5, label=name.replace("_", " "))
    step = max(1, len(values) // 10)
    ax.set_xticks(t[::step], [labels[i] for i in t[::step]], rotation=30, fontsize=8)
    ax.legend(fontsize=8)
    ax.set_title("forecast vs truth")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_gradient_norms(norms: dict[str, np.ndarray], path: str | Path, title: str = "") -> Path:
    """‖∂L/∂x_t‖ against the time step t, one line per model, log scale (vanishing gradients decay to 0)."""
    plt = _plt()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, g in norms.items():
        ax.semilogy(np.arange(len(g)), np.maximum(g, 1e-30), label=name)
    ax.set_xlabel("time step t")
    ax.set_ylabel("gradient norm ‖∂L/∂x_t‖ (log)")
    ax.set_title(title or "gradient norm vs time step")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

"""Plots of audio features: a column of log-mel spectrograms (time on x, mel band on y), one per clip."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deepkit.viz.plots import _plt


def plot_spectrograms(
    spectrograms: list[np.ndarray], titles: list[str], path: str | Path, hop_seconds: float, title: str = ""
) -> Path:
    """Save ``(bands, frames)`` arrays as stacked images (lowest band at the bottom), the x axis in seconds."""
    plt = _plt()
    n = len(spectrograms)
    fig, axes = plt.subplots(n, 1, figsize=(7, 1.6 * n + 0.6), squeeze=False)
    for ax, s, t in zip(axes[:, 0], spectrograms, titles, strict=True):
        s = np.asarray(s)
        ax.imshow(s, origin="lower", aspect="auto", cmap="magma", extent=(0, s.shape[1] * hop_seconds, 0, s.shape[0]))
        ax.set_title(t, fontsize=8)
        ax.set_ylabel("mel band", fontsize=7)
        ax.tick_params(labelsize=7)
    axes[-1, 0].set_xlabel("time (s)", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

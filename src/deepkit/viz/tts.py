"""Plots of speech synthesis: frame-to-phoneme alignments (attention weights), one panel per utterance."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deepkit.viz.plots import _plt


def plot_alignments(
    maps: list[tuple[np.ndarray, list[str]]], titles: list[str], path: str | Path, hop_seconds: float, title: str = ""
) -> Path:
    """Save ``(frames, phonemes)`` weight matrices with their phoneme names as stacked images: time on x, the
    phonemes (first at the bottom) on y."""
    plt = _plt()
    n = len(maps)
    fig, axes = plt.subplots(n, 1, figsize=(7, 1.9 * n + 0.6), squeeze=False)
    for ax, (weights, phonemes), t in zip(axes[:, 0], maps, titles, strict=True):
        w = np.asarray(weights).T
        ax.imshow(w, origin="lower", aspect="auto", cmap="viridis", vmin=0, vmax=1,
                  extent=(0, w.shape[1] * hop_seconds, -0.5, w.shape[0] - 0.5))  # fmt: skip
        ax.set_yticks(range(len(phonemes)), phonemes, fontsize=6)
        ax.set_title(t, fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
    axes[-1, 0].set_xlabel("time (s)", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

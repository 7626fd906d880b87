"""Plots of audio: a column of log-mel spectrograms (time on x, mel band on y), one per clip; a column of
frame-to-phoneme alignments (speech synthesis)."""

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
    return _finish(fig, axes, path, title)


def _finish(fig, axes, path: str | Path, title: str) -> Path:
    """A time axis label on the last panel, the title, and the figure saved at ``path``."""
    axes[-1, 0].set_xlabel("time (s)", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    _plt().close(fig)
    return path


def plot_alignments(
    maps: list[tuple[np.ndarray, list[str]]], titles: list[str], path: str | Path, hop_seconds: float, title: str = ""
) -> Path:
    """Save ``(frames, phonemes)`` weight matrices (speech synthesis: attention from frames to phonemes) with their
    phoneme names as stacked images: time on x, the phonemes (first at the bottom) on y."""
    plt = _plt()
    fig, axes = plt.subplots(len(maps), 1, figsize=(7, 1.9 * len(maps) + 0.6), squeeze=False)
    for ax, (weights, phonemes), t in zip(axes[:, 0], maps, titles, strict=True):
        w = np.asarray(weights).T
        ax.imshow(w, origin="lower", aspect="auto", cmap="viridis", vmin=0, vmax=1,
                  extent=(0, w.shape[1] * hop_seconds, -0.5, w.shape[0] - 0.5))  # fmt: skip
        ax.set_yticks(range(len(phonemes)), phonemes, fontsize=6)
        ax.set_title(t, fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
    return _finish(fig, axes, path, title)

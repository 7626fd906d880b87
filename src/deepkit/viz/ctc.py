"""CTC alignment plots: per clip, its log-mel features above the encoder's frame-wise posteriors (one line per
token that is ever the most likely one, the blank dashed), both on the same time axis."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deepkit.viz.plots import _plt, save_figure


def plot_ctc_alignments(
    features: list[np.ndarray], posteriors: list[np.ndarray], titles: list[str], tokens: list[str],
    path: str | Path, hop_seconds: float, frame_seconds: float,
) -> Path:  # fmt: skip
    """``features``: ``(bands, frames)`` arrays; ``posteriors``: ``(output frames, V)`` probabilities (column 0 the
    blank); the frame-wise argmax labels are written above the curves where they change."""
    plt = _plt()
    n = max(len(features), 1)
    fig, axes = plt.subplots(2 * n, 1, figsize=(8, 2.6 * n + 0.4), squeeze=False)
    for k, (f, p, title) in enumerate(zip(features, posteriors, titles, strict=True)):
        top, bottom = axes[2 * k, 0], axes[2 * k + 1, 0]
        span = max(f.shape[1] * hop_seconds, len(p) * frame_seconds)
        top.imshow(f, origin="lower", aspect="auto", cmap="magma", extent=(0, f.shape[1] * hop_seconds, 0, f.shape[0]))
        top.set_xlim(0, span)
        top.set_title(title, fontsize=7)
        top.set_ylabel("mel band", fontsize=7)
        t = (np.arange(len(p)) + 0.5) * frame_seconds
        best = p.argmax(1)
        for v in sorted(set(best.tolist()) | {0}):
            bottom.plot(t, p[:, v], lw=1, ls="--" if v == 0 else "-", label="blank" if v == 0 else tokens[v])
        prev = 0
        for i, v in enumerate(best.tolist()):
            if v != 0 and v != prev:
                bottom.text(t[i], 1.02, tokens[v], fontsize=7, ha="center")
            prev = v
        bottom.set_xlim(0, span)
        bottom.set_ylim(0, 1.12)
        bottom.set_ylabel("posterior", fontsize=7)
        bottom.legend(fontsize=5, ncol=6, loc="center right")
        for ax in (top, bottom):
            ax.tick_params(labelsize=6)
    axes[-1, 0].set_xlabel("time (s)", fontsize=8)
    return save_figure(fig, path)

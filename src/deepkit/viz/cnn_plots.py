"""Drawing what ``deepkit.viz.inside`` computes: filters, feature maps, Grad-CAM overlays, image grids."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import torch

from deepkit.viz.plots import _plt


def _grid(n: int, max_cols: int = 8) -> tuple[int, int]:
    cols = min(max_cols, n)
    return math.ceil(n / cols), cols


def _to_image(t: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [0, 1] -> (H, W) or (H, W, 3) for imshow."""
    t = t.detach().float().cpu().clamp(0, 1)
    return t[0].numpy() if t.shape[0] == 1 else t[:3].permute(1, 2, 0).numpy()


def plot_filters(weights: torch.Tensor, path: str | Path, title: str = "first-layer filters") -> Path:
    """One tile per output filter (O, I, k, k): RGB when I == 3, else the mean over input channels."""
    plt = _plt()
    n = min(len(weights), 64)
    rows, cols = _grid(n)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.1, rows * 1.1 + 0.4), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        w = weights[i]
        w = w if w.shape[0] == 3 else w.mean(0, keepdim=True)
        w = (w - w.min()) / (w.max() - w.min() + 1e-12)  # each filter scaled to its own range
        ax.imshow(_to_image(w), cmap="gray", interpolation="nearest")
    fig.suptitle(f"{title} ({len(weights)} filters, {weights.shape[-2]}×{weights.shape[-1]})")
    return _save(fig, path)


def plot_feature_maps(maps: dict[str, torch.Tensor], image: torch.Tensor, path: str | Path, k: int = 16) -> Path:
    """The input image, then up to ``k`` channels (the most active) of each feature map in ``maps``."""
    plt = _plt()
    fig, axes = plt.subplots(len(maps), k + 1, figsize=((k + 1) * 0.9, len(maps) * 1.2 + 0.4), squeeze=False)
    for row, (name, fmap) in zip(axes, maps.items(), strict=True):
        for ax in row:
            ax.axis("off")
        row[0].imshow(_to_image(image), cmap="gray")
        row[0].set_title("input", fontsize=7)
        top = fmap.flatten(1).abs().mean(1).argsort(descending=True)[:k]
        for ax, c in zip(row[1:], top.tolist(), strict=False):
            ax.imshow(fmap[c].float().cpu().numpy(), cmap="viridis")
            ax.set_title(f"ch {c}", fontsize=6)
        row[1].text(0, -0.35, name, transform=row[1].transAxes, fontsize=8)
    fig.suptitle("feature maps (most active channels)")
    return _save(fig, path)


def plot_cam(image: torch.Tensor, cam: torch.Tensor, path: str | Path, title: str) -> Path:
    """The image, the heat map, and the heat map over the image."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(7.5, 2.8))
    img = _to_image(image)
    for ax in axes:
        ax.axis("off")
    axes[0].imshow(img, cmap="gray")
    axes[0].set_title("input", fontsize=8)
    axes[1].imshow(cam.cpu().numpy(), cmap="jet", vmin=0, vmax=1)
    axes[1].set_title("Grad-CAM", fontsize=8)
    axes[2].imshow(img, cmap="gray")
    axes[2].imshow(cam.cpu().numpy(), cmap="jet", alpha=0.45, vmin=0, vmax=1)
    axes[2].set_title("overlay", fontsize=8)
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def image_grid_figure(images: torch.Tensor, captions: list[str], title: str):
    """Images (N, C, H, W) in [0, 1] with a caption each, under a title wrapped to the figure's width."""
    import textwrap

    plt = _plt()
    rows, cols = _grid(max(1, len(images)))
    width = max(cols * 1.4, 4.0)  # wide enough for a two-line title even over a single image
    title = textwrap.fill(title, width=int(width * 11))  # ~11 characters per inch at 9 pt
    lines = title.count("\n") + 1
    fig, axes = plt.subplots(rows, cols, figsize=(width, rows * 1.6 + 0.25 * lines + 0.2), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(images):
            ax.imshow(_to_image(images[i]), cmap="gray")
            ax.set_title(captions[i], fontsize=7)
    if len(images) == 0:
        axes[0, 0].text(0.5, 0.5, "no mistakes", ha="center")
    fig.suptitle(title, fontsize=9)
    top = 1 - (0.25 * lines + 0.15) / fig.get_figheight()
    with warnings.catch_warnings():  # wide grids cannot always be tightened; the layout is still readable
        warnings.simplefilter("ignore", UserWarning)
        fig.tight_layout(rect=(0, 0, 1, top))  # the title keeps its own band above the images
    return fig


def plot_image_grid(images: torch.Tensor, captions: list[str], path: str | Path, title: str) -> Path:
    """Images (N, C, H, W) in [0, 1] with a caption each (see :func:`image_grid_figure`)."""
    fig = image_grid_figure(images, captions, title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # wide grids cannot always be tightened; the layout is still readable
        warnings.simplefilter("ignore", UserWarning)
        fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path

"""Image grids (sample / reconstruction / interpolation) as PNG files, and the callback that writes them per epoch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from deepkit.train.callbacks import Callback


def make_grid(images: torch.Tensor, nrow: int = 8, pad: int = 2, scale: int = 1) -> np.ndarray:
    """(N, C, H, W) images in [0, 1] -> one uint8 array (rows·H, nrow·W[, 3]) with ``pad`` px of white between."""
    x = images.detach().float().cpu().clamp(0, 1)
    if scale > 1:
        x = x.repeat_interleave(scale, 2).repeat_interleave(scale, 3)
    n, c, h, w = x.shape
    rows = -(-n // nrow)
    grid = torch.ones(c, rows * (h + pad) + pad, nrow * (w + pad) + pad)
    for i in range(n):
        r, col = divmod(i, nrow)
        grid[:, pad + r * (h + pad) : pad + r * (h + pad) + h, pad + col * (w + pad) : pad + col * (w + pad) + w] = x[i]
    arr = (grid * 255).round().byte().permute(1, 2, 0).numpy()
    return arr[..., 0] if c == 1 else arr


def save_grid(images: torch.Tensor, path: str | Path, nrow: int = 8) -> Path:
    """Write a PNG grid of ``images`` (N, C, H, W) in [0, 1]; small images are enlarged to stay visible."""
    import io
    import os
    import tempfile

    from PIL import Image

    scale = max(1, 56 // images.shape[-1])
    buf = io.BytesIO()
    Image.fromarray(make_grid(images, nrow, scale=scale)).save(buf, format="PNG")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".png")  # atomic: temp file + rename
    with os.fdopen(fd, "wb") as f:
        f.write(buf.getvalue())
    os.replace(tmp, path)
    return path


class SampleGrids(Callback):
    """After each epoch, ``task.grids()`` -> ``plots/NAME.png`` (latest) and ``plots/NAME_epochEEE.png``."""

    def __init__(self, run_dir: str | Path, every: int = 1):
        self.dir = Path(run_dir) / "plots"
        self.every = max(1, every)

    def on_epoch_end(self, trainer, logs):
        epoch = int(logs["epoch"])
        if epoch % self.every:
            return
        for name, (images, nrow) in trainer.task.grids().items():
            save_grid(images, self.dir / f"{name}_epoch{epoch:03d}.png", nrow)
            save_grid(images, self.dir / f"{name}.png", nrow)

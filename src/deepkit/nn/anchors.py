"""Anchor boxes over feature-map grids (Faster R-CNN, RetinaNet), in torchvision's order and rounding."""

from __future__ import annotations

import torch
from torch import nn


def base_anchors(scales: tuple[float, ...], aspect_ratios: tuple[float, ...], dtype=torch.float32) -> torch.Tensor:
    """Zero-centred anchors ``(len(ratios) * len(scales), 4)``, ratio-major; aspect ratio = height / width; the
    corners are rounded to whole pixels (as torchvision's ``AnchorGenerator``)."""
    scales_t = torch.as_tensor(scales, dtype=dtype)
    ratios = torch.as_tensor(aspect_ratios, dtype=dtype)
    h_ratios = torch.sqrt(ratios)
    w_ratios = 1 / h_ratios
    ws = (w_ratios[:, None] * scales_t[None, :]).view(-1)
    hs = (h_ratios[:, None] * scales_t[None, :]).view(-1)
    return (torch.stack([-ws, -hs, ws, hs], dim=1) / 2).round()


class AnchorGenerator(nn.Module):
    """Anchors for every position of every feature map: one set of ``sizes[i]`` × ``aspect_ratios[i]`` per level.

    ``forward(image_size, feature_maps)`` -> ``(sum_levels H*W*A, 4)`` anchors in input pixels (positions
    row-major, then the A anchors of a position), the same for every image of the batch. The stride of a level is
    ``image_size // map_size`` (integer division, per side), anchors sit at the top-left corner of each cell.
    """

    def __init__(self, sizes: tuple[tuple[int, ...], ...], aspect_ratios: tuple[tuple[float, ...], ...]):
        super().__init__()
        if len(sizes) != len(aspect_ratios):
            aspect_ratios = (aspect_ratios[0],) * len(sizes)
        self.sizes, self.aspect_ratios = sizes, aspect_ratios
        self.cell_anchors = [base_anchors(s, a) for s, a in zip(sizes, aspect_ratios, strict=True)]

    def num_anchors_per_location(self) -> list[int]:
        return [len(s) * len(a) for s, a in zip(self.sizes, self.aspect_ratios, strict=True)]

    def grid_anchors(
        self, grid_sizes: list[tuple[int, int]], strides: list[tuple[int, int]], device, dtype
    ) -> list[torch.Tensor]:
        out = []
        for (gh, gw), (sh, sw), base in zip(grid_sizes, strides, self.cell_anchors, strict=True):
            base = base.to(device=device, dtype=dtype)
            xs = torch.arange(0, gw, dtype=torch.int32, device=device) * sw
            ys = torch.arange(0, gh, dtype=torch.int32, device=device) * sh
            sy, sx = torch.meshgrid(ys, xs, indexing="ij")
            sx, sy = sx.reshape(-1), sy.reshape(-1)
            shifts = torch.stack((sx, sy, sx, sy), dim=1)
            out.append((shifts.view(-1, 1, 4) + base.view(1, -1, 4)).reshape(-1, 4))
        return out

    def forward(self, image_size: tuple[int, int], feature_maps: list[torch.Tensor]) -> torch.Tensor:
        grids = [tuple(f.shape[-2:]) for f in feature_maps]
        strides = [(image_size[0] // g[0], image_size[1] // g[1]) for g in grids]
        f = feature_maps[0]
        return torch.cat(self.grid_anchors(grids, strides, f.device, f.dtype))

"""RoIAlign (He et al., 2017, Mask R-CNN) and its multi-scale form for FPN features, in plain torch.

Semantics are torchvision's ``roi_align``: each output bin averages ``sampling_ratio``² bilinear samples (adaptive:
``ceil(roi_size / output_size)`` per side when ``sampling_ratio <= 0``); samples more than one pixel outside the
map are zero; ``aligned=True`` shifts the box by half a pixel so that pixel centres line up (Detectron2).
The samples are gathered from a channels-last copy of the features (one row of C values per sample point),
in chunks of boxes so memory stays bounded.
"""

from __future__ import annotations

import math

import torch
from torch import nn

CHUNK_POINTS = 1 << 18  # sample points gathered at once (x C channels x 4 corners)


def _bilinear_weights(coord: torch.Tensor, size: int) -> tuple[torch.Tensor, ...]:
    """Low/high indices and weights of a bilinear sample at ``coord`` on an axis of ``size`` pixels (torchvision's
    border rule); ``valid`` is False more than one pixel outside."""
    valid = (coord >= -1.0) & (coord <= size)
    c = coord.clamp(min=0)
    low = c.floor().long()
    at_end = low >= size - 1
    low = torch.where(at_end, torch.full_like(low, size - 1), low)
    high = torch.where(at_end, low, low + 1)
    c = torch.where(at_end, low.to(c.dtype), c)
    frac = c - low.to(c.dtype)
    return low, high, 1 - frac, frac, valid


def _axis_weights(start, bin_size, pooled: int, grid: int, size: int, dtype, dev) -> torch.Tensor:
    """(K, pooled, size): the bilinear weights of each output row (or column) on the input rows, averaged over its
    ``grid`` samples; zero for samples outside the map."""
    f = (
        torch.arange(pooled, device=dev, dtype=dtype)[:, None]
        + (torch.arange(grid, device=dev, dtype=dtype) + 0.5) / grid
    )
    coord = start[:, None] + bin_size[:, None] * f.reshape(1, -1)  # (K, pooled*grid)
    lo, hi, w_lo, w_hi, ok = _bilinear_weights(coord, size)
    okf = ok.to(dtype)
    a = torch.zeros(coord.shape[0], coord.shape[1], size, dtype=dtype, device=dev)
    a.scatter_add_(2, lo[..., None], (w_lo * okf)[..., None])
    a.scatter_add_(2, hi[..., None], (w_hi * okf)[..., None])
    return a.reshape(coord.shape[0], pooled, grid, size).mean(2)


def _roi_align_separable(
    feats: torch.Tensor, rois: torch.Tensor, out_hw: tuple[int, int], scale: float, grid: tuple[int, int], aligned
) -> torch.Tensor:
    """The same numbers as :func:`_roi_align_group` by two matrix products per image: bilinear sampling and the
    average over a bin are separable in y and x, so out[k] = Ay[k] @ F[b] @ Ax[k]^T. Cheaper on small maps."""
    _, c, h, w = feats.shape
    ph, pw = out_hw
    offset = 0.5 if aligned else 0.0
    x1, y1 = rois[:, 1] * scale - offset, rois[:, 2] * scale - offset
    rw, rh = rois[:, 3] * scale - offset - x1, rois[:, 4] * scale - offset - y1
    if not aligned:
        rw, rh = rw.clamp(min=1.0), rh.clamp(min=1.0)
    ay = _axis_weights(y1, rh / ph, ph, grid[0], h, feats.dtype, feats.device)  # (K, PH, H)
    ax = _axis_weights(x1, rw / pw, pw, grid[1], w, feats.dtype, feats.device)  # (K, PW, W)
    b = rois[:, 0].long()
    pieces, order = [], []
    for i in torch.unique(b).tolist():
        idx = torch.where(b == i)[0]
        k = idx.numel()
        t = ay[idx].reshape(k * ph, h) @ feats[i].permute(1, 0, 2).reshape(h, c * w)  # (K*PH, C*W)
        t = torch.matmul(t.reshape(k, ph * c, w), ax[idx].transpose(1, 2))  # (K, PH*C, PW)
        pieces.append(t.reshape(k, ph, c, pw).permute(0, 2, 1, 3))
        order.append(idx)
    return _in_order(pieces, order)


def roi_align_per_image(
    feats: torch.Tensor, boxes: torch.Tensor, out_hw: tuple[int, int], scale: float, grid: tuple[int, int]
) -> torch.Tensor:
    """:func:`_roi_align_separable` (not aligned) for the same number of boxes in every image, with fixed shapes
    (an exported graph): ``feats`` (B, C, H, W), ``boxes`` (B, P, 4) xyxy -> (B * P, C, PH, PW)."""
    n, c, h, w = feats.shape
    p = boxes.shape[1]
    ph, pw = out_hw
    flat = boxes.reshape(-1, 4)
    x1, y1 = flat[:, 0] * scale, flat[:, 1] * scale
    rw, rh = (flat[:, 2] * scale - x1).clamp(min=1.0), (flat[:, 3] * scale - y1).clamp(min=1.0)
    ay = _axis_weights(y1, rh / ph, ph, grid[0], h, feats.dtype, feats.device)  # (B*P, PH, H)
    ax = _axis_weights(x1, rw / pw, pw, grid[1], w, feats.dtype, feats.device)  # (B*P, PW, W)
    t = torch.bmm(ay.reshape(n, p * ph, h), feats.permute(0, 2, 1, 3).reshape(n, h, c * w))  # (B, P*PH, C*W)
    t = torch.matmul(t.reshape(n * p, ph * c, w), ax.transpose(1, 2))  # (B*P, PH*C, PW)
    return t.reshape(n * p, ph, c, pw).permute(0, 2, 1, 3)


def _in_order(pieces: list[torch.Tensor], order: list[torch.Tensor]) -> torch.Tensor:
    """Rows computed in groups (``pieces[i]`` for rows ``order[i]``) back in row order: one cat and one gather."""
    if len(pieces) == 1:
        return pieces[0] if bool((order[0] == torch.arange(len(order[0]), device=order[0].device)).all()) else (
            pieces[0][torch.argsort(order[0])])  # fmt: skip
    return torch.cat(pieces)[torch.argsort(torch.cat(order))]


def _roi_align_group(
    feats: torch.Tensor,
    rois: torch.Tensor,
    out_hw: tuple[int, int],
    scale: float,
    grid: tuple[int, int],
    aligned: bool,
) -> torch.Tensor:
    """RoIAlign of ``rois`` (K, 5) that share one sampling grid ``(gh, gw)``: (K, C, PH, PW)."""
    n, c, h, w = feats.shape
    ph, pw = out_hw
    gh, gw = grid
    k = rois.shape[0]
    offset = 0.5 if aligned else 0.0
    b = rois[:, 0].long()
    x1, y1 = rois[:, 1] * scale - offset, rois[:, 2] * scale - offset
    rw, rh = rois[:, 3] * scale - offset - x1, rois[:, 4] * scale - offset - y1
    if not aligned:  # legacy: boxes are at least one pixel
        rw, rh = rw.clamp(min=1.0), rh.clamp(min=1.0)
    bin_w, bin_h = rw / pw, rh / ph
    dtype, dev = feats.dtype, feats.device
    # sample positions inside each bin: (iy + 0.5) / gh of the bin height
    fy = torch.arange(ph, device=dev, dtype=dtype)[:, None] + (torch.arange(gh, device=dev, dtype=dtype) + 0.5) / gh
    fx = torch.arange(pw, device=dev, dtype=dtype)[:, None] + (torch.arange(gw, device=dev, dtype=dtype) + 0.5) / gw
    ys = y1[:, None] + bin_h[:, None] * fy.reshape(1, -1)  # (K, PH*gh)
    xs = x1[:, None] + bin_w[:, None] * fx.reshape(1, -1)  # (K, PW*gw)
    y_lo, y_hi, wy_lo, wy_hi, y_ok = _bilinear_weights(ys, h)
    x_lo, x_hi, wx_lo, wx_hi, x_ok = _bilinear_weights(xs, w)
    table = feats.permute(0, 2, 3, 1).reshape(n * h * w, c)  # one row of channels per pixel
    base = (b * h * w)[:, None, None]  # (K, 1, 1)

    def gather(yi: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:
        idx = base + yi[:, :, None] * w + xi[:, None, :]  # (K, PH*gh, PW*gw)
        return table[idx.reshape(-1)].reshape(k, yi.shape[1], xi.shape[1], c)

    out = (
        gather(y_lo, x_lo) * (wy_lo[:, :, None] * wx_lo[:, None, :])[..., None]
        + gather(y_lo, x_hi) * (wy_lo[:, :, None] * wx_hi[:, None, :])[..., None]
        + gather(y_hi, x_lo) * (wy_hi[:, :, None] * wx_lo[:, None, :])[..., None]
        + gather(y_hi, x_hi) * (wy_hi[:, :, None] * wx_hi[:, None, :])[..., None]
    )
    out = out * (y_ok[:, :, None] & x_ok[:, None, :])[..., None].to(dtype)
    out = out.reshape(k, ph, gh, pw, gw, c).mean(dim=(2, 4))  # average the samples of each bin
    return out.permute(0, 3, 1, 2)  # (K, C, PH, PW)


def roi_align(
    input: torch.Tensor,
    boxes: torch.Tensor | list[torch.Tensor],
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> torch.Tensor:
    """Pool each box of ``boxes`` from ``input`` (N, C, H, W) into a (C, PH, PW) map.

    Args:
        boxes: ``(K, 5)`` rows ``(batch_index, x1, y1, x2, y2)``, or a list of ``(K_i, 4)`` per image.
        output_size: PH, PW (an int for both).
        spatial_scale: feature-map pixels per input pixel (1/stride).
        sampling_ratio: bilinear samples per bin side; <= 0: ``ceil(box side / output side)`` per box.
        aligned: shift by half a pixel (pixel-centre alignment).

    Returns:
        ``(K, C, PH, PW)``.
    """
    if isinstance(boxes, list | tuple):
        boxes = torch.cat([torch.cat([torch.full_like(b[:, :1], i), b], dim=1) for i, b in enumerate(boxes)], dim=0)
    ph, pw = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    k, c = boxes.shape[0], input.shape[1]
    if k == 0:
        return input.new_zeros((k, c, ph, pw))
    rois = boxes.to(input.dtype)
    if sampling_ratio > 0:
        grids = torch.full((k, 2), sampling_ratio, dtype=torch.long)
    else:
        offset = 0.5 if aligned else 0.0
        rw = (rois[:, 3] - rois[:, 1]) * spatial_scale
        rh = (rois[:, 4] - rois[:, 2]) * spatial_scale
        del offset  # the width is the same after the shift
        if not aligned:
            rw, rh = rw.clamp(min=1.0), rh.clamp(min=1.0)
        grids = torch.stack([torch.ceil(rh / ph), torch.ceil(rw / pw)], 1).long().clamp(min=1).cpu()
    keys = grids[:, 0] * 100_003 + grids[:, 1]
    pieces = []
    for key in torch.unique(keys).tolist():
        idx = torch.where(keys == key)[0]
        gh, gw = int(grids[idx[0], 0]), int(grids[idx[0], 1])
        per_box = ph * gh * pw * gw * c
        step = max(1, CHUNK_POINTS * 16 // max(per_box, 1))
        for part in idx.split(step):
            part_dev = part.to(input.device)
            h, w = input.shape[-2:]
            separable = ph * w * (h + pw) < 80 * ph * gh * pw * gw  # matmul work vs gathered corner reads
            fn = _roi_align_separable if separable else _roi_align_group
            vals = fn(input, rois[part_dev], (ph, pw), spatial_scale, (gh, gw), aligned)
            pieces.append((part_dev, vals))
    return _in_order([v for _, v in pieces], [i for i, _ in pieces])


def infer_scale(feature: torch.Tensor, image_size: tuple[int, int]) -> float:
    """The power of two nearest to (feature side / image side): the map's scale (1/stride)."""
    approx = float(feature.shape[-2]) / float(image_size[0])
    return 2.0 ** float(torch.tensor(approx).log2().round())


class LevelMapper:
    """FPN paper eq. (1): an RoI of side ``sqrt(area)`` goes to level ``floor(4 + log2(side / 224))``, clamped to the
    pyramid's levels; returns indices into the list of levels."""

    def __init__(self, k_min: int, k_max: int, canonical_scale: int = 224, canonical_level: int = 4, eps=1e-6):
        self.k_min, self.k_max = k_min, k_max
        self.s0, self.lvl0, self.eps = canonical_scale, canonical_level, eps

    def __call__(self, boxes: list[torch.Tensor]) -> torch.Tensor:
        s = torch.sqrt(torch.cat([(b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) for b in boxes]))
        lvl = torch.floor(self.lvl0 + torch.log2(s / self.s0) + torch.tensor(self.eps, dtype=s.dtype))
        return (lvl.clamp(min=self.k_min, max=self.k_max) - self.k_min).to(torch.int64)


class MultiScaleRoIAlign(nn.Module):
    """RoIAlign over FPN levels: each box is pooled from the level its size maps to (:class:`LevelMapper`).

    Args:
        featmap_names: the keys of the feature dict to pool from (e.g. ``["0", "1", "2", "3"]``).
        output_size: pooled size.
        sampling_ratio: as in :func:`roi_align`.
    """

    def __init__(self, featmap_names: list[str], output_size: int | tuple[int, int], sampling_ratio: int):
        super().__init__()
        self.featmap_names = list(featmap_names)
        self.output_size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
        self.sampling_ratio = sampling_ratio

    def forward(
        self, x: dict[str, torch.Tensor], boxes: list[torch.Tensor], image_shapes: list[tuple[int, int]]
    ) -> torch.Tensor:
        feats = [x[k] for k in self.featmap_names]
        max_h = max(s[0] for s in image_shapes)
        max_w = max(s[1] for s in image_shapes)
        scales = [infer_scale(f, (max_h, max_w)) for f in feats]
        rois = torch.cat([torch.cat([torch.full_like(b[:, :1], i), b], dim=1) for i, b in enumerate(boxes)], dim=0)
        if len(feats) == 1:
            return roi_align(feats[0], rois, self.output_size, scales[0], self.sampling_ratio)
        lvl_min, lvl_max = -math.log2(scales[0]), -math.log2(scales[-1])
        levels = LevelMapper(int(lvl_min), int(lvl_max))(boxes)
        pieces, order = [], []
        for level, (feat, scale) in enumerate(zip(feats, scales, strict=True)):
            idx = torch.where(levels == level)[0]
            if idx.numel():
                pieces.append(roi_align(feat, rois[idx], self.output_size, scale, self.sampling_ratio))
                order.append(idx)
        if not pieces:
            return feats[0].new_zeros((0, feats[0].shape[1], *self.output_size))
        return _in_order(pieces, order)

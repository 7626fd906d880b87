"""Box operations in plain torch: conversions, IoU/GIoU, NMS, box coding, matching, sampling, focal loss.

torchvision's compiled ops (``torchvision.ops``) need a matching CUDA build; these are written with torch tensor
operations only, following the definitions torchvision documents, so a model built on them gives the same numbers
(``tests/nn/test_boxes.py`` checks them on hand-made cases, and against ``torchvision.ops`` where it imports).

Boxes are ``(N, 4)`` tensors ``(x1, y1, x2, y2)`` in pixels (``xyxy``), as in torchvision, unless a function says
otherwise; areas are ``(x2 - x1) * (y2 - y1)`` (no "+1").
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from deepkit.errors import ConfigError

BBOX_XFORM_CLIP = math.log(1000.0 / 16)  # largest log-scale a decoded box may grow by (Fast R-CNN)


# --- conversions and areas ---------------------------------------------------------------------------------------
def box_convert(boxes: torch.Tensor, in_fmt: str, out_fmt: str) -> torch.Tensor:
    """Convert between ``xyxy``, ``xywh`` (COCO: corner + size) and ``cxcywh`` (YOLO: centre + size)."""
    fmts = ("xyxy", "xywh", "cxcywh")
    if in_fmt not in fmts or out_fmt not in fmts:
        raise ConfigError(f"box format must be one of {', '.join(fmts)}; got {in_fmt!r} -> {out_fmt!r}")
    if in_fmt == out_fmt:
        return boxes.clone()
    a, b, c, d = boxes.unbind(-1)
    if in_fmt == "xywh":
        a, b, c, d = a, b, a + c, b + d
    elif in_fmt == "cxcywh":
        a, b, c, d = a - c / 2, b - d / 2, a + c / 2, b + d / 2
    if out_fmt == "xywh":
        return torch.stack([a, b, c - a, d - b], -1)
    if out_fmt == "cxcywh":
        return torch.stack([(a + c) / 2, (b + d) / 2, c - a, d - b], -1)
    return torch.stack([a, b, c, d], -1)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Areas ``(N,)`` of ``xyxy`` boxes."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _inter_union(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    area_a, area_b = box_area(a), box_area(b)
    lt = torch.max(a[:, None, :2], b[None, :, :2])  # (N, M, 2)
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter, area_a[:, None] + area_b[None, :] - inter


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU ``(N, M)`` of two sets of ``xyxy`` boxes."""
    if not a.is_floating_point():
        a, b = a.float(), b.float()
    inter, union = _inter_union(a, b)
    return inter / union


def generalized_box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise generalized IoU ``(N, M)`` (Rezatofighi et al., 2019): IoU - (hull - union) / hull, in [-1, 1]."""
    if not a.is_floating_point():
        a, b = a.float(), b.float()
    inter, union = _inter_union(a, b)
    iou = inter / union
    lt = torch.min(a[:, None, :2], b[None, :, :2])
    rb = torch.max(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    hull = wh[..., 0] * wh[..., 1]
    return iou - (hull - union) / hull


def generalized_box_iou_loss(a: torch.Tensor, b: torch.Tensor, reduction: str = "none", eps: float = 1e-7):
    """1 - GIoU of matching rows of ``a`` and ``b`` (``(N, 4)`` each): ``torchvision.ops.generalized_box_iou_loss``."""
    x1, y1, x2, y2 = a.unbind(-1)
    x1g, y1g, x2g, y2g = b.unbind(-1)
    xk1, yk1 = torch.max(x1, x1g), torch.max(y1, y1g)
    xk2, yk2 = torch.min(x2, x2g), torch.min(y2, y2g)
    inter = torch.zeros_like(x1)
    mask = (yk2 > yk1) & (xk2 > xk1)
    inter[mask] = (xk2[mask] - xk1[mask]) * (yk2[mask] - yk1[mask])
    union = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - inter
    iou = inter / (union + eps)
    xc1, yc1 = torch.min(x1, x1g), torch.min(y1, y1g)
    xc2, yc2 = torch.max(x2, x2g), torch.max(y2, y2g)
    hull = (xc2 - xc1) * (yc2 - yc1)
    loss = 1 - (iou - (hull - union) / (hull + eps))
    return _reduce(loss, reduction)


def clip_boxes_to_image(boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Clip ``xyxy`` boxes (any leading dims) to an image of ``size = (height, width)``."""
    h, w = size
    x = boxes[..., 0::2].clamp(min=0, max=w)
    y = boxes[..., 1::2].clamp(min=0, max=h)
    return torch.stack((x, y), dim=-1).reshape(boxes.shape)


def remove_small_boxes(boxes: torch.Tensor, min_size: float) -> torch.Tensor:
    """Indices of the boxes whose sides are both at least ``min_size``."""
    ws, hs = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return torch.where((ws >= min_size) & (hs >= min_size))[0]


# --- non-maximum suppression ---------------------------------------------------------------------------------------
def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS: indices of the kept boxes, highest score first. A box is dropped when its IoU with a kept,
    higher-scoring box is greater than ``iou_threshold`` (torchvision's rule)."""
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    over = (box_iou(boxes[order], boxes[order]) > iou_threshold).cpu().numpy()  # (N, N)
    n = len(order)
    removed = np.zeros(n, dtype=bool)
    keep = []
    for i in range(n):  # the greedy pass, on a boolean matrix: a few microseconds a box
        if removed[i]:
            continue
        keep.append(i)
        removed |= over[i]
    return order[torch.as_tensor(keep, dtype=torch.long, device=order.device)]


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """NMS within each category ``idxs`` independently: boxes of different categories never suppress each other.
    Indices of the kept boxes, highest score first."""
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    keep = torch.zeros(len(boxes), dtype=torch.bool, device=boxes.device)
    for c in torch.unique(idxs):  # one NMS per category: N_c² IoUs each instead of N² for all
        sel = torch.where(idxs == c)[0]
        keep[sel[nms(boxes[sel], scores[sel], iou_threshold)]] = True
    kept = torch.where(keep)[0]
    return kept[torch.sort(scores[kept], descending=True, stable=True).indices]


# --- box coding ----------------------------------------------------------------------------------------------------
class BoxCoder:
    """Faster R-CNN's box parametrisation: centre offsets relative to the reference box size and log size ratios,
    each multiplied by ``weights`` (R-CNN: (1, 1, 1, 1) in the RPN, (10, 10, 5, 5) in the box head).

    Example:
        >>> coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
        >>> ref = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
        >>> torch.allclose(coder.decode_single(coder.encode_single(ref + 1, ref), ref), ref + 1)
        True
    """

    def __init__(self, weights: tuple[float, float, float, float], bbox_xform_clip: float = BBOX_XFORM_CLIP):
        self.weights, self.bbox_xform_clip = tuple(weights), bbox_xform_clip

    def encode_single(self, gt: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """Targets ``(N, 4)`` that turn reference boxes ``ref`` into ``gt`` (both ``(N, 4)`` xyxy)."""
        wx, wy, ww, wh = self.weights
        ex_w, ex_h = ref[:, 2] - ref[:, 0], ref[:, 3] - ref[:, 1]
        ex_x, ex_y = ref[:, 0] + 0.5 * ex_w, ref[:, 1] + 0.5 * ex_h
        gt_w, gt_h = gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1]
        gt_x, gt_y = gt[:, 0] + 0.5 * gt_w, gt[:, 1] + 0.5 * gt_h
        dx, dy = wx * (gt_x - ex_x) / ex_w, wy * (gt_y - ex_y) / ex_h
        dw, dh = ww * torch.log(gt_w / ex_w), wh * torch.log(gt_h / ex_h)
        return torch.stack((dx, dy, dw, dh), dim=1)

    def encode(self, gts: list[torch.Tensor], refs: list[torch.Tensor]) -> list[torch.Tensor]:
        sizes = [len(b) for b in refs]
        return list(self.encode_single(torch.cat(gts), torch.cat(refs)).split(sizes, 0))

    def decode_single(self, codes: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """Boxes from codes ``(N, 4k)`` (k boxes per reference, e.g. one per class) and references ``(N, 4)``."""
        ref = ref.to(codes.dtype)
        w, h = ref[:, 2] - ref[:, 0], ref[:, 3] - ref[:, 1]
        cx, cy = ref[:, 0] + 0.5 * w, ref[:, 1] + 0.5 * h
        wx, wy, ww, wh = self.weights
        dx, dy = codes[:, 0::4] / wx, codes[:, 1::4] / wy
        dw = (codes[:, 2::4] / ww).clamp(max=self.bbox_xform_clip)
        dh = (codes[:, 3::4] / wh).clamp(max=self.bbox_xform_clip)
        px, py = dx * w[:, None] + cx[:, None], dy * h[:, None] + cy[:, None]
        pw, ph = torch.exp(dw) * w[:, None], torch.exp(dh) * h[:, None]
        half_w = torch.tensor(0.5, dtype=py.dtype, device=pw.device) * pw
        half_h = torch.tensor(0.5, dtype=py.dtype, device=ph.device) * ph
        return torch.stack((px - half_w, py - half_h, px + half_w, py + half_h), dim=2).flatten(1)

    def decode(self, codes: torch.Tensor, refs: list[torch.Tensor]) -> torch.Tensor:
        """``(sum N_i, k, 4)`` boxes for the concatenated references of several images."""
        ref = torch.cat(refs, dim=0)
        total = ref.shape[0]
        return self.decode_single(codes.reshape(total, -1), ref).reshape(total, -1, 4)


# --- matching and sampling -----------------------------------------------------------------------------------------
class Matcher:
    """Assign each prediction (anchor, proposal) the ground-truth box it overlaps most.

    ``matches[j]`` is the index of the matched box, or ``BELOW_LOW_THRESHOLD`` (-1: background) when the best IoU is
    below ``low``, or ``BETWEEN_THRESHOLDS`` (-2: ignored) between ``low`` and ``high``. With
    ``allow_low_quality_matches``, each ground-truth box also keeps the predictions that overlap it most, even
    below ``high`` (Faster R-CNN's RPN rule), so no object goes without a positive.
    """

    BELOW_LOW_THRESHOLD = -1
    BETWEEN_THRESHOLDS = -2

    def __init__(self, high: float, low: float, allow_low_quality_matches: bool = False):
        if low > high:
            raise ConfigError(f"Matcher: low threshold {low} must not exceed the high one {high}")
        self.high, self.low, self.allow_low_quality_matches = high, low, allow_low_quality_matches

    def __call__(self, quality: torch.Tensor) -> torch.Tensor:
        """``quality``: ``(num_gt, num_predictions)`` IoU matrix -> ``(num_predictions,)`` matches."""
        if quality.numel() == 0:
            raise ValueError("Matcher needs at least one ground-truth box and one prediction")
        vals, matches = quality.max(dim=0)
        before = matches.clone() if self.allow_low_quality_matches else None
        matches[vals < self.low] = self.BELOW_LOW_THRESHOLD
        matches[(vals >= self.low) & (vals < self.high)] = self.BETWEEN_THRESHOLDS
        if before is not None:
            best = quality.max(dim=1).values  # each gt's highest IoU
            pairs = torch.where(quality == best[:, None])
            matches[pairs[1]] = before[pairs[1]]
        return matches


class BalancedPositiveNegativeSampler:
    """Pick at most ``batch_size_per_image`` labelled predictions per image, a ``positive_fraction`` of them
    positive (label >= 1) when there are enough, the rest negative (label 0); -1 is never picked. Draws from the
    global torch generator (so a seeded run is reproducible)."""

    def __init__(self, batch_size_per_image: int, positive_fraction: float):
        self.batch_size_per_image, self.positive_fraction = batch_size_per_image, positive_fraction

    def __call__(self, labels: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        pos_masks, neg_masks = [], []
        for lab in labels:
            positive = torch.where(lab >= 1)[0]
            negative = torch.where(lab == 0)[0]
            num_pos = min(positive.numel(), int(self.batch_size_per_image * self.positive_fraction))
            num_neg = min(negative.numel(), self.batch_size_per_image - num_pos)
            pos_idx = positive[torch.randperm(positive.numel(), device=positive.device)[:num_pos]]
            neg_idx = negative[torch.randperm(negative.numel(), device=negative.device)[:num_neg]]
            pos_mask = torch.zeros_like(lab, dtype=torch.uint8)
            neg_mask = torch.zeros_like(lab, dtype=torch.uint8)
            pos_mask[pos_idx] = 1
            neg_mask[neg_idx] = 1
            pos_masks.append(pos_mask)
            neg_masks.append(neg_mask)
        return pos_masks, neg_masks


# --- losses --------------------------------------------------------------------------------------------------------
def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return loss
    if reduction == "mean":
        return loss.mean() if loss.numel() else loss.sum()
    if reduction == "sum":
        return loss.sum()
    raise ConfigError(f"reduction must be none, mean or sum; got {reduction!r}")


def sigmoid_focal_loss(
    inputs: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0, reduction: str = "none"
) -> torch.Tensor:
    """Focal loss (Lin et al., 2017, RetinaNet): binary cross-entropy on logits, scaled by ``(1 - p_t) ** gamma``
    and weighted ``alpha`` for positives, ``1 - alpha`` for negatives (``alpha < 0``: no weighting)."""
    p = torch.sigmoid(inputs)
    ce = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * ((1 - p_t) ** gamma)
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return _reduce(loss, reduction)

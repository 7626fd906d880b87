"""FCOS (Tian et al., 2019, "Fully Convolutional One-Stage Object Detection"): the anchor-free single-shot detector.

Each position of each FPN level predicts class scores (sigmoid, focal loss), its distances to the four sides of
the object it lies in (left, top, right, bottom, in units of the level's stride; GIoU loss) and a centre-ness score
that down-weights boxes predicted far from an object's centre. A position is positive for an object when it lies
within ``center_sampling_radius`` strides of the object's centre and the object's size fits the level's range (each
level handles objects up to 8x its stride here; the smallest objects, below the first level's range, go there).
Names follow torchvision's ``fcos_resnet50_fpn`` (``head.classification_head.conv``, ``cls_logits``,
``head.regression_head.bbox_reg``, ``bbox_ctrness``; group norm in the heads).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from deepkit.errors import ConfigError
from deepkit.models._detection import (
    BackboneConfig,
    Detector,
    build_body,
    check_backbone_config,
    level_top,
    make_transform,
    take_rows,
    too_small,
)
from deepkit.models.faster_rcnn import flatten_level
from deepkit.models.registry import register_model
from deepkit.models.retinanet import levels_of
from deepkit.nn import boxes as box_ops
from deepkit.nn.fpn import BackboneWithFPN, LastLevelP6P7


def gn_tower(channels: int, depth: int) -> nn.Sequential:
    """``depth`` × (3×3 conv, GroupNorm, ReLU), flat as torchvision's FCOS head (``conv.0``, ``conv.1``, ...)."""
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.GroupNorm(min(32, channels), channels), nn.ReLU()]
    return nn.Sequential(*layers)


class FCOSClassificationHead(nn.Module):
    def __init__(self, channels: int, num_classes: int, depth: int, prior: float = 0.01):
        super().__init__()
        self.conv = gn_tower(channels, depth)
        self.cls_logits = nn.Conv2d(channels, num_classes, 3, padding=1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.constant_(m.bias, 0)
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - prior) / prior))
        self.num_classes = num_classes

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([flatten_level(self.cls_logits(self.conv(f)), self.num_classes) for f in feats], dim=1)


class FCOSRegressionHead(nn.Module):
    def __init__(self, channels: int, depth: int):
        super().__init__()
        self.conv = gn_tower(channels, depth)
        self.bbox_reg = nn.Conv2d(channels, 4, 3, padding=1)
        self.bbox_ctrness = nn.Conv2d(channels, 1, 3, padding=1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)

    def forward(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        reg, ctr = [], []
        for f in feats:
            t = self.conv(f)
            reg.append(flatten_level(F.relu(self.bbox_reg(t)), 4))  # distances are >= 0
            ctr.append(flatten_level(self.bbox_ctrness(t), 1))
        return torch.cat(reg, dim=1), torch.cat(ctr, dim=1)


class FCOSHead(nn.Module):
    def __init__(self, channels: int, num_classes: int, depth: int = 4):
        super().__init__()
        self.classification_head = FCOSClassificationHead(channels, num_classes, depth)
        self.regression_head = FCOSRegressionHead(channels, depth)


@dataclass
class FCOSConfig(BackboneConfig):
    returned_layers: list[int] = field(default_factory=lambda: [2, 3, 4])  # P3-P5, then P6, P7
    extra_levels: bool = True  # P6, P7 (stride 64, 128); off for small images
    head_depth: int = 4
    center_sampling_radius: float = 1.5  # in strides
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    score_thresh: float = 0.2
    nms_thresh: float = 0.6
    detections_per_img: int = 100
    topk_candidates: int = 1000


SMALL = dict(
    backbone="resnet18", backbone_widths=[32, 64, 128, 256], backbone_layers=[1, 1, 1, 1], norm="batchnorm",
    trainable_layers=5, fpn_channels=64, min_size=128, max_size=128, extra_levels=False, head_depth=2,
    score_thresh=0.05,
)  # fmt: skip


@register_model("fcos_resnet50_fpn", FCOSConfig, "FCOS (anchor-free), ResNet-50-FPN (torchvision names, COCO 91)",
                score_thresh=0.2)  # fmt: skip
@register_model("fcos_small", FCOSConfig, "FCOS (anchor-free), CPU-sized ResNet-FPN (64 ch), 128 px", **SMALL)
class FCOS(Detector):
    """FCOS: backbone + FPN, one prediction per feature-map position (no anchors)."""

    def __init__(self, cfg: FCOSConfig):
        super().__init__()
        check_backbone_config(cfg)
        self.cfg = cfg
        self.transform = make_transform(cfg)
        body = build_body(cfg)
        extra = LastLevelP6P7(cfg.fpn_channels, cfg.fpn_channels) if cfg.extra_levels else None
        self.backbone = BackboneWithFPN(body, levels_of(cfg.returned_layers), cfg.fpn_channels, extra)
        self.head = FCOSHead(cfg.fpn_channels, cfg.num_classes, cfg.head_depth)
        if cfg.head_depth < 1:
            raise ConfigError(f"model.head_depth must be >= 1, got {cfg.head_depth}")

    @staticmethod
    def points(image_size: tuple[int, int], feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Centres ``(P, 2)`` of every position (x, y), in input pixels, and each position's stride ``(P,)``."""
        centres, strides = [], []
        for f in feats:
            gh, gw = f.shape[-2:]
            s = image_size[0] // gh
            ys = (torch.arange(gh, device=f.device, dtype=f.dtype) + 0.5) * s
            xs = (torch.arange(gw, device=f.device, dtype=f.dtype) + 0.5) * (image_size[1] // gw)
            yy, xx = torch.meshgrid(ys, xs, indexing="ij")
            centres.append(torch.stack([xx.reshape(-1), yy.reshape(-1)], 1))
            strides.append(torch.full((gh * gw,), float(s), device=f.device, dtype=f.dtype))
        return torch.cat(centres), torch.cat(strides)

    def match(self, boxes: torch.Tensor, centres: torch.Tensor, strides: torch.Tensor, first: float, last: float):
        """Index of the object each position is assigned to (the smallest that qualifies), or -1."""
        if boxes.numel() == 0:
            return torch.full((centres.shape[0],), -1, dtype=torch.long, device=centres.device)
        x, y = centres[:, 0, None], centres[:, 1, None]  # (P, 1)
        ltrb = torch.stack([x - boxes[:, 0], y - boxes[:, 1], boxes[:, 2] - x, boxes[:, 3] - y], dim=2)  # (P, G, 4)
        inside = ltrb.min(dim=2).values > 0
        cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
        r = self.cfg.center_sampling_radius * strides[:, None]
        near = ((x - cx).abs() < r) & ((y - cy).abs() < r)
        reach = ltrb.max(dim=2).values
        lower = torch.where(strides == first, torch.zeros_like(strides), strides * 4)[:, None]
        upper = torch.where(strides == last, torch.full_like(strides, float("inf")), strides * 8)[:, None]
        ok = inside & near & (reach >= lower) & (reach <= upper)
        area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))[None].expand_as(ok)
        area = torch.where(ok, area, torch.full_like(area, float("inf")))
        best, idx = area.min(dim=1)
        return torch.where(torch.isfinite(best), idx, torch.full_like(idx, -1))

    def decode(self, reg: torch.Tensor, centres: torch.Tensor, strides: torch.Tensor) -> torch.Tensor:
        d = reg * strides[:, None]
        return torch.stack(
            [centres[:, 0] - d[:, 0], centres[:, 1] - d[:, 1], centres[:, 0] + d[:, 2], centres[:, 1] + d[:, 3]], 1
        )

    def compute_loss(self, targets, logits, reg, ctr, centres, strides) -> dict[str, torch.Tensor]:
        first, last = float(strides.min()), float(strides.max())
        cls_l, box_l, ctr_l = [], [], []
        num_fg_total = 0
        for t, lg, rg, ct in zip(targets, logits, reg, ctr, strict=True):
            m = self.match(t["boxes"], centres, strides, first, last)
            fg = m >= 0
            num_fg = int(fg.sum())
            num_fg_total += num_fg
            target = torch.zeros_like(lg)
            target[fg, t["labels"][m[fg]]] = 1.0
            cls_l.append(box_ops.sigmoid_focal_loss(lg, target, self.cfg.focal_alpha, self.cfg.focal_gamma,
                                                    reduction="sum"))  # fmt: skip
            if num_fg:
                gt = t["boxes"][m[fg]]
                pred = self.decode(rg[fg], centres[fg], strides[fg])
                box_l.append(box_ops.generalized_box_iou_loss(pred, gt, reduction="sum"))
                c = centres[fg]
                lr = torch.stack([c[:, 0] - gt[:, 0], gt[:, 2] - c[:, 0]], 1)
                tb = torch.stack([c[:, 1] - gt[:, 1], gt[:, 3] - c[:, 1]], 1)
                ctr_target = torch.sqrt((lr.min(1).values / lr.max(1).values) * (tb.min(1).values / tb.max(1).values))
                ctr_l.append(F.binary_cross_entropy_with_logits(ct[fg, 0], ctr_target, reduction="sum"))
            else:
                box_l.append(rg.sum() * 0)
                ctr_l.append(ct.sum() * 0)
        n = max(1, num_fg_total)
        return {"classification": sum(cls_l) / n, "bbox_regression": sum(box_l) / n, "bbox_ctrness": sum(ctr_l) / n}

    def postprocess(self, logits, reg, ctr, centres, strides, per_level, sizes) -> list[dict[str, torch.Tensor]]:
        k = self.cfg.num_classes
        out = []
        for lg, rg, ct, size in zip(logits, reg, ctr, sizes, strict=True):
            bs, ss, ls = [], [], []
            parts = (lg, rg, ct, centres, strides)
            for lgl, rgl, ctl, cl, sl in zip(*(p.split(per_level) for p in parts), strict=True):
                scores = torch.sqrt(torch.sigmoid(lgl) * torch.sigmoid(ctl)).flatten()
                idx = torch.where(scores > self.cfg.score_thresh)[0]
                scores, order = scores[idx].topk(min(self.cfg.topk_candidates, idx.numel()))
                idx = idx[order]
                pos = torch.div(idx, k, rounding_mode="floor")
                bs.append(box_ops.clip_boxes_to_image(self.decode(rgl[pos], cl[pos], sl[pos]), size))
                ss.append(scores)
                ls.append(idx % k)
            boxes, scores, labels = torch.cat(bs), torch.cat(ss), torch.cat(ls)
            keep = box_ops.remove_small_boxes(boxes, 1e-2)
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = box_ops.batched_nms(boxes, scores, labels, self.cfg.nms_thresh)[: self.cfg.detections_per_img]
            out.append({"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]})
        return out

    def export_candidates(self, batch, size):
        """:meth:`postprocess` with fixed shapes: per level the ``topk_candidates`` best (position, class)
        scores above the threshold, decoded, clipped; small boxes marked invalid (see
        ``Detector.export_candidates``)."""
        from deepkit.nn.nms_export import INVALID

        feats = list(self.backbone(batch).values())
        logits = self.head.classification_head(feats)
        reg, ctr = self.head.regression_head(feats)
        centres, strides = self.points(tuple(batch.shape[-2:]), feats)
        per_level = [f.shape[-2] * f.shape[-1] for f in feats]
        k = self.cfg.num_classes
        bs, ss, ls = [], [], []
        parts = (logits, reg, ctr, centres[None], strides[None, :, None])
        for lgl, rgl, ctl, cl, sl in zip(*(p.split(per_level, 1) for p in parts), strict=True):
            scores = torch.sqrt(torch.sigmoid(lgl) * torch.sigmoid(ctl)).flatten(1)
            scores, idx = level_top(scores, self.cfg.score_thresh, self.cfg.topk_candidates)
            pos = torch.div(idx, k, rounding_mode="floor")
            r = take_rows(rgl, pos)
            c = cl[0][pos]  # (B, k, 2)
            s = sl[0, :, 0][pos]  # (B, k)
            boxes = self.decode(r.reshape(-1, 4), c.reshape(-1, 2), s.reshape(-1)).reshape(r.shape)
            bs.append(box_ops.clip_boxes_to_image(boxes, size))
            ss.append(scores)
            ls.append(idx % k)
        boxes, scores = torch.cat(bs, 1), torch.cat(ss, 1)
        scores = torch.where(too_small(boxes, 1e-2), torch.full_like(scores, INVALID), scores)
        return boxes, scores, torch.cat(ls, 1)

    def detect(self, batch, sizes, targets):
        feats = list(self.backbone(batch).values())
        logits = self.head.classification_head(feats)
        reg, ctr = self.head.regression_head(feats)
        centres, strides = self.points(tuple(batch.shape[-2:]), feats)
        if self.training:
            return self.compute_loss(targets, logits, reg, ctr, centres, strides), []
        per_level = [f.shape[-2] * f.shape[-1] for f in feats]
        return {}, self.postprocess(logits, reg, ctr, centres, strides, per_level, sizes)

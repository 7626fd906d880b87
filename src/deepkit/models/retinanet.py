"""RetinaNet (Lin et al., 2017, "Focal Loss for Dense Object Detection"): a single-shot detector on anchors.

Every anchor of every FPN level (P3-P7) is classified (sigmoid per class, focal loss) and regressed (L1 on box
deltas) by two small convolutional heads shared across levels; no proposals, no per-region loop.

Parameter names, anchors, matching and post-processing follow torchvision's ``retinanet_resnet50_fpn``
(``backbone.fpn.extra_blocks.p6/p7``, ``head.classification_head.conv.i.0``, ``cls_logits``,
``head.regression_head.bbox_reg``), so its checkpoint loads unchanged.
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
)
from deepkit.models.faster_rcnn import flatten_level
from deepkit.models.registry import register_model
from deepkit.nn import boxes as box_ops
from deepkit.nn.anchors import AnchorGenerator
from deepkit.nn.fpn import BackboneWithFPN, LastLevelP6P7


def conv_tower(channels: int, depth: int, norm: str | None = None) -> nn.Sequential:
    """``depth`` 3×3 convs with ReLU, each wrapped as torchvision's ``Conv2dNormActivation`` (``conv.i.0``)."""
    blocks = []
    for _ in range(depth):
        layers = [nn.Conv2d(channels, channels, 3, padding=1)]
        if norm == "groupnorm":
            layers.append(nn.GroupNorm(min(32, channels), channels))
        blocks.append(nn.Sequential(*layers, nn.ReLU(inplace=True)))
    return nn.Sequential(*blocks)


class RetinaNetClassificationHead(nn.Module):
    def __init__(self, channels: int, num_anchors: int, num_classes: int, depth: int = 4, prior: float = 0.01):
        super().__init__()
        self.conv = conv_tower(channels, depth)
        self.cls_logits = nn.Conv2d(channels, num_anchors * num_classes, 3, padding=1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.constant_(m.bias, 0)
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - prior) / prior))  # start at p = prior everywhere
        self.num_classes = num_classes

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([flatten_level(self.cls_logits(self.conv(f)), self.num_classes) for f in feats], dim=1)


class RetinaNetRegressionHead(nn.Module):
    def __init__(self, channels: int, num_anchors: int, depth: int = 4):
        super().__init__()
        self.conv = conv_tower(channels, depth)
        self.bbox_reg = nn.Conv2d(channels, num_anchors * 4, 3, padding=1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([flatten_level(self.bbox_reg(self.conv(f)), 4) for f in feats], dim=1)


class RetinaNetHead(nn.Module):
    def __init__(self, channels: int, num_anchors: int, num_classes: int, depth: int = 4):
        super().__init__()
        self.classification_head = RetinaNetClassificationHead(channels, num_anchors, num_classes, depth)
        self.regression_head = RetinaNetRegressionHead(channels, num_anchors, depth)

    def forward(self, feats: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"cls_logits": self.classification_head(feats), "bbox_regression": self.regression_head(feats)}


@dataclass
class RetinaNetConfig(BackboneConfig):
    anchor_sizes: list[int] = field(default_factory=lambda: [32, 64, 128, 256, 512])  # base size per level P3-P7
    scales_per_octave: int = 3  # sizes x * 2^(i/3), i = 0..2 (the paper's)
    aspect_ratios: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])
    returned_layers: list[int] = field(default_factory=lambda: [2, 3, 4])  # stages feeding the FPN (P3-P5)
    head_depth: int = 4
    fg_iou_thresh: float = 0.5
    bg_iou_thresh: float = 0.4
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    score_thresh: float = 0.05
    nms_thresh: float = 0.5
    detections_per_img: int = 300
    topk_candidates: int = 1000


def octave_sizes(sizes: list[int], per_octave: int) -> tuple[tuple[int, ...], ...]:
    """Anchor sizes of each level: ``int(x * 2 ** (i / per_octave))``, as torchvision rounds them."""
    return tuple(tuple(int(x * 2 ** (i / per_octave)) for i in range(per_octave)) for x in sizes)


SMALL = dict(
    backbone="resnet18", backbone_widths=[32, 64, 128, 256], backbone_layers=[1, 1, 1, 1], norm="batchnorm",
    trainable_layers=5, fpn_channels=64, min_size=128, max_size=128, anchor_sizes=[12, 24, 48, 96, 192],
    head_depth=2, detections_per_img=100,
)  # fmt: skip


def levels_of(returned_layers: list[int]) -> list[str]:
    if not returned_layers or any(i not in (1, 2, 3, 4) for i in returned_layers):
        raise ConfigError(f"model.returned_layers: stages among 1..4, got {returned_layers}")
    return [f"layer{i}" for i in returned_layers]


@register_model("retinanet_resnet50_fpn", RetinaNetConfig, "RetinaNet, ResNet-50-FPN (torchvision names, COCO 91)")
@register_model("retinanet_small", RetinaNetConfig, "RetinaNet, CPU-sized ResNet-FPN (64 ch), 128 px", **SMALL)
class RetinaNet(Detector):
    """RetinaNet: backbone + FPN (P3-P7), anchors, a classification and a box-regression head."""

    def __init__(self, cfg: RetinaNetConfig):
        super().__init__()
        check_backbone_config(cfg)
        self.cfg = cfg
        self.transform = make_transform(cfg)
        body = build_body(cfg)
        extra = LastLevelP6P7(cfg.fpn_channels, cfg.fpn_channels)
        self.backbone = BackboneWithFPN(body, levels_of(cfg.returned_layers), cfg.fpn_channels, extra)
        if len(cfg.anchor_sizes) != len(cfg.returned_layers) + 2:
            raise ConfigError(f"model.anchor_sizes: one per FPN level ({len(cfg.returned_layers) + 2}), got "
                              f"{cfg.anchor_sizes}")  # fmt: skip
        sizes = octave_sizes(cfg.anchor_sizes, cfg.scales_per_octave)
        self.anchor_generator = AnchorGenerator(sizes, (tuple(cfg.aspect_ratios),) * len(sizes))
        num_anchors = self.anchor_generator.num_anchors_per_location()[0]
        self.head = RetinaNetHead(cfg.fpn_channels, num_anchors, cfg.num_classes, cfg.head_depth)
        self.box_coder = box_ops.BoxCoder((1.0, 1.0, 1.0, 1.0))
        self.matcher = box_ops.Matcher(cfg.fg_iou_thresh, cfg.bg_iou_thresh, allow_low_quality_matches=True)

    def compute_loss(self, targets, head: dict[str, torch.Tensor], anchors: torch.Tensor) -> dict[str, torch.Tensor]:
        cls_losses, reg_losses = [], []
        for t, logits, deltas in zip(targets, head["cls_logits"], head["bbox_regression"], strict=True):
            if t["boxes"].numel() == 0:
                matched = torch.full((anchors.shape[0],), -1, dtype=torch.int64, device=anchors.device)
            else:
                matched = self.matcher(box_ops.box_iou(t["boxes"], anchors))
            fg = matched >= 0
            num_fg = int(fg.sum())
            target_cls = torch.zeros_like(logits)
            target_cls[fg, t["labels"][matched[fg]]] = 1.0
            valid = matched != box_ops.Matcher.BETWEEN_THRESHOLDS
            cls_losses.append(
                box_ops.sigmoid_focal_loss(
                    logits[valid], target_cls[valid], self.cfg.focal_alpha, self.cfg.focal_gamma, reduction="sum"
                ) / max(1, num_fg)
            )  # fmt: skip
            target_reg = self.box_coder.encode_single(t["boxes"][matched[fg]], anchors[fg])
            reg_losses.append(F.l1_loss(deltas[fg], target_reg, reduction="sum") / max(1, num_fg))
        n = len(targets)
        return {"classification": sum(cls_losses) / n, "bbox_regression": sum(reg_losses) / n}

    def postprocess(self, head, anchors: torch.Tensor, per_level: list[int], sizes) -> list[dict[str, torch.Tensor]]:
        k = self.cfg.num_classes
        out = []
        for logits, deltas, size in zip(head["cls_logits"], head["bbox_regression"], sizes, strict=True):
            all_boxes, all_scores, all_labels = [], [], []
            for lg, dl, an in zip(logits.split(per_level), deltas.split(per_level), anchors.split(per_level),
                                  strict=True):  # fmt: skip
                scores = torch.sigmoid(lg).flatten()
                idx = torch.where(scores > self.cfg.score_thresh)[0]
                scores = scores[idx]
                num = min(self.cfg.topk_candidates, idx.numel())
                scores, order = scores.topk(num)
                idx = idx[order]
                anchor_idx = torch.div(idx, k, rounding_mode="floor")
                labels = idx % k
                boxes = self.box_coder.decode_single(dl[anchor_idx], an[anchor_idx])
                all_boxes.append(box_ops.clip_boxes_to_image(boxes, size))
                all_scores.append(scores)
                all_labels.append(labels)
            boxes, scores, labels = torch.cat(all_boxes), torch.cat(all_scores), torch.cat(all_labels)
            keep = box_ops.batched_nms(boxes, scores, labels, self.cfg.nms_thresh)[: self.cfg.detections_per_img]
            out.append({"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]})
        return out

    def export_candidates(self, batch, size):
        """:meth:`postprocess` with fixed shapes: per level the ``topk_candidates`` best (anchor, class) scores
        above the threshold, decoded and clipped (see ``Detector.export_candidates``)."""
        feats = list(self.backbone(batch).values())
        head = self.head(feats)
        anchors = self.anchor_generator(tuple(batch.shape[-2:]), feats)
        a, k = self.anchor_generator.num_anchors_per_location()[0], self.cfg.num_classes
        per_level = [f.shape[-2] * f.shape[-1] * a for f in feats]
        parts = (head["cls_logits"].split(per_level, 1), head["bbox_regression"].split(per_level, 1))
        bs, ss, ls = [], [], []
        for lg, dl, an in zip(*parts, anchors.split(per_level), strict=True):
            scores, idx = level_top(torch.sigmoid(lg).flatten(1), self.cfg.score_thresh, self.cfg.topk_candidates)
            anchor_idx = torch.div(idx, k, rounding_mode="floor")
            codes = take_rows(dl, anchor_idx)
            boxes = self.box_coder.decode_single(codes.reshape(-1, 4), an[anchor_idx].reshape(-1, 4))
            bs.append(box_ops.clip_boxes_to_image(boxes.reshape(codes.shape), size))
            ss.append(scores)
            ls.append(idx % k)
        return torch.cat(bs, 1), torch.cat(ss, 1), torch.cat(ls, 1)

    def detect(self, batch, sizes, targets):
        feats = list(self.backbone(batch).values())
        head = self.head(feats)
        anchors = self.anchor_generator(tuple(batch.shape[-2:]), feats)
        if self.training:
            return self.compute_loss(targets, head, anchors), []
        a = self.anchor_generator.num_anchors_per_location()[0]
        per_level = [f.shape[-2] * f.shape[-1] * a for f in feats]
        return {}, self.postprocess(head, anchors, per_level, sizes)

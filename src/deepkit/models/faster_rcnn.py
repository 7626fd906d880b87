"""Faster R-CNN (Ren et al., 2015) with a ResNet-FPN backbone (Lin et al., 2017): the two-stage detector.

Stage one, the region proposal network, scores anchors at every position of every FPN level and regresses them
into proposals (objectness + box deltas, NMS per level). Stage two pools each proposal from its FPN level
(multi-scale RoIAlign, 7×7) and classifies and refines it (two FC layers, one box per class).

Parameter names, defaults and post-processing are torchvision's ``fasterrcnn_resnet50_fpn`` (``backbone.body``,
``backbone.fpn``, ``rpn.head``, ``roi_heads.box_head.fc6/fc7``, ``roi_heads.box_predictor``; frozen batch norm with
torchvision's v1 eps of 0), so its checkpoint loads unchanged. Smaller variants swap the backbone for a CPU-sized
ResNet trained from scratch with ordinary batch norm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from deepkit.models._detection import (
    BackboneConfig,
    Detector,
    build_body,
    check_backbone_config,
    make_transform,
    take_rows,
    too_small,
)
from deepkit.models.registry import register_model
from deepkit.nn import boxes as box_ops
from deepkit.nn.anchors import AnchorGenerator
from deepkit.nn.fpn import BackboneWithFPN, LastLevelMaxPool
from deepkit.nn.roi_align import MultiScaleRoIAlign


# --- region proposal network ----------------------------------------------------------------------------------------
class RPNHead(nn.Module):
    """A shared 3×3 conv + ReLU, then per anchor one objectness logit and four box deltas."""

    def __init__(self, channels: int, num_anchors: int):
        super().__init__()
        self.conv = nn.Sequential(nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True)))
        self.cls_logits = nn.Conv2d(channels, num_anchors, 1)
        self.bbox_pred = nn.Conv2d(channels, num_anchors * 4, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.constant_(m.bias, 0)

    def forward(self, feats: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        logits, deltas = [], []
        for f in feats:
            t = self.conv(f)
            logits.append(self.cls_logits(t))
            deltas.append(self.bbox_pred(t))
        return logits, deltas


def flatten_level(x: torch.Tensor, channels: int) -> torch.Tensor:
    """(N, A*C, H, W) -> (N, H*W*A, C): positions row-major, then anchors (the anchors' order)."""
    n, _, h, w = x.shape
    return x.view(n, -1, channels, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, channels)


class RegionProposalNetwork(nn.Module):
    """Anchors -> scored, regressed, clipped, NMS-filtered proposals (and, in training, the RPN losses)."""

    def __init__(self, anchors: AnchorGenerator, head: RPNHead, cfg: FasterRCNNConfig):
        super().__init__()
        self.anchor_generator, self.head = anchors, head
        self.box_coder = box_ops.BoxCoder((1.0, 1.0, 1.0, 1.0))
        self.matcher = box_ops.Matcher(cfg.rpn_fg_iou_thresh, cfg.rpn_bg_iou_thresh, allow_low_quality_matches=True)
        self.sampler = box_ops.BalancedPositiveNegativeSampler(cfg.rpn_batch_size_per_image, cfg.rpn_positive_fraction)
        self.pre_nms = {True: cfg.rpn_pre_nms_top_n_train, False: cfg.rpn_pre_nms_top_n_test}
        self.post_nms = {True: cfg.rpn_post_nms_top_n_train, False: cfg.rpn_post_nms_top_n_test}
        self.nms_thresh, self.score_thresh, self.min_size = cfg.rpn_nms_thresh, cfg.rpn_score_thresh, 1e-3

    def filter_proposals(
        self, proposals: torch.Tensor, objectness: torch.Tensor, sizes: list[tuple[int, int]], per_level: list[int]
    ) -> list[torch.Tensor]:
        n = proposals.shape[0]
        objectness = objectness.detach().reshape(n, -1)
        levels = torch.cat([torch.full((k,), i, dtype=torch.int64) for i, k in enumerate(per_level)])
        levels = levels.reshape(1, -1).expand_as(objectness).to(objectness.device)
        top, offset = [], 0  # the pre_nms best anchors of each level
        for scores in objectness.split(per_level, 1):
            k = min(self.pre_nms[self.training], scores.shape[1])
            top.append(scores.topk(k, dim=1).indices + offset)
            offset += scores.shape[1]
        idx = torch.cat(top, dim=1)
        rows = torch.arange(n, device=proposals.device)[:, None]
        objectness, levels, proposals = objectness[rows, idx], levels[rows, idx], proposals[rows, idx]
        probs = torch.sigmoid(objectness)
        out = []
        for boxes, scores, lvl, size in zip(proposals, probs, levels, sizes, strict=True):
            boxes = box_ops.clip_boxes_to_image(boxes, size)
            keep = box_ops.remove_small_boxes(boxes, self.min_size)
            boxes, scores, lvl = boxes[keep], scores[keep], lvl[keep]
            keep = torch.where(scores >= self.score_thresh)[0]
            boxes, scores, lvl = boxes[keep], scores[keep], lvl[keep]
            keep = box_ops.batched_nms(boxes, scores, lvl, self.nms_thresh)[: self.post_nms[self.training]]
            out.append(boxes[keep])
        return out

    def assign_targets(self, anchors: torch.Tensor, targets: list[dict[str, torch.Tensor]]):
        labels, matched = [], []
        for t in targets:
            gt = t["boxes"]
            if gt.numel() == 0:  # an image without objects: every anchor is background
                matched.append(torch.zeros_like(anchors))
                labels.append(torch.zeros(anchors.shape[0], dtype=torch.float32, device=anchors.device))
                continue
            m = self.matcher(box_ops.box_iou(gt, anchors))
            matched.append(gt[m.clamp(min=0)])
            lab = (m >= 0).to(torch.float32)
            lab[m == box_ops.Matcher.BELOW_LOW_THRESHOLD] = 0.0
            lab[m == box_ops.Matcher.BETWEEN_THRESHOLDS] = -1.0
            labels.append(lab)
        return labels, matched

    def losses(self, objectness, deltas, labels, regression_targets) -> dict[str, torch.Tensor]:
        pos, neg = self.sampler(labels)
        pos = torch.where(torch.cat(pos))[0]
        sampled = torch.cat([pos, torch.where(torch.cat(neg))[0]])
        objectness = objectness.flatten()
        labels_t, targets_t = torch.cat(labels), torch.cat(regression_targets)
        box_loss = F.smooth_l1_loss(deltas[pos], targets_t[pos], beta=1 / 9, reduction="sum") / max(1, sampled.numel())
        obj_loss = F.binary_cross_entropy_with_logits(objectness[sampled], labels_t[sampled])
        return {"loss_objectness": obj_loss, "loss_rpn_box_reg": box_loss}

    def forward(self, batch: torch.Tensor, sizes, feats: dict[str, torch.Tensor], targets=None):
        maps = list(feats.values())
        logits, deltas = self.head(maps)
        anchors = self.anchor_generator(tuple(batch.shape[-2:]), maps)
        n = batch.shape[0]
        per_level = [o[0].numel() for o in logits]
        objectness = torch.cat([flatten_level(o, 1) for o in logits], dim=1).flatten(0, -2)  # (N*A_total, 1)
        deltas = torch.cat([flatten_level(d, 4) for d in deltas], dim=1).reshape(-1, 4)
        proposals = self.box_coder.decode(deltas.detach(), [anchors] * n).view(n, -1, 4)
        boxes = self.filter_proposals(proposals, objectness, sizes, per_level)
        losses = {}
        if self.training:
            labels, matched = self.assign_targets(anchors, targets)
            regression_targets = self.box_coder.encode(matched, [anchors] * n)
            losses = self.losses(objectness, deltas, labels, regression_targets)
        return boxes, losses


# --- RoI heads -----------------------------------------------------------------------------------------------------
class TwoMLPHead(nn.Module):
    """Flatten the pooled 7×7 map, two FC layers with ReLU (``fc6``, ``fc7``)."""

    def __init__(self, in_features: int, hidden: int):
        super().__init__()
        self.fc6 = nn.Linear(in_features, hidden)
        self.fc7 = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.fc7(F.relu(self.fc6(x.flatten(1)))))


class FastRCNNPredictor(nn.Module):
    """Class scores (background included) and one box per class."""

    def __init__(self, in_features: int, num_classes: int):
        super().__init__()
        self.cls_score = nn.Linear(in_features, num_classes)
        self.bbox_pred = nn.Linear(in_features, num_classes * 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.flatten(1)
        return self.cls_score(x), self.bbox_pred(x)


class RoIHeads(nn.Module):
    """Sample proposals (training), pool, classify and refine; post-process into detections."""

    def __init__(self, pool: MultiScaleRoIAlign, head: TwoMLPHead, predictor: FastRCNNPredictor, cfg):
        super().__init__()
        self.box_roi_pool, self.box_head, self.box_predictor = pool, head, predictor
        self.box_coder = box_ops.BoxCoder((10.0, 10.0, 5.0, 5.0))
        self.matcher = box_ops.Matcher(cfg.box_fg_iou_thresh, cfg.box_bg_iou_thresh, allow_low_quality_matches=False)
        self.sampler = box_ops.BalancedPositiveNegativeSampler(cfg.box_batch_size_per_image, cfg.box_positive_fraction)
        self.score_thresh, self.nms_thresh = cfg.box_score_thresh, cfg.box_nms_thresh
        self.detections_per_img = cfg.box_detections_per_img

    def select_training_samples(self, proposals: list[torch.Tensor], targets: list[dict[str, torch.Tensor]]):
        proposals = [torch.cat([p, t["boxes"]]) for p, t in zip(proposals, targets, strict=True)]  # gt as proposals
        labels, matched_idx = [], []
        for p, t in zip(proposals, targets, strict=True):
            gt, gl = t["boxes"], t["labels"]
            if gt.numel() == 0:
                matched_idx.append(torch.zeros(p.shape[0], dtype=torch.int64, device=p.device))
                labels.append(torch.zeros(p.shape[0], dtype=torch.int64, device=p.device))
                continue
            m = self.matcher(box_ops.box_iou(gt, p))
            idx = m.clamp(min=0)
            lab = gl[idx].to(torch.int64)
            lab[m == box_ops.Matcher.BELOW_LOW_THRESHOLD] = 0
            lab[m == box_ops.Matcher.BETWEEN_THRESHOLDS] = -1
            matched_idx.append(idx)
            labels.append(lab)
        pos, neg = self.sampler(labels)
        matched_boxes = []
        for i, t in enumerate(targets):
            keep = torch.where(pos[i] | neg[i])[0]
            proposals[i], labels[i], matched_idx[i] = proposals[i][keep], labels[i][keep], matched_idx[i][keep]
            gt = t["boxes"] if t["boxes"].numel() else torch.zeros((1, 4), dtype=proposals[i].dtype,
                                                                      device=proposals[i].device)  # fmt: skip
            matched_boxes.append(gt[matched_idx[i]])
        return proposals, labels, self.box_coder.encode(matched_boxes, proposals)

    def postprocess(self, logits, box_regression, proposals, sizes) -> list[dict[str, torch.Tensor]]:
        num_classes = logits.shape[-1]
        boxes = self.box_coder.decode(box_regression, proposals)
        scores = F.softmax(logits, -1)
        out = []
        counts = [len(p) for p in proposals]
        for b, s, size in zip(boxes.split(counts), scores.split(counts), sizes, strict=True):
            b = box_ops.clip_boxes_to_image(b, size)
            labels = torch.arange(num_classes, device=b.device).view(1, -1).expand_as(s)
            b, s, labels = b[:, 1:].reshape(-1, 4), s[:, 1:].reshape(-1), labels[:, 1:].reshape(-1)  # no background
            keep = torch.where(s > self.score_thresh)[0]
            b, s, labels = b[keep], s[keep], labels[keep]
            keep = box_ops.remove_small_boxes(b, 1e-2)
            b, s, labels = b[keep], s[keep], labels[keep]
            keep = box_ops.batched_nms(b, s, labels, self.nms_thresh)[: self.detections_per_img]
            out.append({"boxes": b[keep], "labels": labels[keep], "scores": s[keep]})
        return out

    def forward(self, feats, proposals, sizes, targets=None):
        if self.training:
            proposals, labels, regression_targets = self.select_training_samples(proposals, targets)
        x = self.box_head(self.box_roi_pool(feats, proposals, sizes))
        logits, box_regression = self.box_predictor(x)
        if not self.training:
            return self.postprocess(logits, box_regression, proposals, sizes), {}
        labels, regression_targets = torch.cat(labels), torch.cat(regression_targets)
        cls_loss = F.cross_entropy(logits, labels)
        pos = torch.where(labels > 0)[0]
        box_regression = box_regression.reshape(logits.shape[0], -1, 4)
        box_loss = F.smooth_l1_loss(
            box_regression[pos, labels[pos]], regression_targets[pos], beta=1 / 9, reduction="sum"
        ) / max(1, labels.numel())
        return [], {"loss_classifier": cls_loss, "loss_box_reg": box_loss}


# --- the model ---------------------------------------------------------------------------------------------------
@dataclass
class FasterRCNNConfig(BackboneConfig):
    anchor_sizes: list[int] = field(default_factory=lambda: [32, 64, 128, 256, 512])  # one per FPN level (P2..pool)
    aspect_ratios: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])  # height / width
    rpn_pre_nms_top_n_train: int = 2000
    rpn_pre_nms_top_n_test: int = 1000
    rpn_post_nms_top_n_train: int = 2000
    rpn_post_nms_top_n_test: int = 1000
    rpn_nms_thresh: float = 0.7
    rpn_fg_iou_thresh: float = 0.7
    rpn_bg_iou_thresh: float = 0.3
    rpn_batch_size_per_image: int = 256
    rpn_positive_fraction: float = 0.5
    rpn_score_thresh: float = 0.0
    box_score_thresh: float = 0.05
    box_nms_thresh: float = 0.5
    box_detections_per_img: int = 100
    box_fg_iou_thresh: float = 0.5
    box_bg_iou_thresh: float = 0.5
    box_batch_size_per_image: int = 512
    box_positive_fraction: float = 0.25
    representation_size: int = 1024  # width of fc6/fc7


SMALL = dict(
    backbone="resnet18", backbone_widths=[32, 64, 128, 256], backbone_layers=[1, 1, 1, 1], norm="batchnorm",
    trainable_layers=5, fpn_channels=64, min_size=128, max_size=128, anchor_sizes=[16, 32, 64, 128, 256],
    rpn_pre_nms_top_n_train=600, rpn_post_nms_top_n_train=300, rpn_pre_nms_top_n_test=300,
    rpn_post_nms_top_n_test=150, box_batch_size_per_image=64, representation_size=256,
)  # fmt: skip


@register_model("fasterrcnn_resnet50_fpn", FasterRCNNConfig, "Faster R-CNN, ResNet-50-FPN (torchvision names, COCO 91)")
@register_model(
    "fasterrcnn_resnet18_fpn",
    FasterRCNNConfig,
    "Faster R-CNN, ResNet-18-FPN trained from scratch (batch norm), 512 px",
    backbone="resnet18", norm="batchnorm", trainable_layers=5, min_size=512, max_size=683,
)  # fmt: skip
@register_model("fasterrcnn_small", FasterRCNNConfig, "Faster R-CNN, CPU-sized ResNet-FPN (64 ch), 128 px", **SMALL)
class FasterRCNN(Detector):
    """Faster R-CNN: backbone + FPN, region proposal network, RoI heads."""

    def __init__(self, cfg: FasterRCNNConfig):
        super().__init__()
        check_backbone_config(cfg)
        self.cfg = cfg
        self.transform = make_transform(cfg)
        body = build_body(cfg)
        self.backbone = BackboneWithFPN(
            body, ["layer1", "layer2", "layer3", "layer4"], cfg.fpn_channels, LastLevelMaxPool()
        )
        anchors = AnchorGenerator(tuple((s,) for s in cfg.anchor_sizes), (tuple(cfg.aspect_ratios),))
        if len(cfg.anchor_sizes) != 5:
            from deepkit.errors import ConfigError

            raise ConfigError(f"model.anchor_sizes: one size per FPN level (5: P2-P5 and pool), got {cfg.anchor_sizes}")
        self.rpn = RegionProposalNetwork(anchors, RPNHead(cfg.fpn_channels, len(cfg.aspect_ratios)), cfg)
        pool = MultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2)
        head = TwoMLPHead(cfg.fpn_channels * 7 * 7, cfg.representation_size)
        self.roi_heads = RoIHeads(pool, head, FastRCNNPredictor(cfg.representation_size, cfg.num_classes), cfg)

    def postprocess_thresholds(self) -> tuple[float, float]:
        return self.roi_heads.score_thresh, self.roi_heads.nms_thresh

    def set_postprocess_thresholds(self, score: float, nms: float) -> None:
        self.roi_heads.score_thresh, self.roi_heads.nms_thresh = score, nms

    def export_limits(self) -> tuple[float, int]:
        return self.roi_heads.nms_thresh, self.roi_heads.detections_per_img

    def export_candidates(self, batch, size):
        """Both stages' eval-mode post-processing with fixed shapes (see ``Detector.export_candidates``): the
        RPN's per-level top-k, clipping, size and score tests and per-level NMS as masks, its best
        ``rpn_post_nms_top_n_test`` proposals (padding marked), multi-scale RoIAlign on fixed-size proposals, then
        every (proposal, class) box with its score (padding proposals and those below ``box_score_thresh`` or
        smaller than 0.01 px marked)."""
        from deepkit.errors import ExportError
        from deepkit.nn.nms_export import INVALID, top_detections
        from deepkit.nn.roi_align import LevelMapper, roi_align_per_image

        feats = self.backbone(batch)
        rpn, heads = self.rpn, self.roi_heads
        maps = list(feats.values())
        logits, deltas = rpn.head(maps)
        anchors = rpn.anchor_generator(tuple(batch.shape[-2:]), maps)
        n = batch.shape[0]
        per_level = [o[0].numel() for o in logits]
        objectness = torch.cat([flatten_level(o, 1) for o in logits], dim=1).flatten(1)  # (B, A)
        codes = torch.cat([flatten_level(d, 4) for d in deltas], dim=1)  # (B, A, 4)
        refs = anchors[None].expand(n, -1, -1).reshape(-1, 4)
        proposals = rpn.box_coder.decode_single(codes.reshape(-1, 4), refs).reshape(codes.shape)
        top, levels, offset = [], [], 0
        for i, scores in enumerate(objectness.split(per_level, 1)):
            k = min(rpn.pre_nms[False], scores.shape[1])
            top.append(scores.topk(k, dim=1).indices + offset)
            levels.append(torch.full((k,), i, dtype=torch.int64, device=batch.device))
            offset += scores.shape[1]
        idx = torch.cat(top, 1)
        probs = torch.sigmoid(torch.gather(objectness, 1, idx))
        boxes = box_ops.clip_boxes_to_image(take_rows(proposals, idx), size)
        lvl = torch.cat(levels)[None].expand_as(idx)
        ok = ~too_small(boxes, rpn.min_size) & (probs >= rpn.score_thresh)
        probs = torch.where(ok, probs, torch.full_like(probs, INVALID))
        keep = torch.ops.deepkit.batched_nms_mask(boxes, probs, lvl, float(rpn.nms_thresh), len(per_level))
        props = top_detections(boxes, probs, lvl, keep, rpn.post_nms[False])  # (B, P): the proposals, best first
        pool = heads.box_roi_pool
        if pool.sampling_ratio <= 0:
            raise ExportError("RoIAlign with an adaptive sampling ratio is not exported; expected a fixed one")
        p = props["boxes"].shape[1]
        flat = props["boxes"].reshape(-1, 4)
        fmaps = [feats[k] for k in pool.featmap_names]
        scales = [2.0 ** round(math.log2(float(f.shape[-2]) / float(size[0]))) for f in fmaps]
        which = LevelMapper(int(-math.log2(scales[0])), int(-math.log2(scales[-1])))([flat])
        grid = (pool.sampling_ratio, pool.sampling_ratio)
        pooled = 0
        for level, (f, scale) in enumerate(zip(fmaps, scales, strict=True)):  # every box from every level, kept
            out = roi_align_per_image(f, props["boxes"], pool.output_size, scale, grid)  # from its own
            pooled = pooled + out * (which == level).to(out.dtype)[:, None, None, None]
        cls, reg = heads.box_predictor(heads.box_head(pooled))
        k = cls.shape[-1]
        boxes = heads.box_coder.decode_single(reg, flat).reshape(n, p, k, 4)
        boxes = box_ops.clip_boxes_to_image(boxes, size)[:, :, 1:].reshape(n, -1, 4)  # no background
        scores = torch.softmax(cls, -1).reshape(n, p, k)[:, :, 1:]
        labels = torch.arange(1, k, device=batch.device)[None, None].expand_as(scores).reshape(n, -1)
        ok = (scores > heads.score_thresh) & props["valid"][:, :, None]
        scores = torch.where(ok, scores, torch.full_like(scores, INVALID)).reshape(n, -1)
        scores = torch.where(too_small(boxes, 1e-2), torch.full_like(scores, INVALID), scores)
        return boxes, scores, labels

    def detect(self, batch, sizes, targets):
        feats = self.backbone(batch)
        proposals, rpn_losses = self.rpn(batch, sizes, feats, targets)
        detections, head_losses = self.roi_heads(feats, proposals, sizes, targets)
        return {**rpn_losses, **head_losses}, detections

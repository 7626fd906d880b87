"""What the detectors (Faster R-CNN, RetinaNet, FCOS) share: torchvision's input/output API, the resize/normalize
transform, the ResNet-FPN backbone and the input checks.

API (torchvision.models.detection's): ``model(images, targets)`` in train mode takes a list of ``(C, H, W)`` float
images in [0, 1] (any sizes) and a list of dicts ``{"boxes": (N, 4) xyxy pixels, "labels": (N,) int64}`` and
returns a dict of losses; in eval mode ``model(images)`` returns one dict per image ``{"boxes", "labels",
"scores"}`` in the input image's pixels. Label 0 is the background class: objects are labelled 1..num_classes-1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from deepkit.errors import ConfigError, ShapeError
from deepkit.models.base import example_generator, model_device

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
NORMS = ("frozen_batchnorm", "batchnorm", "groupnorm")


@dataclass
class BackboneConfig:
    """The fields of a detector's config that describe its ResNet-FPN backbone and input transform."""

    in_channels: int = 3
    num_classes: int = 91  # including the background class 0 (COCO: 91 ids, torchvision's convention)
    backbone: str = "resnet50"  # a registered ResNet (its layers/widths can be overridden below)
    backbone_layers: list[int] | None = None  # blocks per stage (None: the backbone's own)
    backbone_widths: list[int] | None = None  # widths per stage (None: the backbone's own)
    norm: str = "frozen_batchnorm"  # frozen_batchnorm (pretrained backbones), batchnorm or groupnorm (from scratch)
    frozen_bn_eps: float = 0.0  # torchvision's v1 COCO weights were trained with eps 0
    trainable_layers: int = 3  # backbone stages trained, from the top (5: all, torchvision's default 3)
    fpn_channels: int = 256
    min_size: int = 800  # images are resized so the short side is min_size ...
    max_size: int = 1333  # ... and the long side at most max_size (aspect ratio kept)
    image_mean: list[float] | None = None  # None: ImageNet's (its mean over channels for 1-channel images)
    image_std: list[float] | None = None
    size_divisible: int = 32  # a batch is padded to a multiple of this


def check_backbone_config(cfg: BackboneConfig) -> None:
    if cfg.norm not in NORMS:
        raise ConfigError(f"model.norm must be one of {', '.join(NORMS)}; got {cfg.norm!r}")
    if not 0 <= cfg.trainable_layers <= 5:
        raise ConfigError(f"model.trainable_layers must be in 0..5, got {cfg.trainable_layers}")
    if cfg.num_classes < 2:
        raise ConfigError(f"model.num_classes counts the background too: at least 2, got {cfg.num_classes}")
    if cfg.min_size < 16 or cfg.max_size < cfg.min_size:
        raise ConfigError(f"model.min_size/max_size: expected 16 <= min_size <= max_size, got {cfg.min_size}, "
                          f"{cfg.max_size}")  # fmt: skip


def build_body(cfg: BackboneConfig) -> nn.Module:
    """The ResNet trunk of a detector (torchvision's ``backbone.body``): no classifier, batch norm frozen or not,
    the lowest stages frozen per ``trainable_layers``."""
    from deepkit.models.registry import create_model
    from deepkit.nn.fpn import freeze_batchnorm

    overrides = {"in_channels": cfg.in_channels, "num_classes": 1}
    if cfg.backbone_layers is not None:
        overrides["layers"] = list(cfg.backbone_layers)
    if cfg.backbone_widths is not None:
        overrides["widths"] = list(cfg.backbone_widths)
    if cfg.norm == "groupnorm":
        overrides["norm"] = "groupnorm"
    body = create_model(cfg.backbone, **overrides)
    if not hasattr(body, "feature_info") or getattr(body.cfg, "stem", "imagenet") != "imagenet":
        raise ConfigError(f"model.backbone={cfg.backbone!r}: a detector needs a ResNet with the ImageNet stem "
                          "(resnet18, resnet34, resnet50)")  # fmt: skip
    body.fc = None  # torchvision's body has no classifier: its checkpoints have no fc.* keys
    if cfg.norm == "frozen_batchnorm":
        freeze_batchnorm(body, cfg.frozen_bn_eps)
    train = ["layer4", "layer3", "layer2", "layer1", "conv1"][: cfg.trainable_layers]
    if cfg.trainable_layers == 5:
        train.append("bn1")
    for name, p in body.named_parameters():
        if all(not name.startswith(t) for t in train):
            p.requires_grad_(False)
    return body


class DetectionTransform(nn.Module):
    """torchvision's ``GeneralizedRCNNTransform``: normalize, resize (short side ``min_size``, long side at most
    ``max_size``, bilinear), pad into one batch (multiple of ``size_divisible``); boxes follow the resize, and
    :meth:`postprocess` maps detections back to each input image's pixels."""

    def __init__(self, min_size: int, max_size: int, mean: list[float], std: list[float], size_divisible: int = 32):
        super().__init__()
        self.min_size, self.max_size, self.size_divisible = min_size, max_size, size_divisible
        self.register_buffer("mean", torch.tensor(mean).reshape(-1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).reshape(-1, 1, 1), persistent=False)

    def resize(self, image: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[-2:]
        scale = min(self.min_size / float(min(h, w)), self.max_size / float(max(h, w)))
        out = F.interpolate(
            image[None], size=None, scale_factor=scale, mode="bilinear", recompute_scale_factor=True,
            align_corners=False,
        )[0]  # fmt: skip
        return out

    def forward(
        self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]] | None = None
    ) -> tuple[torch.Tensor, list[tuple[int, int]], list[dict[str, torch.Tensor]] | None]:
        sized, sizes, out_targets = [], [], [] if targets is not None else None
        for i, img in enumerate(images):
            img = (img - self.mean.to(img)) / self.std.to(img)
            h, w = img.shape[-2:]
            resized = self.resize(img)
            if targets is not None:
                t = dict(targets[i])
                rh, rw = resized.shape[-2:]
                ratio_h = torch.tensor(rh, dtype=torch.float32) / torch.tensor(h, dtype=torch.float32)
                ratio_w = torch.tensor(rw, dtype=torch.float32) / torch.tensor(w, dtype=torch.float32)
                b = t["boxes"]
                t["boxes"] = torch.stack(
                    [b[:, 0] * ratio_w, b[:, 1] * ratio_h, b[:, 2] * ratio_w, b[:, 3] * ratio_h], dim=1
                )
                out_targets.append(t)
            sized.append(resized)
            sizes.append((int(resized.shape[-2]), int(resized.shape[-1])))
        d = float(self.size_divisible)
        max_h = int(math.ceil(max(s[0] for s in sizes) / d) * d)
        max_w = int(math.ceil(max(s[1] for s in sizes) / d) * d)
        batch = sized[0].new_zeros((len(sized), sized[0].shape[0], max_h, max_w))
        for img, pad in zip(sized, batch, strict=True):
            pad[:, : img.shape[1], : img.shape[2]].copy_(img)
        return batch, sizes, out_targets

    @staticmethod
    def postprocess(
        detections: list[dict[str, torch.Tensor]], sizes: list[tuple[int, int]], original: list[tuple[int, int]]
    ) -> list[dict[str, torch.Tensor]]:
        for det, (h, w), (oh, ow) in zip(detections, sizes, original, strict=True):
            ratio_h = torch.tensor(oh, dtype=torch.float32) / torch.tensor(h, dtype=torch.float32)
            ratio_w = torch.tensor(ow, dtype=torch.float32) / torch.tensor(w, dtype=torch.float32)
            b = det["boxes"]
            det["boxes"] = torch.stack(
                [b[:, 0] * ratio_w, b[:, 1] * ratio_h, b[:, 2] * ratio_w, b[:, 3] * ratio_h], dim=1
            )
        return detections


def make_transform(cfg: BackboneConfig) -> DetectionTransform:
    mean, std = cfg.image_mean, cfg.image_std
    if mean is None:
        mean = IMAGENET_MEAN if cfg.in_channels == 3 else [sum(IMAGENET_MEAN) / 3] * cfg.in_channels
    if std is None:
        std = IMAGENET_STD if cfg.in_channels == 3 else [sum(IMAGENET_STD) / 3] * cfg.in_channels
    if len(mean) != cfg.in_channels or len(std) != cfg.in_channels:
        raise ConfigError(f"model.image_mean/image_std need {cfg.in_channels} values (one per channel), got "
                          f"{len(mean)} and {len(std)}")  # fmt: skip
    return DetectionTransform(cfg.min_size, cfg.max_size, mean, std, cfg.size_divisible)


class Detector(nn.Module):
    """Base class of the detectors: input checks, the transform around the detector proper, ``example_input``.

    Subclasses implement ``detect(batch, sizes, targets)`` returning ``(losses, detections)`` for a normalized,
    padded batch (``targets`` in the batch's pixels; detections likewise).
    """

    cfg: BackboneConfig
    transform: DetectionTransform

    def check_inputs(self, images, targets) -> None:
        """One-line errors for what does not fit the API (naming what was received and what is expected)."""
        if not isinstance(images, list | tuple) or not images:
            got = f"a tensor of shape {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images)
            raise ShapeError(f"a detector takes a non-empty list of (C, H, W) image tensors; got {got}")
        for i, img in enumerate(images):
            if not isinstance(img, torch.Tensor) or img.ndim != 3 or img.shape[0] != self.cfg.in_channels:
                shape = tuple(img.shape) if isinstance(img, torch.Tensor) else type(img).__name__
                raise ShapeError(f"image {i}: expected a ({self.cfg.in_channels}, H, W) tensor, got {shape}")
        if self.training:
            if targets is None:
                raise ShapeError("in train mode a detector needs targets: a list of {'boxes', 'labels'} per image")
            if len(targets) != len(images):
                raise ShapeError(f"{len(images)} images but {len(targets)} targets; expected one target per image")
            for i, t in enumerate(targets):
                b, lab = t.get("boxes"), t.get("labels")
                if b is None or lab is None or b.ndim != 2 or b.shape[-1] != 4 or lab.shape != b.shape[:1]:
                    got = {k: tuple(v.shape) for k, v in t.items() if isinstance(v, torch.Tensor)}
                    raise ShapeError(f"target {i}: expected boxes (N, 4) and labels (N,), got {got}")
                if b.numel() and bool(((b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1])).any()):
                    bad = b[(b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1])][0].tolist()
                    raise ShapeError(f"target {i}: box {bad} has no area; expected x2 > x1 and y2 > y1 (xyxy)")
                if lab.numel() and (int(lab.min()) < 1 or int(lab.max()) >= self.cfg.num_classes):
                    raise ShapeError(
                        f"target {i}: labels {int(lab.min())}..{int(lab.max())}, expected 1..{self.cfg.num_classes - 1}"
                        " (0 is the background)"
                    )

    def forward(self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]] | None = None):
        self.check_inputs(images, targets)
        original = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        batch, sizes, targets = self.transform(list(images), targets if self.training else None)
        losses, detections = self.detect(batch, sizes, targets)
        if self.training:
            return losses
        return self.transform.postprocess(detections, sizes, original)

    def detect(self, batch, sizes, targets):  # pragma: no cover - abstract
        raise NotImplementedError

    def postprocess_thresholds(self) -> tuple[float, float]:
        """(score threshold, NMS IoU threshold) of the eval-mode post-processing."""
        return self.cfg.score_thresh, self.cfg.nms_thresh

    def set_postprocess_thresholds(self, score: float, nms: float) -> None:
        self.cfg.score_thresh, self.cfg.nms_thresh = score, nms

    def example_input(self, batch_size: int = 2) -> dict[str, list]:
        """``{"images": [...], "targets": [...]}``: ``batch_size`` random images of different sizes (around 64 px)
        with two boxes each (classes 1 and num_classes - 1)."""
        g = example_generator()
        dev = model_device(self)
        images, targets = [], []
        for i in range(batch_size):
            h, w = 64 + 8 * (i % 3), 80 - 8 * (i % 2)
            images.append(torch.rand(self.cfg.in_channels, h, w, generator=g).to(dev))
            x1 = torch.rand(2, generator=g) * (w / 2)
            y1 = torch.rand(2, generator=g) * (h / 2)
            size = 8 + torch.rand(2, generator=g) * 20
            boxes = torch.stack([x1, y1, x1 + size, y1 + size], 1)
            labels = torch.tensor([1, self.cfg.num_classes - 1])
            targets.append({"boxes": boxes.to(dev), "labels": labels.to(dev)})
        return {"images": images, "targets": targets}

    # --- export: the eval-mode post-processing with fixed shapes ---------------------------------------------------
    def export_candidates(
        self, batch: torch.Tensor, size: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The candidates the eval-mode post-processing hands to its final NMS, as fixed-size tensors: ``boxes``
        ``(B, N, 4)`` in the batch's pixels, ``scores`` ``(B, N)`` (``nms_export.INVALID`` where eager PyTorch
        would have dropped the candidate: below the score threshold, too small) and ``labels`` ``(B, N)``. Every
        image of ``batch`` has the resized size ``size``."""
        raise NotImplementedError  # pragma: no cover - abstract

    def export_limits(self) -> tuple[float, int]:
        """(NMS IoU threshold, detections kept per image) of the final NMS."""
        return self.cfg.nms_thresh, self.cfg.detections_per_img


def take_rows(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``x`` ``(B, M, C)`` gathered at ``idx`` ``(B, k)`` -> ``(B, k, C)``."""
    return torch.gather(x, 1, idx[..., None].expand(-1, -1, x.shape[-1]))


def level_top(scores: torch.Tensor, thresh: float, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` best scores of one level above ``thresh`` (``(B, M)`` -> values and indices ``(B, min(k, M))``):
    what ``scores[scores > thresh].topk(k)`` keeps, with the slots past the last one above the threshold marked
    ``INVALID`` rather than cut off."""
    from deepkit.nn.nms_export import INVALID

    masked = torch.where(scores > thresh, scores, torch.full_like(scores, INVALID))
    return masked.topk(min(k, scores.shape[1]), dim=1)


def too_small(boxes: torch.Tensor, min_size: float) -> torch.Tensor:
    """``remove_small_boxes``' test as a mask: True where a side is shorter than ``min_size``."""
    return ((boxes[..., 2] - boxes[..., 0]) < min_size) | ((boxes[..., 3] - boxes[..., 1]) < min_size)


class DetectionExport(nn.Module):
    """A detector from raw images to fixed-size detections, for ``deepkit export`` and ``deepkit serve``.

    Input ``image`` ``(B, C, H, W)`` in [0, 1], H × W fixed at export. Inside: the detector's normalization, resize
    and padding, its heads, box decoding, the score threshold, per-class NMS (``deepkit::batched_nms_mask``: ONNX's
    ``NonMaxSuppression`` in an ONNX export) and the cut to ``detections_per_img``. Outputs, best first: ``boxes``
    ``(B, D, 4)`` xyxy in the input's pixels, ``scores`` ``(B, D)``, ``labels`` ``(B, D)`` class indices (0 = the
    first object class; the background is dropped as ``predict`` drops it), ``count`` ``(B,)`` the number of
    real detections; slots past ``count`` hold boxes and scores 0 and label -1.
    """

    def __init__(self, model: Detector, height: int, width: int):
        super().__init__()
        self.model, self.height, self.width = model, height, width
        t = model.transform
        scale = min(t.min_size / float(min(height, width)), t.max_size / float(max(height, width)))
        self.scale = scale
        self.resized = (int(math.floor(height * scale)), int(math.floor(width * scale)))
        d = float(t.size_divisible)
        self.padded = (int(math.ceil(self.resized[0] / d) * d), int(math.ceil(self.resized[1] / d) * d))

    def forward(self, image: torch.Tensor):
        from deepkit.nn.nms_export import INVALID, top_detections

        t = self.model.transform
        x = (image - t.mean) / t.std
        x = F.interpolate(x, scale_factor=self.scale, mode="bilinear", recompute_scale_factor=True, align_corners=False)
        rh, rw = self.resized
        batch = F.pad(x, (0, self.padded[1] - rw, 0, self.padded[0] - rh))
        boxes, scores, labels = self.model.export_candidates(batch, (rh, rw))
        iou, max_det = self.model.export_limits()
        keep = torch.ops.deepkit.batched_nms_mask(boxes, scores, labels, float(iou), int(self.model.cfg.num_classes))
        top = top_detections(boxes, scores, labels, keep, max_det)
        objects = top["valid"] & (top["labels"] >= 1)  # label 0, the background, is dropped after the cut
        top = top_detections(
            top["boxes"], torch.where(objects, top["scores"], INVALID), top["labels"], objects, max_det
        )
        ratio_h = torch.tensor(self.height, dtype=torch.float32) / torch.tensor(rh, dtype=torch.float32)
        ratio_w = torch.tensor(self.width, dtype=torch.float32) / torch.tensor(rw, dtype=torch.float32)
        b = top["boxes"]
        b = torch.stack([b[..., 0] * ratio_w, b[..., 1] * ratio_h, b[..., 2] * ratio_w, b[..., 3] * ratio_h], -1)
        valid = top["valid"]
        labels = torch.where(valid, top["labels"] - 1, torch.full_like(top["labels"], -1))
        return b, top["scores"], labels, valid.sum(1)

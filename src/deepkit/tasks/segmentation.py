"""Semantic segmentation: per-pixel class logits, losses that honour the ignore label, IoU/Dice metrics, tiled
inference.

A batch is ``(images (B, C, H, W) float, masks (B, H, W) int64)``: class indices 0..K-1, ``IGNORE`` (255) for
pixels no loss or metric counts (a dataset's ignore label, the padding of odd-sized images). Models return
``{"out": logits, "aux": logits}`` at the input size (:mod:`deepkit.models._segmentation`); the auxiliary output adds
``aux_weight`` × its loss during training (torchvision's reference recipe: 0.5).

Losses (``task.loss``): ``ce`` (cross-entropy, ``ignore_index`` and class weights), ``dice`` (kornia's soft Dice,
averaged over the classes present), ``focal`` (kornia's focal loss, gamma ``focal_gamma``), or a sum such as
``ce+dice`` (each term weighted 1).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from deepkit.data.preprocess import Preprocessing
from deepkit.errors import ConfigError
from deepkit.tasks.base import Task

IGNORE = 255  # the mask value of ignored pixels, inside deepkit (data sets' own ignore labels are mapped to it)
LOSSES = ("ce", "dice", "focal")


def parse_loss(spec: str) -> list[str]:
    """``"ce+dice"`` -> ``["ce", "dice"]``; an unknown term is a one-line error."""
    terms = [t.strip() for t in str(spec).split("+") if t.strip()]
    bad = [t for t in terms if t not in LOSSES]
    if not terms or bad:
        raise ConfigError(f"task.loss: expected one of {', '.join(LOSSES)} or a sum like ce+dice, got {spec!r}")
    return terms


def segmentation_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    terms: list[str],
    weight: torch.Tensor | None = None,
    gamma: float = 2.0,
) -> torch.Tensor:
    """Sum of the loss ``terms`` for logits (B, K, H, W) and targets (B, H, W) with :data:`IGNORE` pixels left out."""
    import kornia.losses as kl

    total = logits.new_zeros(())
    for term in terms:
        if term == "ce":
            total = total + F.cross_entropy(logits, target, weight=weight, ignore_index=IGNORE)
        elif term == "dice":
            total = total + kl.dice_loss(logits, target, average="macro", weight=weight, ignore_index=IGNORE)
        else:
            total = total + kl.focal_loss(logits, target, alpha=None, gamma=gamma, reduction="mean", weight=weight,
                                          ignore_index=IGNORE)  # fmt: skip
    return total


def tile_starts(size: int, tile: int, stride: int) -> list[int]:
    """Start offsets of tiles of ``tile`` px covering ``size`` px with steps of at most ``stride``."""
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile + 1, stride))
    if starts[-1] != size - tile:
        starts.append(size - tile)
    return starts


@torch.no_grad()
def sliding_window(model: nn.Module, x: torch.Tensor, tile: int, overlap: float = 0.25, batch: int = 8) -> torch.Tensor:
    """Logits (B, K, H, W) of ``model`` over images larger than its training size: ``tile``×``tile`` windows moved
    by ``tile × (1 - overlap)``, the logits of overlapping windows averaged. Images smaller than a tile are padded
    (replicate) and the logits cropped back.

    Args:
        model: returns ``{"out": (N, K, tile, tile)}`` for ``(N, C, tile, tile)``.
        x: (B, C, H, W) images.
        tile: window side, px.
        overlap: fraction of a window shared with the next, in [0, 1).
        batch: windows per forward pass.
    """
    if not 0 <= overlap < 1 or tile < 1:
        raise ConfigError(f"tiled inference: expected tile >= 1 and overlap in [0, 1), got {tile}, {overlap}")
    b, _, h, w = x.shape
    ph, pw = max(0, tile - h), max(0, tile - w)
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    H, W = x.shape[-2:]
    stride = max(1, int(round(tile * (1 - overlap))))
    boxes = [(y0, x0) for y0 in tile_starts(H, tile, stride) for x0 in tile_starts(W, tile, stride)]
    out = count = None
    for i in range(b):
        for k in range(0, len(boxes), batch):
            chunk = boxes[k : k + batch]
            crops = torch.stack([x[i, :, y0 : y0 + tile, x0 : x0 + tile] for y0, x0 in chunk])
            logits = model(crops)["out"].float()  # (n, K, tile, tile)
            if out is None:
                out = logits.new_zeros(b, logits.shape[1], H, W)
                count = logits.new_zeros(1, 1, H, W)
            for (y0, x0), lg in zip(chunk, logits, strict=True):
                out[i, :, y0 : y0 + tile, x0 : x0 + tile] += lg
                if i == 0:
                    count[0, 0, y0 : y0 + tile, x0 : x0 + tile] += 1
    return (out / count)[..., :h, :w]


class SegmentationTask(Task):
    """Per-pixel classification into ``class_names``; ``val_miou`` picks the best checkpoint."""

    name = "segmentation"
    monitor = "val_miou"
    monitor_mode = "max"

    def __init__(
        self,
        model: nn.Module,
        class_names: list[str],
        preprocessing: Preprocessing | None = None,
        loss: str = "ce",
        class_weights: list[float] | None = None,
        aux_weight: float = 0.5,
        focal_gamma: float = 2.0,
        background: int | None = None,
        tile: int | None = None,
        tile_overlap: float = 0.25,
    ):
        super().__init__(model, preprocessing)
        self.class_names = list(class_names)
        self.terms = parse_loss(loss)
        k = len(self.class_names)
        if class_weights is not None and (len(class_weights) != k or min(class_weights) < 0):
            raise ConfigError(f"task.class_weights: expected {k} non-negative numbers (one per class: "
                              f"{', '.join(self.class_names)}), got {class_weights}")  # fmt: skip
        self.class_weights = None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32)
        if aux_weight < 0:
            raise ConfigError(f"task.aux_weight must be >= 0, got {aux_weight}")
        self.aux_weight, self.focal_gamma, self.background = aux_weight, focal_gamma, background
        if tile is not None and tile < 8:
            raise ConfigError(f"task.tile must be at least 8 px (or null: whole images), got {tile}")
        self.tile, self.tile_overlap = tile, tile_overlap
        self.per_class = True  # IoU per class among the metrics (the family turns it off in epochs of many classes)

    def make_metrics(self):
        from deepkit.metrics.segmentation import confusion_metric

        return confusion_metric(len(self.class_names), IGNORE)

    def _weight(self, like: torch.Tensor) -> torch.Tensor | None:
        return None if self.class_weights is None else self.class_weights.to(like.device, like.dtype)

    def loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return segmentation_loss(outputs, target, self.terms, self._weight(outputs), self.focal_gamma)

    def training_step(self, batch) -> dict[str, torch.Tensor]:
        x, y = batch
        out = self.model(x)
        loss = self.loss(out["out"], y)
        logs = {}
        if "aux" in out and self.aux_weight > 0:
            aux = self.loss(out["aux"], y)
            logs["aux_loss"] = aux.detach()
            loss = loss + self.aux_weight * aux
        with torch.no_grad():
            valid = y != IGNORE
            correct = (out["out"].argmax(1) == y) & valid
            logs["pixel_accuracy"] = correct.sum() / valid.sum().clamp(min=1)
        return {"loss": loss, **logs}

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, K, H, W) logits: whole images, or tiles (``tile``) when an image is larger than a tile."""
        if self.tile is not None and max(x.shape[-2:]) > self.tile:
            return sliding_window(self.model, x, self.tile, self.tile_overlap)
        return self.model(x)["out"].float()

    @torch.no_grad()
    def validation_step(self, batch) -> dict[str, torch.Tensor]:
        x, y = batch
        logits = self.logits(x)
        self.metrics.update(logits, y)
        return {"loss": self.loss(logits, y)}

    @torch.no_grad()
    def predict_step(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(x).softmax(1)

    def compute_metrics(self) -> dict[str, float]:
        from deepkit.metrics.segmentation import scores_from_confusion

        out = scores_from_confusion(self.metrics.compute(), self.class_names, self.background)
        return out if self.per_class else {k: v for k, v in out.items() if not k.startswith("iou_") or k == "iou_fg"}

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "loss": "+".join(self.terms), "classes": len(self.class_names)}


class SegmentationInference(nn.Module):
    """Images (B, C, H, W) in [0, 1] -> class probabilities (B, K, H, W) at the input size: what a segmentation
    predictor computes before its argmax (normalization, the optional resize and back), for ``deepkit export``."""

    def __init__(self, model: nn.Module, mean: list[float], std: list[float], resize: list[int] | None):
        super().__init__()
        self.model, self.resize = model, None if resize is None else tuple(resize)
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[-2:]
        x = image.float()
        if self.resize is not None:
            x = F.interpolate(x, size=self.resize, mode="bilinear", align_corners=False, antialias=True)
        logits = self.model((x - self.mean) / self.std)["out"].float()
        if self.resize is not None:
            logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
        return logits.softmax(1)

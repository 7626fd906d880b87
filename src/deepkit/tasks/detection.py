"""Object detection as a Task: the detector's loss dict is the loss, COCO evaluation (pycocotools) the metrics.

Batches are ``(images, targets)`` lists (``deepkit.data.detection_loader``). Training sums the model's losses
(``{"loss": sum, **parts}``; crowd regions are not trained on). Evaluation runs the model in eval mode and hands
ground truth and detections to :class:`~deepkit.metrics.coco.CocoEvaluator`; a detector in eval mode computes no
loss (torchvision's API), so there is no validation loss (the checkpoint monitor is ``val_map``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from deepkit.data.preprocess import Preprocessing
from deepkit.metrics.coco import CocoEvaluator
from deepkit.tasks.base import Task


def model_targets(targets: list[dict[str, torch.Tensor]]) -> list[dict[str, torch.Tensor]]:
    """What the detector trains on: boxes and labels, crowd regions left out."""
    out = []
    for t in targets:
        keep = ~t["iscrowd"] if "iscrowd" in t else slice(None)
        out.append({"boxes": t["boxes"][keep], "labels": t["labels"][keep]})
    return out


def without_background(d: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A detector's output with label 0 (the background, which single-shot heads score too) dropped and labels
    shifted to class indices 0..K-1."""
    keep = d["labels"] >= 1
    return {"boxes": d["boxes"][keep].float(), "scores": d["scores"][keep].float(), "labels": d["labels"][keep] - 1}


class DetectionTask(Task):
    name = "detection"
    monitor = "val_map"
    monitor_mode = "max"

    def __init__(
        self,
        model: nn.Module,
        class_names: list[str],
        category_ids: list[int] | None = None,
        preprocessing: Preprocessing | None = None,
        per_class: bool = True,
    ):
        super().__init__(model, preprocessing)
        self.class_names, self.category_ids, self.per_class = list(class_names), category_ids, per_class
        self.full_metrics = True  # False during training epochs: the AP numbers only (see compute_metrics)
        self.evaluator = CocoEvaluator(self.class_names, category_ids)

    def training_step(self, batch) -> dict[str, torch.Tensor]:
        images, targets = batch
        losses = self.model(list(images), model_targets(targets))
        return {"loss": sum(losses.values()), **losses}

    @torch.no_grad()
    def detect(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """Detections per image (labels: class indices 0..K-1), in the images' pixels."""
        return [without_background(d) for d in self.model(list(images))]

    @torch.no_grad()
    def validation_step(self, batch) -> dict[str, torch.Tensor]:
        images, targets = batch
        for img, t, d in zip(images, targets, self.detect(images), strict=True):
            image_id = int(t["image_id"])
            h, w = img.shape[-2:]
            self.evaluator.add_ground_truth(
                image_id, w, h, t["boxes"].cpu().numpy(), (t["labels"] - 1).cpu().numpy(),
                t["iscrowd"].cpu().numpy(), t["area"].cpu().numpy(),
            )  # fmt: skip
            self.evaluator.add_detections(image_id, d["boxes"].cpu().numpy(), d["scores"].cpu().numpy(),
                                          d["labels"].cpu().numpy())  # fmt: skip
        return {}

    def compute_metrics(self) -> dict[str, float]:
        out = self.evaluator.compute()
        if not self.full_metrics:  # an epoch's validation: the six AP numbers (metrics.csv, curves)
            return {k: v for k, v in out.items() if k.startswith("map")}
        return out if self.per_class else {k: v for k, v in out.items() if not k.startswith("ap_")}

    def reset_metrics(self) -> None:
        self.evaluator.reset()

    def to(self, device: torch.device | str) -> DetectionTask:
        self.model.to(device)
        self._device = device
        return self

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "classes": len(self.class_names)}

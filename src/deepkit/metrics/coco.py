"""COCO box evaluation through pycocotools: mAP@[.5:.95], mAP@.5, mAP@.75, small/medium/large, per-class AP.

deepkit does not re-implement the COCO protocol (YOLOv5 #10966 found an 11-point gap in a re-implementation): the
ground truth and the detections are handed to ``pycocotools.cocoeval.COCOeval`` as COCO mappings and its own
numbers are read back. ``tests/metrics/test_coco_eval.py`` checks them against pycocotools run on the JSON files.

Boxes given here are xyxy in image pixels; COCO's are (x, y, width, height). A -1 from pycocotools (no ground
truth in a size range, e.g. no large objects) is reported as NaN.
"""

from __future__ import annotations

import contextlib
import io
import math
from typing import Any

import numpy as np

STATS = ("map", "map50", "map75", "map_small", "map_medium", "map_large",
         "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large")  # fmt: skip
TABLE_ROWS = [
    ("map", "AP @[IoU=0.50:0.95 | area=all | maxDets=100]"),
    ("map50", "AP @[IoU=0.50      | area=all | maxDets=100]"),
    ("map75", "AP @[IoU=0.75      | area=all | maxDets=100]"),
    ("map_small", "AP @[IoU=0.50:0.95 | area=small | maxDets=100]"),
    ("map_medium", "AP @[IoU=0.50:0.95 | area=medium | maxDets=100]"),
    ("map_large", "AP @[IoU=0.50:0.95 | area=large | maxDets=100]"),
    ("mar_1", "AR @[IoU=0.50:0.95 | area=all | maxDets=1]"),
    ("mar_10", "AR @[IoU=0.50:0.95 | area=all | maxDets=10]"),
    ("mar_100", "AR @[IoU=0.50:0.95 | area=all | maxDets=100]"),
    ("mar_small", "AR @[IoU=0.50:0.95 | area=small | maxDets=100]"),
    ("mar_medium", "AR @[IoU=0.50:0.95 | area=medium | maxDets=100]"),
    ("mar_large", "AR @[IoU=0.50:0.95 | area=large | maxDets=100]"),
]


def _xywh(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], 1)


def coco_detections(image_id: int, boxes, scores, labels, category_ids: list[int]) -> list[dict[str, Any]]:
    """Detections of one image as COCO results (``labels``: class indices into ``category_ids``)."""
    out = []
    for b, s, lab in zip(_xywh(boxes), np.asarray(scores).reshape(-1), np.asarray(labels).reshape(-1), strict=True):
        out.append({"image_id": int(image_id), "category_id": int(category_ids[int(lab)]),
                    "bbox": [round(float(v), 4) for v in b], "score": round(float(s), 6)})  # fmt: skip
    return out


class CocoEvaluator:
    """Collects ground truth and detections image by image, then runs COCOeval (bbox) once.

    Example:
        >>> ev = CocoEvaluator(["cat", "dog"])
        >>> ev.add_ground_truth(1, 640, 480, [[10, 10, 50, 60]], [0])
        >>> ev.add_detections(1, [[12, 10, 50, 58]], [0.9], [0])
        >>> round(ev.compute()["map50"], 3)
        1.0
    """

    def __init__(self, class_names: list[str], category_ids: list[int] | None = None):
        self.class_names = list(class_names)
        self.category_ids = list(category_ids) if category_ids else list(range(1, len(class_names) + 1))
        self.reset()

    def reset(self) -> None:
        self.images: dict[int, dict[str, Any]] = {}
        self.annotations: list[dict[str, Any]] = []
        self.results: list[dict[str, Any]] = []

    def add_ground_truth(self, image_id: int, width: int, height: int, boxes, labels, iscrowd=None, areas=None):
        """One image's objects: ``boxes`` xyxy, ``labels`` class indices, optional crowd flags and COCO areas."""
        image_id = int(image_id)
        self.images[image_id] = {"id": image_id, "width": int(width), "height": int(height)}
        xywh = _xywh(boxes)
        n = len(xywh)
        crowd = np.zeros(n, bool) if iscrowd is None else np.asarray(iscrowd, bool).reshape(n)
        area = xywh[:, 2] * xywh[:, 3] if areas is None else np.asarray(areas, np.float64).reshape(n)
        for b, lab, c, a in zip(xywh, np.asarray(labels).reshape(-1), crowd, area, strict=True):
            self.annotations.append({
                "id": len(self.annotations) + 1, "image_id": image_id, "category_id": self.category_ids[int(lab)],
                "bbox": [float(v) for v in b], "area": float(a), "iscrowd": int(c),
            })  # fmt: skip

    def add_detections(self, image_id: int, boxes, scores, labels) -> None:
        self.results += coco_detections(image_id, boxes, scores, labels, self.category_ids)

    def ground_truth(self) -> dict[str, Any]:
        cats = [{"id": i, "name": n} for i, n in zip(self.category_ids, self.class_names, strict=True)]
        return {"images": list(self.images.values()), "annotations": self.annotations, "categories": cats}

    def run(self):
        """The finished ``COCOeval`` object (evaluate + accumulate + summarize, its printing captured)."""
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        with contextlib.redirect_stdout(io.StringIO()):
            gt = COCO()
            gt.dataset = self.ground_truth()
            gt.createIndex()
            dt = gt.loadRes(self.results) if self.results else COCO()
            if not self.results:
                dt.dataset = {"images": gt.dataset["images"], "annotations": [], "categories": gt.dataset["categories"]}
                dt.createIndex()
            ev = COCOeval(gt, dt, "bbox")
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        return ev

    def compute(self) -> dict[str, float]:
        """``map``, ``map50``, ``map75``, ``map_small|medium|large``, ``mar_*`` (COCOeval.stats, -1 -> NaN) and
        ``ap_<class>`` (AP@[.5:.95] per class, NaN for a class without ground truth)."""
        if not self.images:
            return {k: float("nan") for k in STATS}
        ev = self.run()
        out = {k: (float(v) if v >= 0 else float("nan")) for k, v in zip(STATS, ev.stats, strict=True)}
        precision = ev.eval["precision"]  # (T IoUs, R recalls, K classes, A areas, M maxDets)
        for k, name in enumerate(self.class_names):
            p = precision[:, :, k, 0, -1]
            p = p[p > -1]
            out[f"ap_{name}"] = float(p.mean()) if p.size else float("nan")
        return out


def format_table(metrics: dict[str, float], class_names: list[str] | None = None) -> str:
    """The COCO summary table (pycocotools' twelve lines), then per-class AP when given."""
    lines = []
    for key, label in TABLE_ROWS:
        v = metrics.get(key, float("nan"))
        lines.append(f" Average {'Precision' if label.startswith('AP') else 'Recall   '}  {label[3:]} = "
                     + ("  n/a" if not math.isfinite(v) else f"{v:.3f}"))  # fmt: skip
    if class_names:
        lines.append(" per-class AP @[IoU=0.50:0.95]:")
        for name in class_names:
            v = metrics.get(f"ap_{name}", float("nan"))
            lines.append(f"   {name:<20} " + ("  n/a" if not math.isfinite(v) else f"{v:.3f}"))
    return "\n".join(lines)

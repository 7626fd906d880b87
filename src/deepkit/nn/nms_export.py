"""Non-maximum suppression that goes into an exported graph, with a fixed output shape.

Greedy NMS is sequential (each box's fate depends on the boxes kept before it), so a traced graph cannot unroll it
for thousands of candidates. Here it is one operator, ``deepkit::batched_nms_mask``, whose output has the shape of
its input: a keep mask ``(B, N)`` over ``B`` images of ``N`` candidate boxes each.

- Eager PyTorch (and a ``torch.export`` program, once ``deepkit.nn.nms_export`` is imported) runs
  :func:`deepkit.nn.boxes.batched_nms`, the NMS every detector uses.
- ``deepkit export --format onnx`` turns it into ONNX's own ``NonMaxSuppression`` (opset 10+), which onnxruntime
  runs with the same rule: candidates in descending score order, one class at a time, a box dropped when its IoU
  with a kept one of its class is greater than the threshold. ``tests/nn/test_nms_export.py`` checks that both
  keep the same boxes on random sets.

A candidate whose score is negative is not a candidate (padding, or below the score threshold): it is never kept
and never suppresses anything. Detectors build their fixed-size outputs from the mask with ``topk``
(:func:`top_detections`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from deepkit.nn import boxes as box_ops

INVALID = -1.0  # the score of a slot that is not a candidate


@torch.library.custom_op("deepkit::batched_nms_mask", mutates_args=())
def batched_nms_mask(
    boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, iou_threshold: float, num_classes: int
) -> torch.Tensor:
    """Keep mask ``(B, N)`` of greedy per-class NMS over ``boxes`` ``(B, N, 4)`` (xyxy), ``scores`` ``(B, N)``
    (negative: not a candidate) and ``labels`` ``(B, N)`` in ``0..num_classes-1``."""
    keep = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
    for i in range(scores.shape[0]):
        valid = torch.where(scores[i] >= 0)[0]
        kept = box_ops.batched_nms(boxes[i, valid], scores[i, valid], labels[i, valid], iou_threshold)
        keep[i, valid[kept]] = True
    return keep


@batched_nms_mask.register_fake
def _(boxes, scores, labels, iou_threshold, num_classes):
    return torch.empty(scores.shape, dtype=torch.bool, device=scores.device)


def _onnx_batched_nms_mask(boxes, scores, labels, iou_threshold: float, num_classes: int):
    """ONNX translation: per-class scores ``(B, K, N)`` (a box scores only in its own class) into
    ``NonMaxSuppression``; its selected (batch, class, box) triples scattered into a ``(B, N)`` mask."""
    from onnxscript import opset18 as op

    BOOL = 9  # onnx.TensorProto.BOOL

    classes = op.Range(op.Constant(value_int=0), op.Constant(value_int=num_classes), op.Constant(value_int=1))
    own = op.Equal(op.Unsqueeze(labels, [1]), op.Unsqueeze(op.CastLike(classes, labels), [0, 2]))  # (B, K, N)
    per_class = op.Where(own, op.Unsqueeze(scores, [1]), op.CastLike(op.Constant(value_float=INVALID), scores))
    n = op.Shape(scores, start=1, end=2)
    selected = op.NonMaxSuppression(
        boxes,
        per_class,
        n,  # at most every box of a class
        op.Constant(value_floats=[iou_threshold]),
        op.Constant(value_floats=[INVALID / 2]),  # scores above -0.5: every real candidate (scores are >= 0)
    )  # (S, 3): batch, class, box
    where = op.Gather(selected, op.Constant(value_ints=[0, 2]), axis=1)  # (S, 2): batch, box
    ones = op.Expand(op.Constant(value_ints=[1]), op.Shape(selected, start=0, end=1))
    empty = op.Expand(op.Constant(value_ints=[0]), op.Shape(scores))
    return op.Cast(op.ScatterND(empty, where, ones), to=BOOL)


def onnx_translations() -> dict[Callable, Callable]:
    """deepkit's own operators -> their ONNX translations (``torch.onnx.export(custom_translation_table=...)``)."""
    return {torch.ops.deepkit.batched_nms_mask.default: _onnx_batched_nms_mask}


def top_detections(
    boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, keep: torch.Tensor, k: int
) -> dict[str, Any]:
    """The ``k`` highest-scoring kept candidates of each image, best first, as fixed-size tensors: ``boxes``
    ``(B, k, 4)``, ``scores`` ``(B, k)``, ``labels`` ``(B, k)`` and ``valid`` ``(B, k)`` (False: padding; its box
    and score are 0 and its label -1)."""
    s = torch.where(keep, scores, torch.full_like(scores, INVALID))
    n = s.shape[1]
    if n < k:  # fewer candidates than slots: pad with non-candidates
        s = torch.cat([s, s.new_full((s.shape[0], k - n), INVALID)], 1)
        boxes = torch.cat([boxes, boxes.new_zeros((boxes.shape[0], k - n, 4))], 1)
        labels = torch.cat([labels, labels.new_zeros((labels.shape[0], k - n))], 1)
    top, idx = s.topk(k, dim=1)
    valid = top >= 0
    out_boxes = torch.gather(boxes, 1, idx[..., None].expand(-1, -1, 4))
    return {
        "boxes": torch.where(valid[..., None], out_boxes, torch.zeros_like(out_boxes)),
        "scores": torch.where(valid, top, torch.zeros_like(top)),
        "labels": torch.where(valid, torch.gather(labels, 1, idx), torch.full_like(idx, -1)),
        "valid": valid,
    }

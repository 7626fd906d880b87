"""The NMS that goes into exported detectors (``deepkit::batched_nms_mask``): in eager PyTorch it is
``boxes.batched_nms``; exported to ONNX it becomes ``NonMaxSuppression``, and onnxruntime must keep exactly the same
boxes on random, heavily overlapping sets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepkit.nn import boxes as box_ops
from deepkit.nn.nms_export import INVALID, batched_nms_mask, onnx_translations, top_detections


def random_sets(batch: int, n: int, seed: int, classes: int = 3):
    """Boxes crowded into a 60-px square (most pairs overlap), some slots not candidates (score -1)."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(batch, n, 2, generator=g) * 40
    wh = torch.rand(batch, n, 2, generator=g) * 20 + 0.5
    boxes = torch.cat([xy, xy + wh], -1)
    scores = torch.rand(batch, n, generator=g)
    scores[torch.rand(batch, n, generator=g) < 0.2] = INVALID
    labels = torch.randint(0, classes, (batch, n), generator=g)
    return boxes, scores, labels


def reference(boxes, scores, labels, iou):
    keep = torch.zeros(scores.shape, dtype=torch.bool)
    for i in range(len(scores)):
        valid = torch.where(scores[i] >= 0)[0]
        keep[i, valid[box_ops.batched_nms(boxes[i, valid], scores[i, valid], labels[i, valid], iou)]] = True
    return keep


def test_the_eager_operator_is_batched_nms():
    boxes, scores, labels = random_sets(2, 60, seed=1)
    keep = batched_nms_mask(boxes, scores, labels, 0.5, 3)
    assert torch.equal(keep, reference(boxes, scores, labels, 0.5))
    assert 0 < keep.sum() < (scores >= 0).sum()  # some boxes suppressed, some kept: the check compares something


class NMS(torch.nn.Module):
    def __init__(self, iou: float):
        super().__init__()
        self.iou = iou

    def forward(self, boxes, scores, labels):
        return torch.ops.deepkit.batched_nms_mask(boxes, scores, labels, self.iou, 3)


@pytest.mark.parametrize("iou", [0.45])
def test_onnx_nonmaxsuppression_keeps_the_same_boxes(iou, tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="the serve extra is not installed: pip install 'deepkit[serve]'")
    from torch.export import Dim

    b, n = Dim("b"), Dim("n")
    shapes = {"boxes": {0: b, 1: n}, "scores": {0: b, 1: n}, "labels": {0: b, 1: n}}
    program = torch.onnx.export(
        NMS(iou).eval(),
        random_sets(2, 30, seed=0),
        dynamo=True,
        input_names=["boxes", "scores", "labels"],
        dynamic_shapes=shapes,
        custom_translation_table=onnx_translations(),
        verbose=False,
    )
    program.save(str(tmp_path / "nms.onnx"))
    session = ort.InferenceSession(str(tmp_path / "nms.onnx"), providers=["CPUExecutionProvider"])
    kept = 0
    for seed in range(1, 16):  # sets the exporter never saw, of other sizes
        boxes, scores, labels = random_sets(1 + seed % 3, 50 + 23 * seed, seed)
        want = reference(boxes, scores, labels, iou).numpy()
        got = session.run(None, {"boxes": boxes.numpy(), "scores": scores.numpy(), "labels": labels.numpy()})[0]
        assert got.dtype == np.bool_ and np.array_equal(got, want), f"seed {seed}: {(got != want).sum()} differ"
        kept += int(want.sum())
    assert kept > 0


def test_top_detections_pads_and_orders():
    boxes = torch.arange(12, dtype=torch.float32).reshape(1, 3, 4)
    scores = torch.tensor([[0.2, 0.9, 0.5]])
    keep = torch.tensor([[True, True, False]])
    top = top_detections(boxes, scores, torch.tensor([[1, 2, 3]]), keep, 4)
    assert top["scores"].tolist() == [[pytest.approx(0.9), pytest.approx(0.2), 0.0, 0.0]]
    assert top["labels"].tolist() == [[2, 1, -1, -1]] and top["valid"].tolist() == [[True, True, False, False]]
    assert torch.equal(top["boxes"][0, 0], boxes[0, 1]) and not top["boxes"][0, 2:].any()


def test_roi_align_per_image_equals_roi_align():
    """The fixed-shape RoIAlign an exported Faster R-CNN uses gives roi_align's numbers (sampling ratio 2)."""
    from deepkit.nn.roi_align import roi_align, roi_align_per_image

    g = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 5, 16, 20, generator=g)
    xy = torch.rand(2, 7, 2, generator=g) * 60
    boxes = torch.cat([xy, xy + torch.rand(2, 7, 2, generator=g) * 30 + 0.2], -1)  # some past the map's edge
    got = roi_align_per_image(feats, boxes, (7, 7), 0.25, (2, 2))
    want = roi_align(feats, list(boxes), (7, 7), 0.25, sampling_ratio=2)
    assert got.shape == (14, 5, 7, 7) and torch.allclose(got, want, atol=1e-5)

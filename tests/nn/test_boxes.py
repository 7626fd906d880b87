"""Detection building blocks (deepkit.nn.boxes, anchors, roi_align, fpn): formulas on hand-made cases, and equality
with torchvision.ops on random inputs where torchvision imports (its compiled ops need a matching CUDA build, so
those tests skip on this CPU-only machine)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from deepkit.nn import boxes as B
from deepkit.nn.anchors import AnchorGenerator, base_anchors
from deepkit.nn.fpn import FeaturePyramidNetwork, FrozenBatchNorm2d, LastLevelMaxPool, LastLevelP6P7, freeze_batchnorm
from deepkit.nn.roi_align import LevelMapper, MultiScaleRoIAlign, _roi_align_group, _roi_align_separable, roi_align


def torchvision_ops():
    try:
        import torchvision.ops as ops

        ops.nms(torch.zeros(1, 4), torch.zeros(1), 0.5)  # the compiled op itself must run
        return ops
    except Exception as e:  # noqa: BLE001 - any failure to import or run means: no reference here
        pytest.skip(f"torchvision.ops is not usable here ({type(e).__name__}: {str(e)[:80]}); reference test skipped")


def random_boxes(n: int, g: torch.Generator, size: float = 100.0) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=g) * size
    wh = torch.rand(n, 2, generator=g) * size / 3 + 1
    return torch.cat([xy, xy + wh], 1)


# --- box formulas ----------------------------------------------------------------------------------------------------
def test_box_convert_round_trips_and_matches_hand_values():
    xyxy = torch.tensor([[10.0, 20.0, 30.0, 60.0]])
    assert B.box_convert(xyxy, "xyxy", "xywh").tolist() == [[10, 20, 20, 40]]
    assert B.box_convert(xyxy, "xyxy", "cxcywh").tolist() == [[20, 40, 20, 40]]
    for fmt in ("xywh", "cxcywh"):
        assert torch.equal(B.box_convert(B.box_convert(xyxy, "xyxy", fmt), fmt, "xyxy"), xyxy)
    with pytest.raises(Exception, match="box format"):
        B.box_convert(xyxy, "xyxy", "yolo")


def test_iou_and_giou_on_hand_made_boxes():
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    b = torch.tensor([[5.0, 5.0, 15.0, 15.0], [0.0, 0.0, 10.0, 10.0], [20.0, 0.0, 30.0, 10.0]])
    iou = B.box_iou(a, b)
    assert torch.allclose(iou, torch.tensor([[25 / 175, 1.0, 0.0]]))
    giou = B.generalized_box_iou(a, b)
    # hulls: 15x15 = 225, 10x10, 30x10 = 300; union 175, 100, 200
    assert torch.allclose(giou, torch.tensor([[25 / 175 - (225 - 175) / 225, 1.0, 0.0 - (300 - 200) / 300]]))
    loss = B.generalized_box_iou_loss(a.expand(3, 4), b)
    assert torch.allclose(loss, 1 - giou[0], atol=1e-6)


def test_nms_keeps_the_best_of_each_overlapping_group():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9.0], [21, 21, 30, 30.0]])
    scores = torch.tensor([0.9, 0.95, 0.5, 0.3, 0.6])
    # IoU(0,1) = 81/119 = 0.68; IoU(2,4) = 81/100; IoU(0,3) = 0.9; IoU(1,3) = 72/118 = 0.61
    assert B.nms(boxes, scores, 0.5).tolist() == [1, 4]
    assert B.nms(boxes, scores, 0.7).tolist() == [1, 0, 4]  # 0 survives 0.68, 3 is suppressed by 0 (0.9)
    assert B.nms(boxes, scores, 0.95).tolist() == [1, 0, 4, 2, 3]
    assert B.nms(torch.zeros(0, 4), torch.zeros(0), 0.5).numel() == 0
    # categories never suppress each other
    assert B.batched_nms(boxes, scores, torch.tensor([0, 1, 0, 0, 0]), 0.5).tolist() == [1, 0, 4]


def test_box_coder_round_trip_and_hand_values():
    coder = B.BoxCoder((10.0, 10.0, 5.0, 5.0))
    ref = torch.tensor([[0.0, 0.0, 10.0, 20.0]])
    gt = torch.tensor([[5.0, 0.0, 25.0, 20.0]])
    codes = coder.encode_single(gt, ref)
    assert torch.allclose(codes, torch.tensor([[10 * 10 / 10, 0.0, 5 * math.log(2), 0.0]]))
    assert torch.allclose(coder.decode_single(codes, ref), gt)
    assert coder.decode(codes.repeat(1, 3), [ref]).shape == (1, 3, 4)  # one box per class
    huge = coder.decode_single(torch.tensor([[0.0, 0.0, 1000.0, 1000.0]]), ref)
    assert torch.isfinite(huge).all() and (huge[0, 2] - huge[0, 0]) <= 10 * 1000 / 16 + 1e-3  # clipped log-scale


def test_matcher_thresholds_and_low_quality_matches():
    iou = torch.tensor([[0.9, 0.5, 0.1, 0.35], [0.1, 0.2, 0.25, 0.0]])
    assert B.Matcher(0.7, 0.3)(iou).tolist() == [0, -2, -1, -2]
    # the second box's best prediction (0.25, column 2) is kept although below the thresholds
    assert B.Matcher(0.7, 0.3, allow_low_quality_matches=True)(iou).tolist() == [0, -2, 1, -2]


def test_sampler_respects_the_budget_and_fraction():
    torch.manual_seed(0)
    labels = torch.tensor([1] * 10 + [0] * 100 + [-1] * 5)
    pos, neg = B.BalancedPositiveNegativeSampler(16, 0.25)([labels])
    assert int(pos[0].sum()) == 4 and int(neg[0].sum()) == 12
    assert bool((labels[pos[0].bool()] == 1).all()) and bool((labels[neg[0].bool()] == 0).all())
    pos, neg = B.BalancedPositiveNegativeSampler(16, 0.75)([torch.tensor([1, 1, 0, 0, 0, -1])])
    assert int(pos[0].sum()) == 2 and int(neg[0].sum()) == 3  # fewer positives than asked: all of them


def test_focal_loss_formula():
    x = torch.tensor([2.0, -1.0, 0.5])
    t = torch.tensor([1.0, 0.0, 0.0])
    p = torch.sigmoid(x)
    expected = torch.stack([
        -0.25 * (1 - p[0]) ** 2 * torch.log(p[0]),
        -0.75 * p[1] ** 2 * torch.log(1 - p[1]),
        -0.75 * p[2] ** 2 * torch.log(1 - p[2]),
    ])  # fmt: skip
    assert torch.allclose(B.sigmoid_focal_loss(x, t), expected, atol=1e-6)
    assert torch.allclose(B.sigmoid_focal_loss(x, t, alpha=-1, gamma=0, reduction="sum"),
                          F.binary_cross_entropy_with_logits(x, t, reduction="sum"))  # fmt: skip


# --- anchors, RoIAlign, FPN ------------------------------------------------------------------------------------------
def test_anchors_follow_torchvision_order_and_rounding():
    base = base_anchors((32,), (0.5, 1.0, 2.0))
    assert base.tolist() == [[-23, -11, 23, 11], [-16, -16, 16, 16], [-11, -23, 11, 23]]
    gen = AnchorGenerator(((32,), (64,)), ((0.5, 1.0, 2.0),))
    feats = [torch.zeros(1, 1, 4, 5), torch.zeros(1, 1, 2, 3)]
    anchors = gen((64, 80), feats)
    assert anchors.shape == ((4 * 5 + 2 * 3) * 3, 4)
    assert anchors[3:6].tolist() == (base + torch.tensor([16, 0, 16, 0])).tolist()  # 2nd position: x + stride 16
    assert anchors[5 * 3 : 5 * 3 + 1].tolist() == [[-23, 5, 23, 27]]  # 2nd row: y + 16


def test_roi_align_on_a_linear_map_is_exact():
    # f(y, x) = x + 10 y is linear: every bilinear sample, and so every bin average, is f at the sample point
    h, w = 12, 16
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    feat = (xs + 10 * ys)[None, None]
    box = torch.tensor([[0, 2.0, 3.0, 10.0, 7.0]], dtype=torch.float64)  # x 2..10, y 3..7
    out = roi_align(feat, box, (2, 4), 1.0, sampling_ratio=2, aligned=True)[0, 0]
    # aligned: shifted by -0.5; bins 2 px wide (x) and 2 px high (y); bin centres
    cx = 2 - 0.5 + 1 + 2 * torch.arange(4, dtype=torch.float64)
    cy = 3 - 0.5 + 1 + 2 * torch.arange(2, dtype=torch.float64)
    assert torch.allclose(out, cx[None, :] + 10 * cy[:, None])


def test_roi_align_zero_outside_and_both_paths_agree():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 3, 9, 11, generator=g, dtype=torch.float64)
    rois = torch.tensor(
        [[0, -5.0, -5.0, 30.0, 30.0], [1, 1.2, 0.3, 4.4, 8.8], [1, 60, 60, 70, 70]], dtype=torch.float64
    )
    for aligned in (False, True):
        for grid in ((1, 1), (2, 3)):
            a = _roi_align_group(feats, rois, (5, 4), 0.5, grid, aligned)
            b = _roi_align_separable(feats, rois, (5, 4), 0.5, grid, aligned)
            assert torch.allclose(a, b, atol=1e-12)
            assert a[2].abs().max() == 0  # a box entirely outside the map pools zeros
    adaptive = roi_align(feats, rois, 3, 0.5, sampling_ratio=-1)
    per_box = torch.cat([roi_align(feats, rois[i : i + 1], 3, 0.5, sampling_ratio=-1) for i in range(3)])
    assert torch.allclose(adaptive, per_box)


def test_multiscale_roi_align_picks_the_level_of_the_fpn_paper():
    mapper = LevelMapper(2, 5)
    boxes = [torch.tensor([[0, 0, 112.0, 112], [0, 0, 224.0, 224], [0, 0, 448.0, 448], [0, 0, 10.0, 10]])]
    assert mapper(boxes).tolist() == [1, 2, 3, 0]  # levels 3, 4, 5, 2 (clamped) minus k_min
    pool = MultiScaleRoIAlign(["0", "1"], 2, 2)
    x = {"0": torch.ones(1, 1, 64, 64), "1": 2 * torch.ones(1, 1, 32, 32)}  # strides 4 and 8 of a 256 px image
    out = pool(x, [torch.tensor([[0, 0, 8.0, 8.0], [0, 0, 150.0, 150.0]])], [(256, 256)])
    assert out[0].unique().tolist() == [1.0] and out[1].unique().tolist() == [2.0]


def test_fpn_shapes_names_and_frozen_batchnorm():
    fpn = FeaturePyramidNetwork([8, 16, 32], 12, LastLevelMaxPool())
    assert {k for k in fpn.state_dict()} >= {"inner_blocks.0.0.weight", "layer_blocks.2.0.bias"}
    feats = {"0": torch.randn(1, 8, 32, 32), "1": torch.randn(1, 16, 16, 16), "2": torch.randn(1, 32, 8, 8)}
    out = fpn(feats)
    assert list(out) == ["0", "1", "2", "pool"] and [tuple(v.shape[-2:]) for v in out.values()] == [
        (32, 32), (16, 16), (8, 8), (4, 4)]  # fmt: skip
    p67 = FeaturePyramidNetwork([8, 16, 32], 12, LastLevelP6P7(12, 12))(feats)
    assert list(p67) == ["0", "1", "2", "p6", "p7"] and p67["p7"].shape[-1] == 2
    bn = torch.nn.BatchNorm2d(4).eval()
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 2)
        bn.bias.uniform_(-1, 1)
    model = torch.nn.Sequential(bn)
    x = torch.randn(2, 4, 5, 5)
    expected = model(x)
    freeze_batchnorm(model, eps=1e-5)
    assert isinstance(model[0], FrozenBatchNorm2d) and not list(model.parameters())
    assert torch.allclose(model(x), expected, atol=1e-6)
    assert set(model.state_dict()) == {"0.weight", "0.bias", "0.running_mean", "0.running_var"}


# --- torchvision as the reference (where it runs) ----------------------------------------------------------------
def test_equal_to_torchvision_ops_on_random_inputs():
    ops = torchvision_ops()
    g = torch.Generator().manual_seed(0)
    a, b = random_boxes(50, g), random_boxes(40, g)
    assert torch.allclose(B.box_iou(a, b), ops.box_iou(a, b))
    assert torch.allclose(B.generalized_box_iou(a, b), ops.generalized_box_iou(a, b))
    scores = torch.rand(50, generator=g)
    for thr in (0.3, 0.5, 0.7):
        assert B.nms(a, scores, thr).tolist() == ops.nms(a, scores, thr).tolist()
        idxs = torch.randint(0, 4, (50,), generator=g)
        assert B.batched_nms(a, scores, idxs, thr).tolist() == ops.batched_nms(a, scores, idxs, thr).tolist()
    x, t = torch.randn(30, generator=g), (torch.rand(30, generator=g) > 0.7).float()
    assert torch.allclose(B.sigmoid_focal_loss(x, t, reduction="sum"), ops.sigmoid_focal_loss(x, t, reduction="sum"))
    feats = torch.randn(2, 4, 20, 25, generator=g)
    rois = torch.cat([torch.randint(0, 2, (30, 1), generator=g).float(), random_boxes(30, g, 40)], 1)
    for ratio, aligned in ((2, False), (-1, False), (0, True), (3, True)):
        mine = roi_align(feats, rois, (7, 7), 0.5, ratio, aligned)
        ref = ops.roi_align(feats, rois, (7, 7), 0.5, ratio, aligned)
        assert torch.allclose(mine, ref, atol=1e-5), (ratio, aligned)

"""Detectors: torchvision's parameter names and sizes for the ResNet-50-FPN references, its train/eval API shape,
one-line errors for inputs that do not fit, and (where torchvision imports) the same detections as torchvision's
models given the same random weights."""

from __future__ import annotations

import pytest
import torch

from deepkit.errors import ShapeError
from deepkit.models import create_model
from deepkit.nn.fpn import FrozenBatchNorm2d

# parameter counts torchvision publishes for its COCO weights (the weights' meta "num_params")
TORCHVISION = {
    "fasterrcnn_resnet50_fpn": (41_755_286, [
        "backbone.body.conv1.weight", "backbone.body.bn1.running_var", "backbone.body.layer4.2.bn3.bias",
        "backbone.body.layer2.0.downsample.1.running_mean", "backbone.fpn.inner_blocks.0.0.weight",
        "backbone.fpn.layer_blocks.3.0.bias", "rpn.head.conv.0.0.weight", "rpn.head.cls_logits.weight",
        "rpn.head.bbox_pred.bias", "roi_heads.box_head.fc6.weight", "roi_heads.box_head.fc7.bias",
        "roi_heads.box_predictor.cls_score.weight", "roi_heads.box_predictor.bbox_pred.weight",
    ]),
    "retinanet_resnet50_fpn": (34_014_999, [
        "backbone.fpn.extra_blocks.p6.weight", "backbone.fpn.extra_blocks.p7.bias",
        "backbone.fpn.inner_blocks.2.0.weight",
        "head.classification_head.conv.3.0.weight", "head.classification_head.cls_logits.bias",
        "head.regression_head.conv.0.0.bias", "head.regression_head.bbox_reg.weight",
    ]),
    "fcos_resnet50_fpn": (32_269_600, [
        "head.classification_head.conv.0.weight", "head.classification_head.conv.1.weight",
        "head.regression_head.bbox_ctrness.weight", "head.regression_head.bbox_reg.bias",
    ]),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_reference_detectors_have_torchvision_names_and_sizes(name):
    with torch.device("meta"):
        model = create_model(name)
    count, keys = TORCHVISION[name]
    assert sum(p.numel() for p in model.parameters()) == count
    state = model.state_dict()
    missing = [k for k in keys if k not in state]
    assert not missing, missing
    assert not any(k.startswith("backbone.body.fc.") or k.endswith("num_batches_tracked") for k in state)
    frozen = [m for m in model.backbone.body.modules() if isinstance(m, FrozenBatchNorm2d)]
    assert len(frozen) == 53 and all(m.eps == 0.0 for m in frozen)  # torchvision's v1 weights: eps 0
    trainable = {
        n.split(".")[2] for n, p in model.named_parameters() if n.startswith("backbone.body") and p.requires_grad
    }
    assert trainable == {"layer2", "layer3", "layer4"}  # torchvision's default: 3 trainable stages


@pytest.mark.parametrize("name", ["fasterrcnn_small", "retinanet_small", "fcos_small"])
def test_small_detectors_api_shape_and_errors(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=4, in_channels=1)
    inputs = model.example_input(2)
    model.train()
    losses = model(**inputs)
    assert isinstance(losses, dict) and losses and all(v.ndim == 0 and torch.isfinite(v) for v in losses.values())
    empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}] * 2  # negatives train too
    assert all(torch.isfinite(v) for v in model(inputs["images"], empty).values())
    with pytest.raises(ShapeError, match=r"needs targets"):
        model(inputs["images"])
    with pytest.raises(ShapeError, match=r"labels 1\.\.4, expected 1\.\.3 \(0 is the background\)"):
        model(inputs["images"][:1], [{"boxes": torch.tensor([[0.0, 0, 5, 5]] * 2), "labels": torch.tensor([1, 4])}])
    with pytest.raises(ShapeError, match=r"box \[5\.0, 0\.0, 5\.0, 5\.0\] has no area"):
        model(inputs["images"][:1], [{"boxes": torch.tensor([[5.0, 0, 5, 5]]), "labels": torch.tensor([1])}])
    with pytest.raises(ShapeError, match=r"takes a non-empty list of \(C, H, W\) image tensors; got a tensor"):
        model(torch.zeros(2, 1, 32, 32))
    model.eval()
    with torch.no_grad():
        out = model([torch.rand(1, 50, 70), torch.rand(1, 130, 90)])
        with pytest.raises(ShapeError, match=r"image 0: expected a \(1, H, W\) tensor, got \(3, 50, 70\)"):
            model([torch.rand(3, 50, 70)])
    assert len(out) == 2 and all(set(o) == {"boxes", "labels", "scores"} for o in out)
    for o, (h, w) in zip(out, [(50, 70), (130, 90)], strict=True):
        assert o["boxes"].shape[1] == 4 and len(o["labels"]) == len(o["scores"])
        if len(o["boxes"]):  # detections are in the input image's pixels, clipped to it
            assert float(o["boxes"][:, 2].max()) <= w + 1e-3 and float(o["boxes"][:, 3].max()) <= h + 1e-3
            assert bool((o["scores"][:-1] >= o["scores"][1:]).all()) and int(o["labels"].max()) < 4
            # a two-stage detector never outputs the background; single-shot ones score class 0 like any other
            # (torchvision's too): the detection family drops those detections
            assert int(o["labels"].min()) >= (1 if name.startswith("faster") else 0)


def torchvision_detection():
    try:
        import torchvision
        import torchvision.ops

        torchvision.ops.nms(torch.zeros(1, 4), torch.zeros(1), 0.5)
        return torchvision.models.detection
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"torchvision is not usable here ({type(e).__name__}); the equality test needs it (a GPU machine)")


@pytest.mark.parametrize("name", ["fasterrcnn_resnet50_fpn", "retinanet_resnet50_fpn"])
def test_same_random_weights_give_torchvisions_detections(name):
    det = torchvision_detection()
    torch.manual_seed(0)
    ours = create_model(name, min_size=320, max_size=512, frozen_bn_eps=1e-5).eval()  # torchvision's BN eps
    theirs = getattr(det, name)(weights=None, weights_backbone=None, min_size=320, max_size=512).eval()
    state = {k: v for k, v in ours.state_dict().items()}
    g = torch.Generator().manual_seed(1)
    for k, v in state.items():  # random weights, statistics kept positive
        if v.is_floating_point():
            state[k] = v.abs() + 0.5 if "running_var" in k else torch.randn(v.shape, generator=g) * 0.05
    ours.load_state_dict(state)
    missing, unexpected = theirs.load_state_dict(state, strict=False)
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing)
    images = [torch.rand(3, 300, 400, generator=g), torch.rand(3, 240, 320, generator=g)]
    with torch.no_grad():
        a, b = ours(images), theirs(images)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x["labels"], y["labels"])
        assert torch.allclose(x["boxes"], y["boxes"], atol=1e-4) and torch.allclose(x["scores"], y["scores"], atol=1e-4)

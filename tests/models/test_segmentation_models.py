"""Segmentation models: torchvision's parameter names and sizes for FCN/DeepLabv3-ResNet-50 (equal outputs when
torchvision is importable), the dilated trunk, U-Net's options, and a U-Net on a classifier's stages."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from torch import nn

from deepkit import create_model
from deepkit.errors import ConfigError

HAS_TORCHVISION = importlib.util.find_spec("torchvision") is not None


@pytest.mark.parametrize(
    "name,params,keys",
    [
        # torchvision's published num_params (21 classes, aux head): FCN_ResNet50_Weights, DeepLabV3_ResNet50_Weights
        ("fcn_resnet50", 35_322_218, ["classifier.0.weight", "classifier.1.running_var", "classifier.4.bias"]),
        (
            "deeplabv3_resnet50",
            42_004_074,
            [
                "classifier.0.convs.0.0.weight",
                "classifier.0.convs.3.1.weight",
                "classifier.0.convs.4.1.weight",
                "classifier.0.project.0.weight",
                "classifier.1.weight",
                "classifier.2.running_mean",
                "classifier.4.bias",
            ],
        ),  # fmt: skip
    ],
)
def test_reference_models_have_torchvisions_names_and_sizes(name, params, keys):
    model = create_model(name)
    state = model.state_dict()
    assert sum(p.numel() for p in model.parameters()) == params
    common = ["backbone.conv1.weight", "backbone.bn1.num_batches_tracked", "backbone.layer3.0.downsample.0.weight",
              "backbone.layer4.2.conv3.weight", "aux_classifier.0.weight", "aux_classifier.4.bias"]  # fmt: skip
    assert set(keys + common) <= set(state)
    assert not any(k.startswith("backbone.fc") or k.startswith("backbone.avgpool") for k in state)
    assert state["classifier.4.weight"].shape == (21, 512 if name == "fcn_resnet50" else 256, 1, 1)


def test_the_trunk_is_dilated_to_output_stride_8_as_torchvision():
    model = create_model("deeplabv3_resnet50", num_classes=3).eval()
    b = model.backbone
    # torchvision's replace_stride_with_dilation=[False, True, True]: each dilated stage's first block keeps the
    # previous dilation with stride 1, the others take the new one
    assert b.layer2[0].conv2.stride == (2, 2) and b.layer2[1].conv2.dilation == (1, 1)
    assert b.layer3[0].conv2.stride == (1, 1) and b.layer3[0].conv2.dilation == (1, 1)
    assert b.layer3[1].conv2.dilation == (2, 2) and b.layer3[5].conv2.padding == (2, 2)
    assert b.layer4[0].conv2.dilation == (2, 2) and b.layer4[1].conv2.dilation == (4, 4)
    assert b.layer3[0].downsample[0].stride == (1, 1) and b.layer4[0].downsample[0].stride == (1, 1)
    with torch.no_grad():
        feats = b(torch.rand(1, 3, 64, 64))
    assert feats["aux"].shape == (1, 1024, 8, 8) and feats["out"].shape == (1, 2048, 8, 8)


def test_the_cpu_sized_variants_dilate_basic_blocks():
    model = create_model("fcn_resnet18", num_classes=4, aux=False).eval()
    with torch.no_grad():
        feats = model.backbone(torch.rand(1, 3, 48, 48))
        out = model(torch.rand(2, 3, 45, 47))
    assert feats["out"].shape == (1, 512, 6, 6) and set(out) == {"out"} and out["out"].shape == (2, 4, 45, 47)


@pytest.mark.skipif(not HAS_TORCHVISION, reason="torchvision is not importable here (CPU torch without torchvision)")
@pytest.mark.parametrize("name", ["fcn_resnet50", "deeplabv3_resnet50"])
def test_outputs_equal_torchvision_on_the_same_weights(name):
    import torchvision.models.segmentation as tvs

    torch.manual_seed(0)
    ref = getattr(tvs, name)(weights=None, weights_backbone=None, num_classes=5, aux_loss=True).eval()
    ours = create_model(name, num_classes=5).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)  # the same names and shapes, nothing left over
    x = torch.rand(2, 3, 67, 75)
    with torch.no_grad():
        a, b = ref(x), ours(x)
    assert set(a) == set(b) == {"out", "aux"}
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k


@pytest.mark.parametrize("up", ["transpose", "bilinear"])
def test_unet_levels_and_upsampling(up):
    model = create_model("unet", width=4, depth=3, up=up, in_channels=1, num_classes=3)
    widths = [m[0].out_channels for m in model.down]
    assert widths == [4, 8, 16, 32]  # doubled per level, depth + 1 levels
    has_transpose = any(isinstance(m, nn.ConvTranspose2d) for m in model.modules())
    assert has_transpose == (up == "transpose")
    out = model(torch.rand(2, 1, 29, 41))["out"]  # sides not multiples of 2**depth: padded, then cropped back
    assert out.shape == (2, 3, 29, 41)


def test_unet_reference_size_is_the_papers():
    model = create_model("unet", norm="none")
    assert [m[0].out_channels for m in model.down] == [64, 128, 256, 512, 1024]
    # the paper's 23 conv layers (18 3×3, 4 up-convs, one 1×1) hold 31.0M parameters (with biases)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    assert len(convs) == 23
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 1) == 31.0


def test_unet_options_are_checked():
    with pytest.raises(ConfigError, match=r"model.up: unknown 'nearest'.*valid: transpose, bilinear"):
        create_model("unet", up="nearest")
    with pytest.raises(ConfigError, match="has no per-stage feature maps"):
        create_model("unet_encoder", encoder="mlp", encoder_config={"in_features": 4})


def test_unet_encoder_keeps_the_classifiers_names_and_drops_its_head():
    model = create_model("unet_encoder", encoder="resnet18", num_classes=3)
    clf = create_model("resnet18")
    enc = set(model.encoder.state_dict())
    assert enc == {k for k in clf.state_dict() if not k.startswith("fc.")}
    assert model.dropped == ["fc"]
    head = {id(p) for p in model.get_classifier().parameters()}
    assert head and not head & {id(p) for p in model.encoder.parameters()}  # the encoder is the backbone

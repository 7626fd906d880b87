"""AlexNet, VGG and ResNet: parameter names and shapes equal torchvision's, so its state dicts load unchanged.

The expected key tables below are written from torchvision's model definitions (torchvision/models/alexnet.py,
vgg.py, resnet.py), independently of deepkit's code; the parameter counts are the ones torchvision documents.
"""

from __future__ import annotations

import pytest
import torch

from deepkit import create_model
from deepkit.errors import ConfigError, ShapeError

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def bn_keys(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.{k}": (() if k == "num_batches_tracked" else (c,)) for k in BN}


def alexnet_table(num_classes: int = 1000) -> dict[str, tuple[int, ...]]:
    return {
        "features.0.weight": (64, 3, 11, 11),
        "features.0.bias": (64,),
        "features.3.weight": (192, 64, 5, 5),
        "features.3.bias": (192,),
        "features.6.weight": (384, 192, 3, 3),
        "features.6.bias": (384,),
        "features.8.weight": (256, 384, 3, 3),
        "features.8.bias": (256,),
        "features.10.weight": (256, 256, 3, 3),
        "features.10.bias": (256,),
        "classifier.1.weight": (4096, 9216),
        "classifier.1.bias": (4096,),
        "classifier.4.weight": (4096, 4096),
        "classifier.4.bias": (4096,),
        "classifier.6.weight": (num_classes, 4096),
        "classifier.6.bias": (num_classes,),
    }


# torchvision's vgg cfgs "A" (vgg11) and "D" (vgg16)
VGG_CFG = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


def vgg_table(depth: int, bn: bool) -> dict[str, tuple[int, ...]]:
    table, i, c_in = {}, 0, 3
    for v in VGG_CFG[depth]:
        if v == "M":
            i += 1
            continue
        table[f"features.{i}.weight"], table[f"features.{i}.bias"] = (v, c_in, 3, 3), (v,)
        if bn:
            table.update(bn_keys(f"features.{i + 1}", v))
        i += 3 if bn else 2  # conv, (bn), relu
        c_in = v
    table.update(
        {
            "classifier.0.weight": (4096, 25088),
            "classifier.0.bias": (4096,),
            "classifier.3.weight": (4096, 4096),
            "classifier.3.bias": (4096,),
            "classifier.6.weight": (1000, 4096),
            "classifier.6.bias": (1000,),
        }
    )
    return table


def resnet_table(layers: list[int], bottleneck: bool) -> dict[str, tuple[int, ...]]:
    table = {"conv1.weight": (64, 3, 7, 7), **bn_keys("bn1", 64)}
    c_in, exp = 64, 4 if bottleneck else 1
    for s, (n, w) in enumerate(zip(layers, [64, 128, 256, 512], strict=True)):
        for b in range(n):
            p = f"layer{s + 1}.{b}"
            if bottleneck:
                convs = [(w, c_in, 1, 1), (w, w, 3, 3), (w * 4, w, 1, 1)]
            else:
                convs = [(w, c_in, 3, 3), (w, w, 3, 3)]
            for j, shape in enumerate(convs, 1):
                table[f"{p}.conv{j}.weight"] = shape
                table.update(bn_keys(f"{p}.bn{j}", shape[0]))
            if b == 0 and (s > 0 or c_in != w * exp):
                table[f"{p}.downsample.0.weight"] = (w * exp, c_in, 1, 1)
                table.update(bn_keys(f"{p}.downsample.1", w * exp))
            c_in = w * exp
    table["fc.weight"], table["fc.bias"] = (1000, 512 * exp), (1000,)
    return table


TABLES = {
    "alexnet": (alexnet_table(), 16, 61_100_840),
    "vgg11": (vgg_table(11, False), 22, 132_863_336),
    "vgg11_bn": (vgg_table(11, True), 62, 132_868_840),
    "vgg16": (vgg_table(16, False), 32, 138_357_544),
    "vgg16_bn": (vgg_table(16, True), 97, 138_365_992),
    "resnet18": (resnet_table([2, 2, 2, 2], False), 122, 11_689_512),
    "resnet34": (resnet_table([3, 4, 6, 3], False), 218, 21_797_672),
    "resnet50": (resnet_table([3, 4, 6, 3], True), 320, 25_557_032),
}


@pytest.mark.parametrize("name", sorted(TABLES))
def test_state_dict_matches_torchvision_table(name):
    table, n_keys, n_params = TABLES[name]
    assert len(table) == n_keys  # the table itself is complete (torchvision's state_dict length)
    with torch.device("meta"):  # shapes only: no memory, no init time
        model = create_model(name)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert set(got) - set(table) == set(), "keys torchvision does not have"
    assert set(table) - set(got) == set(), "torchvision keys missing here"
    assert got == table
    assert sum(p.numel() for p in model.parameters()) == n_params


def test_alexnet_table_with_other_classes():
    with torch.device("meta"):
        model = create_model("alexnet", num_classes=7)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == alexnet_table(7)


def test_torchvision_state_dict_loads_and_logits_match():
    tv = pytest.importorskip("torchvision", reason="torchvision is not importable here (works on the GPU machines)")
    torch.manual_seed(0)
    for name, kw in [("resnet18", {}), ("resnet50", {}), ("vgg11_bn", {}), ("alexnet", {})]:
        ref = getattr(tv.models, name)(weights=None, **kw).eval()
        ours = create_model(name).eval()
        ours.load_state_dict(ref.state_dict(), strict=True)
        x = torch.randn(2, 3, 224, 224)
        with torch.no_grad():
            diff = (ours(x) - ref(x)).abs().max().item()
        assert diff <= 1e-5, f"{name}: max |logit difference| {diff}"


@pytest.mark.parametrize(
    "name,size,feats,side",
    [("resnet20", 32, 64, 8), ("resnet32", 28, 64, 7), ("resnet18", 32, 512, 1), ("resnet50", 32, 2048, 1)],
)
def test_resnet_variants_forward(name, size, feats, side):
    model = create_model(name, num_classes=10, in_channels=1).eval()
    x = torch.randn(2, 1, size, size)
    with torch.no_grad():
        f = model.forward_features(x)  # the unpooled last stage: stride 4 (CIFAR stem) or 32 (ImageNet stem)
        pre = model.forward_head(f, pre_logits=True)
    assert f.shape == (2, feats, side, side)
    assert pre.shape == (2, feats) == (2, model.num_features)
    assert model.forward_head(f).shape == (2, 10)
    assert model.get_classifier() is model.fc


# CNN backbones: (name, config overrides, input side, exact stride) — "exact" when every stage's side is input/stride
BACKBONES = [
    ("resnet18", {}, 64, True),
    ("resnet50", {}, 64, True),
    ("resnet20", {}, 32, True),
    ("vgg11", {"hidden": 64}, 64, True),
    ("vgg16_bn", {"hidden": 64}, 64, True),
    ("alexnet", {"hidden": 64}, 127, False),  # 11×11/4 conv and unpadded 3×3/2 pools: nominal strides
    ("simple_cnn", {"channels": [8, 16, 32]}, 32, True),
    ("lenet5", {}, 28, False),  # unpadded 5×5 conv before S4
]
EXPECTED_STAGES = {  # (num_chs, reduction) per stage, from the architectures' definitions
    "resnet18": [(64, 2), (64, 4), (128, 8), (256, 16), (512, 32)],
    "resnet50": [(64, 2), (256, 4), (512, 8), (1024, 16), (2048, 32)],
    "resnet20": [(16, 1), (32, 2), (64, 4)],
    "vgg11": [(64, 2), (128, 4), (256, 8), (512, 16), (512, 32)],
    "vgg16_bn": [(64, 2), (128, 4), (256, 8), (512, 16), (512, 32)],
    "alexnet": [(64, 8), (192, 16), (256, 32)],
    "simple_cnn": [(8, 2), (16, 4), (32, 8)],
    "lenet5": [(6, 2), (16, 4)],
}


@pytest.mark.parametrize("name,kw,size,exact", BACKBONES)
def test_feature_info_and_stage_maps(name, kw, size, exact):
    torch.manual_seed(0)
    model = create_model(name, **kw).eval()
    info = model.feature_info
    assert [(i["num_chs"], i["reduction"]) for i in info] == EXPECTED_STAGES[name]
    x = torch.randn(2, model.cfg.in_channels, size, size)
    modules = dict(model.named_modules())
    hooked = {}
    hooks = [
        modules[i["module"]].register_forward_hook(lambda m, a, o, k=i["module"]: hooked.setdefault(k, o.clone()))
        for i in info
    ]
    with torch.no_grad():
        maps = model.forward_features(x, stages=True)
        last = model.forward_features(x)
        logits = model(x)
    for h in hooks:
        h.remove()
    assert len(maps) == len(info)
    for m, i in zip(maps, info, strict=True):
        assert m.shape[:2] == (2, i["num_chs"]), i
        if exact:
            assert m.shape[2:] == (size // i["reduction"], size // i["reduction"]), i
        torch.testing.assert_close(m, hooked[i["module"]], rtol=0, atol=0)  # "module" names the map's source
    sides = [m.shape[-1] for m in maps]
    assert sides == sorted(sides, reverse=True)
    torch.testing.assert_close(maps[-1], last, rtol=0, atol=0)  # the last stage is forward_features(x)
    torch.testing.assert_close(model.forward_head(last), logits, rtol=0, atol=0)


@pytest.mark.parametrize("name,kw,size,exact", BACKBONES)
def test_pre_logits_is_what_the_classifier_sees(name, kw, size, exact):
    torch.manual_seed(0)
    model = create_model(name, num_classes=5, **kw).eval()
    with torch.no_grad():
        feats = model.forward_features(torch.randn(2, model.cfg.in_channels, size, size))
        pre = model.forward_head(feats, pre_logits=True)
        assert pre.shape == (2, model.num_features)
        torch.testing.assert_close(model.get_classifier()(pre), model.forward_head(feats), rtol=0, atol=0)


def test_resnet_default_act_and_norm_are_relu_and_batchnorm():
    torch.manual_seed(0)
    default = create_model("resnet18")
    torch.manual_seed(0)
    named = create_model("resnet18", act="relu", norm="batchnorm")
    assert default.state_dict().keys() == named.state_dict().keys()
    assert all(torch.equal(v, named.state_dict()[k]) for k, v in default.state_dict().items())
    relus = [m for m in default.modules() if isinstance(m, torch.nn.ReLU)]
    assert relus and all(m.inplace for m in relus)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in default.modules()) == 20  # 1 + 8 × 2 + 3 downsample
    assert not any(isinstance(m, torch.nn.GroupNorm) for m in default.modules())


@pytest.mark.parametrize(
    "name,act,norm,act_cls,norm_cls",
    [
        ("resnet20", "gelu", "groupnorm", torch.nn.GELU, torch.nn.GroupNorm),
        ("resnet18", "silu", "layernorm", torch.nn.SiLU, torch.nn.GroupNorm),
        ("resnet50", "leaky_relu", "batchnorm", torch.nn.LeakyReLU, torch.nn.BatchNorm2d),
    ],
)
def test_resnet_act_and_norm_by_name(name, act, norm, act_cls, norm_cls):
    torch.manual_seed(0)
    model = create_model(name, num_classes=4, act=act, norm=norm, zero_init_residual=True)
    kinds = {type(m) for m in model.modules()}
    assert act_cls in kinds and norm_cls in kinds
    assert torch.nn.ReLU not in kinds and (norm_cls is torch.nn.BatchNorm2d or torch.nn.BatchNorm2d not in kinds)
    out = model(**model.example_input())
    assert out.shape == (2, 4) and torch.isfinite(out).all()
    out.logsumexp(-1).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_resnet_without_norm_has_conv_biases_and_identity_blocks():
    model = create_model("resnet20", norm="none", zero_init_residual=True)
    assert not any(isinstance(m, torch.nn.BatchNorm2d | torch.nn.GroupNorm) for m in model.modules())
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(c.bias is not None for c in convs)
    assert all(float(b.conv2.weight.detach().abs().sum()) == 0 for stage in model.stages for b in stage)
    assert torch.isfinite(model(**model.example_input())).all()


def test_resnet_unknown_act_or_norm_is_config_error_naming_the_valid_ones():
    with pytest.raises(ConfigError, match=r"model\.act: unknown activation 'swishy'.*valid: .*gelu.*relu.*silu"):
        create_model("resnet18", act="swishy")
    with pytest.raises(ConfigError, match=r"model\.act: .*did you mean 'relu'"):
        create_model("resnet20", act="rellu")
    with pytest.raises(ConfigError, match=r"model\.norm: unknown norm 'instance'.*valid: batchnorm, groupnorm"):
        create_model("resnet20", norm="instance")


def test_cifar_resnet_depths():
    # depth = 6n + 2: 2n convs per stage × 3 stages + first conv + fc (He et al., 2016, section 4.2)
    for name, n in [("resnet20", 3), ("resnet32", 5), ("resnet56", 9)]:
        with torch.device("meta"):
            model = create_model(name)
        convs = [k for k in model.state_dict() if k.endswith("weight") and "conv" in k]
        assert len(convs) + 1 == 6 * n + 2, name
        assert model.cfg.stem == "cifar" and model.maxpool.__class__.__name__ == "Identity"


def test_zero_init_residual_makes_blocks_identity():
    model = create_model("resnet20", zero_init_residual=True)
    assert all(float(b.bn2.weight.detach().abs().sum()) == 0 for stage in model.stages for b in stage)


def test_check_input_and_bad_config():
    model = create_model("resnet20")
    with pytest.raises(ShapeError, match=r"3 channel\(s\), got images with 1"):
        model.check_input((1, 32, 32))
    with pytest.raises(ShapeError, match=r"at least 8×8"):
        model.check_input((3, 4, 4))
    create_model("resnet18", in_channels=1).check_input((1, 28, 28))  # MNIST fits the ImageNet stem too
    with pytest.raises(ShapeError, match="at least 63"):
        create_model("alexnet").check_input((3, 32, 32))
    with pytest.raises(ConfigError, match="depth 11, 13, 16 or 19"):
        create_model("vgg11", depth=12)
    with pytest.raises(ConfigError, match="basic.*bottleneck"):
        create_model("resnet18", block="wide")
    with pytest.raises(ConfigError, match="equal length"):
        create_model("resnet18", layers=[2, 2], widths=[64])


def test_vgg_bn_variant_has_batch_norm():
    with torch.device("meta"):
        plain, bn = create_model("vgg11"), create_model("vgg11_bn")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in bn.modules()) == 8

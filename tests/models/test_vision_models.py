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
    "name,size,feats", [("resnet20", 32, 64), ("resnet32", 28, 64), ("resnet18", 32, 512), ("resnet50", 32, 2048)]
)
def test_resnet_variants_forward(name, size, feats):
    model = create_model(name, num_classes=10, in_channels=1).eval()
    x = torch.randn(2, 1, size, size)
    with torch.no_grad():
        f = model.forward_features(x)
    assert f.shape == (2, feats)
    assert model.forward_head(f).shape == (2, 10)
    assert model.get_classifier() is model.fc


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

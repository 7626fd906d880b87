"""Feature Pyramid Network (Lin et al., 2017) and the frozen batch norm of detection backbones.

Parameter names are torchvision's (``inner_blocks.i.0``, ``layer_blocks.i.0``, ``extra_blocks.p6``), so a
torchvision detector's ``backbone.fpn`` weights load unchanged.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn


class FrozenBatchNorm2d(nn.Module):
    """Batch norm with fixed statistics and affine parameters, all buffers (torchvision's ``FrozenBatchNorm2d``):
    ``y = (x - mean) / sqrt(var + eps) * weight + bias``. Detection backbones use it because their batches (a few
    large images) are too small to estimate statistics. torchvision's v1 COCO weights were trained with ``eps=0``."""

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected, errors):
        state_dict.pop(prefix + "num_batches_tracked", None)  # a BatchNorm2d's state dict loads too
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected, errors)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        bias = self.bias - self.running_mean * scale
        return x * scale.reshape(1, -1, 1, 1) + bias.reshape(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


def freeze_batchnorm(module: nn.Module, eps: float = 1e-5) -> nn.Module:
    """Replace every ``BatchNorm2d`` inside ``module`` by a :class:`FrozenBatchNorm2d` holding its statistics."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps)
            with torch.no_grad():
                if child.affine:
                    frozen.weight.copy_(child.weight)
                    frozen.bias.copy_(child.bias)
                if child.running_mean is not None:
                    frozen.running_mean.copy_(child.running_mean)
                    frozen.running_var.copy_(child.running_var)
            setattr(module, name, frozen)
        else:
            freeze_batchnorm(child, eps)
    return module


def conv_block(c_in: int, c_out: int, kernel: int) -> nn.Sequential:
    """A conv with bias and no norm/activation, wrapped as torchvision's ``Conv2dNormActivation`` (index 0)."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2))


class LastLevelMaxPool(nn.Module):
    """Faster R-CNN's extra level ``pool``: a stride-2 subsampling of the last map."""

    name = "pool"

    def forward(self, results: list[torch.Tensor], x: list[torch.Tensor]) -> list[torch.Tensor]:
        return [*results, F.max_pool2d(results[-1], 1, 2, 0)]


class LastLevelP6P7(nn.Module):
    """RetinaNet's extra levels P6 = conv3x3/2(P5 or C5), P7 = conv3x3/2(relu(P6))."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.p6 = nn.Conv2d(in_channels, out_channels, 3, 2, 1)
        self.p7 = nn.Conv2d(out_channels, out_channels, 3, 2, 1)
        for m in (self.p6, self.p7):
            nn.init.kaiming_uniform_(m.weight, a=1)
            nn.init.constant_(m.bias, 0)
        self.use_p5 = in_channels == out_channels
        self.names = ("p6", "p7")

    def forward(self, results: list[torch.Tensor], x: list[torch.Tensor]) -> list[torch.Tensor]:
        p6 = self.p6(results[-1] if self.use_p5 else x[-1])
        return [*results, p6, self.p7(F.relu(p6))]


class FeaturePyramidNetwork(nn.Module):
    """Top-down pathway with lateral connections: a 1×1 ``inner`` conv per input map, upsampling (nearest) and
    addition from the coarsest level down, then a 3×3 ``layer`` conv per level; optional extra coarser levels.

    Args:
        in_channels_list: channels of the input maps, finest first.
        out_channels: channels of every output map.
        extra_blocks: :class:`LastLevelMaxPool`, :class:`LastLevelP6P7` or None.
    """

    def __init__(self, in_channels_list: list[int], out_channels: int, extra_blocks: nn.Module | None = None):
        super().__init__()
        self.inner_blocks = nn.ModuleList(conv_block(c, out_channels, 1) for c in in_channels_list)
        self.layer_blocks = nn.ModuleList(conv_block(out_channels, out_channels, 3) for _ in in_channels_list)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)
                nn.init.constant_(m.bias, 0)
        self.extra_blocks = extra_blocks

    def forward(self, x: OrderedDict[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
        names, maps = list(x.keys()), list(x.values())
        last = self.inner_blocks[-1](maps[-1])
        results = [self.layer_blocks[-1](last)]
        for i in range(len(maps) - 2, -1, -1):
            lateral = self.inner_blocks[i](maps[i])
            last = lateral + F.interpolate(last, size=lateral.shape[-2:], mode="nearest")
            results.insert(0, self.layer_blocks[i](last))
        if self.extra_blocks is not None:
            results = self.extra_blocks(results, maps)
            if isinstance(self.extra_blocks, LastLevelMaxPool):
                names = [*names, "pool"]
            else:
                names = [*names, *self.extra_blocks.names]
        return OrderedDict(zip(names, results, strict=True))


class BackboneWithFPN(nn.Module):
    """``body`` (a deepkit CNN backbone with ``forward_features(x, stages=True)`` and ``feature_info``) + ``fpn``.

    ``return_layers`` names the stages to feed the FPN (``layer1``..``layer4``, as ``feature_info``'s ``module``);
    outputs are keyed ``"0"``, ``"1"``, ... then the extra levels, as in torchvision.
    """

    def __init__(
        self, body: nn.Module, return_layers: list[str], out_channels: int, extra_blocks: nn.Module | None = None
    ):
        super().__init__()
        info = {f["module"]: i for i, f in enumerate(body.feature_info)}
        self.stage_index = [info[name] for name in return_layers]
        chans = [body.feature_info[i]["num_chs"] for i in self.stage_index]
        self.body = body
        self.fpn = FeaturePyramidNetwork(chans, out_channels, extra_blocks)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        maps = self.body.forward_features(x, stages=True)
        picked = OrderedDict((str(i), maps[j]) for i, j in enumerate(self.stage_index))
        return self.fpn(picked)

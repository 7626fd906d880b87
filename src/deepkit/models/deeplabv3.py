"""DeepLabv3 (Chen et al., 2017, "Rethinking Atrous Convolution for Semantic Image Segmentation") in torchvision's
form: a dilated ResNet (output stride 8), Atrous Spatial Pyramid Pooling (a 1×1 conv, three 3×3 convs at rates
12/24/36 and image-level pooling, concatenated and projected), a 3×3 conv and a 1×1 classifier; an FCN head on
``layer3`` as the auxiliary output; both upsampled bilinearly to the input.

Parameter names equal ``torchvision.models.segmentation.deeplabv3_resnet50``'s (``classifier.0.convs.4.1.weight``,
``classifier.0.project.0.weight``, ``classifier.4.bias``, ``aux_classifier.4.weight``), so its state dicts load
unchanged; ``deeplabv3_resnet18`` is the CPU-sized variant (128 ASPP channels).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from deepkit.errors import ConfigError
from deepkit.models._segmentation import ResNetTrunk, TrunkAndHeads
from deepkit.models.fcn import FCNHead, trunk_overrides
from deepkit.models.registry import register_model


def conv_bn_relu(c_in: int, c_out: int, kernel: int = 1, dilation: int = 1) -> list[nn.Module]:
    pad = dilation if kernel == 3 else 0
    return [nn.Conv2d(c_in, c_out, kernel, padding=pad, dilation=dilation, bias=False), nn.BatchNorm2d(c_out),
            nn.ReLU()]  # fmt: skip


class ASPPPooling(nn.Sequential):
    """Image-level features: global average pool, 1×1 conv, BN, ReLU, broadcast back to the map's size."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__(nn.AdaptiveAvgPool2d(1), *conv_bn_relu(c_in, c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        return F.interpolate(super().forward(x), size=size, mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """Parallel branches (1×1, 3×3 at each atrous rate, image pooling) -> concat -> 1×1 projection, dropout 0.5."""

    def __init__(self, c_in: int, rates: list[int], c_out: int = 256):
        super().__init__()
        branches = [nn.Sequential(*conv_bn_relu(c_in, c_out))]
        branches += [nn.Sequential(*conv_bn_relu(c_in, c_out, 3, r)) for r in rates]
        branches.append(ASPPPooling(c_in, c_out))
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(*conv_bn_relu(len(branches) * c_out, c_out), nn.Dropout(0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([conv(x) for conv in self.convs], dim=1))  # (B, c_out, h, w)


class DeepLabHead(nn.Sequential):
    def __init__(self, c_in: int, num_classes: int, rates: list[int], channels: int = 256):
        super().__init__(ASPP(c_in, rates, channels), *conv_bn_relu(channels, channels, 3),
                         nn.Conv2d(channels, num_classes, 1))  # fmt: skip


@dataclass
class DeepLabV3Config:
    in_channels: int = 3
    num_classes: int = 21
    backbone: str = "resnet50"
    backbone_layers: list[int] | None = None
    backbone_widths: list[int] | None = None
    dilation: list[bool] = field(default_factory=lambda: [False, True, True])  # output stride 8 (torchvision's)
    atrous_rates: list[int] = field(default_factory=lambda: [12, 24, 36])
    aspp_channels: int = 256
    aux: bool = True  # an FCN head on layer3 (torchvision's aux_loss)
    aux_dropout: float = 0.1


@register_model(
    "deeplabv3_resnet50", DeepLabV3Config, "DeepLabv3 (ASPP) on a dilated ResNet-50, aux head (torchvision's names)"
)
@register_model(
    "deeplabv3_resnet18", DeepLabV3Config, "DeepLabv3 (ASPP, 128 channels) on a dilated ResNet-18 (CPU-sized)",
    backbone="resnet18", aspp_channels=128,
)  # fmt: skip
class DeepLabV3(TrunkAndHeads):
    """Dilated ResNet -> ASPP head (-> FCN aux head on layer3) -> bilinear upsampling to the input size."""

    def __init__(self, cfg: DeepLabV3Config):
        super().__init__()
        if not cfg.atrous_rates or min(cfg.atrous_rates) < 1 or cfg.aspp_channels < 1:
            raise ConfigError(f"model.atrous_rates must be positive integers and aspp_channels >= 1, got "
                              f"{cfg.atrous_rates}, {cfg.aspp_channels}")  # fmt: skip
        self.cfg = cfg
        self.backbone = ResNetTrunk(cfg.backbone, cfg.in_channels, list(cfg.dilation), trunk_overrides(cfg))
        rates = list(cfg.atrous_rates)
        self.classifier = DeepLabHead(self.backbone.channels["out"], cfg.num_classes, rates, cfg.aspp_channels)
        aux = FCNHead(self.backbone.channels["aux"], cfg.num_classes, cfg.aux_dropout) if cfg.aux else None
        self.aux_classifier = aux

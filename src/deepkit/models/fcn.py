"""FCN (Long, Shelhamer and Darrell, 2015, "Fully Convolutional Networks for Semantic Segmentation") in
torchvision's form: a dilated ResNet (output stride 8), a 3×3-conv head on ``layer4`` and an auxiliary head on
``layer3``, both upsampled bilinearly to the input.

Parameter names equal ``torchvision.models.segmentation.fcn_resnet50``'s (``backbone.layer4.2.conv3.weight``,
``classifier.0.weight``, ``classifier.4.bias``, ``aux_classifier.4.weight``), so its state dicts load unchanged;
``fcn_resnet18`` is the CPU-sized variant (basic blocks dilate both 3×3 convs; torchvision has no such model).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from deepkit.models._segmentation import ResNetTrunk, TrunkAndHeads
from deepkit.models.registry import register_model


class FCNHead(nn.Sequential):
    """3×3 conv to ``in/4`` channels, BN, ReLU, dropout, 1×1 conv to the classes (torchvision's ``FCNHead``)."""

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.1):
        inter = in_channels // 4
        super().__init__(
            nn.Conv2d(in_channels, inter, 3, padding=1, bias=False),
            nn.BatchNorm2d(inter),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Conv2d(inter, num_classes, 1),
        )


@dataclass
class FCNConfig:
    in_channels: int = 3
    num_classes: int = 21  # torchvision's default (VOC: 20 classes + background)
    backbone: str = "resnet50"  # a registered ResNet with the ImageNet stem
    backbone_layers: list[int] | None = None  # blocks per stage (None: the backbone's own)
    backbone_widths: list[int] | None = None  # widths per stage (None: the backbone's own)
    dilation: list[bool] = field(default_factory=lambda: [False, True, True])  # layer2..4: output stride 8
    aux: bool = True  # the auxiliary head on layer3 (torchvision's aux_loss)
    dropout: float = 0.1


def trunk_overrides(cfg) -> dict:
    out = {}
    if cfg.backbone_layers is not None:
        out["layers"] = list(cfg.backbone_layers)
    if cfg.backbone_widths is not None:
        out["widths"] = list(cfg.backbone_widths)
    return out


@register_model("fcn_resnet50", FCNConfig, "FCN on a dilated ResNet-50 with an aux head (torchvision's names)")
@register_model("fcn_resnet18", FCNConfig, "FCN on a dilated ResNet-18 (CPU-sized), aux head", backbone="resnet18")
class FCN(TrunkAndHeads):
    """Dilated ResNet -> FCN head (-> aux head on layer3) -> bilinear upsampling to the input size."""

    def __init__(self, cfg: FCNConfig):
        super().__init__()
        self.cfg = cfg
        self.backbone = ResNetTrunk(cfg.backbone, cfg.in_channels, list(cfg.dilation), trunk_overrides(cfg))
        self.classifier = FCNHead(self.backbone.channels["out"], cfg.num_classes, cfg.dropout)
        self.aux_classifier = FCNHead(self.backbone.channels["aux"], cfg.num_classes, cfg.dropout) if cfg.aux else None

"""What every semantic-segmentation model shares: the output contract and the dilated ResNet trunk of FCN/DeepLabv3.

Contract (torchvision.models.segmentation's): ``forward(x)`` with images ``(B, C, H, W)`` returns a dict
``{"out": (B, K, H, W)}`` of per-pixel class logits at the input's size, plus ``"aux"`` (same shape) for models with
an auxiliary head (FCN, DeepLabv3 with ``aux=True``); the task adds the auxiliary loss during training only.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from deepkit.errors import ConfigError
from deepkit.models.base import example_generator, model_device


class Segmenter(nn.Module):
    """Base class of segmentation models: ``forward(x) -> {"out": logits (B, K, H, W), ["aux": ...]}``."""

    example_size: int = 64  # side of example_input's images

    def example_input(self, batch_size: int = 2) -> dict[str, torch.Tensor]:
        g = example_generator()
        s = self.example_size
        x = torch.rand(batch_size, self.cfg.in_channels, s, s, generator=g)
        return {"x": x.to(model_device(self))}

    @property
    def num_classes(self) -> int:
        return self.cfg.num_classes

    @property
    def in_channels(self) -> int:
        return self.cfg.in_channels


class TrunkAndHeads(Segmenter):
    """torchvision's ``_SimpleSegmentationModel``: ``backbone`` (a :class:`ResNetTrunk`) -> ``classifier`` on its
    ``out`` map (and ``aux_classifier`` on ``aux``) -> bilinear upsampling to the input size. Subclasses (FCN,
    DeepLabv3) build the three modules; the heads are ``nn.Sequential`` ending in their 1×1 classifier conv."""

    backbone: nn.Module
    classifier: nn.Sequential
    aux_classifier: nn.Sequential | None

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        size = x.shape[-2:]
        feats = self.backbone(x)
        out = {"out": F.interpolate(self.classifier(feats["out"]), size=size, mode="bilinear", align_corners=False)}
        if self.aux_classifier is not None:
            aux = self.aux_classifier(feats["aux"])
            out["aux"] = F.interpolate(aux, size=size, mode="bilinear", align_corners=False)
        return out  # {"out": (B, K, H, W), "aux": (B, K, H, W)}

    def get_classifier(self) -> nn.Module:
        """The last 1×1 conv of each head (``classifier.4``, ``aux_classifier.4``): what fine-tuning on other classes
        trains afresh."""
        heads = [self.classifier[-1]] + ([self.aux_classifier[-1]] if self.aux_classifier is not None else [])
        return nn.ModuleList(heads)


def dilate_resnet(body: nn.Module, dilate: list[bool]) -> nn.Module:
    """Trade the stride of ``layer2..layer4`` for dilation where ``dilate`` says so (torchvision's
    ``replace_stride_with_dilation``): the first block of a dilated stage keeps the previous dilation with stride 1,
    its other blocks use the new one, so the output stride is 8 for ``[False, True, True]`` (Chen et al., 2017).

    Changes the built ResNet in place (same parameters and names; only strides, dilations and paddings move)."""
    if len(dilate) != 3:
        raise ConfigError(f"model.dilation: expected 3 booleans (layer2, layer3, layer4), got {dilate}")
    dilation = 1
    for i, flag in enumerate(dilate):
        stage = getattr(body, f"layer{i + 2}")
        previous = dilation
        if flag:
            dilation *= 2
        for j, block in enumerate(stage):
            d = previous if j == 0 else dilation
            bottleneck = hasattr(block, "conv3")  # Bottleneck: the 3×3 conv2 is strided; BasicBlock: conv1
            if flag and j == 0:
                (block.conv2 if bottleneck else block.conv1).stride = (1, 1)
                if block.downsample is not None:
                    block.downsample[0].stride = (1, 1)
            for conv in [block.conv2] if bottleneck else [block.conv1, block.conv2]:
                conv.dilation = conv.padding = (d, d)
    return body


class ResNetTrunk(nn.Module):
    """A registered ResNet without its classifier, returning ``layer3`` and ``layer4``'s maps (torchvision's
    ``IntermediateLayerGetter`` over ``{"layer4": "out", "layer3": "aux"}``). Its parameters sit under the same names
    as in the ResNet (``conv1``, ``layer1.0.conv1`` ...), so the model's ``backbone.*`` keys equal torchvision's."""

    def __init__(self, name: str, in_channels: int, dilate: list[bool], overrides: dict[str, Any] | None = None):
        super().__init__()
        from deepkit.models.registry import create_model

        body = create_model(name, in_channels=in_channels, num_classes=1, **(overrides or {}))
        if getattr(getattr(body, "cfg", None), "stem", None) != "imagenet":
            raise ConfigError(f"model.backbone={name!r}: expected a ResNet with the ImageNet stem "
                              "(resnet18, resnet34, resnet50)")  # fmt: skip
        dilate_resnet(body, dilate)
        for key in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            self.add_module(key, getattr(body, key))
        info = body.feature_info
        self.channels = {"aux": info[-2]["num_chs"], "out": info[-1]["num_chs"]}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.layer1(x))
        aux = self.layer3(x)  # (B, C3, H/8, W/8) with dilation
        return {"aux": aux, "out": self.layer4(aux)}  # (B, C4, H/8, W/8)

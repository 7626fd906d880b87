"""U-Net (Ronneberger, Fischer and Brox, 2015, "U-Net: Convolutional Networks for Biomedical Image Segmentation").

Two kinds:

* ``unet`` / ``unet_small``: the paper's encoder-decoder. Each level is two 3×3 convs (padded, so the output has the
  input's size, as in most re-implementations; the paper's unpadded convs need overlap-tile cropping), ``depth``
  2×2 max poolings down, ``depth`` up-samplings (2×2 transposed conv as in the paper, or bilinear + 1×1 conv) each
  concatenated with the encoder's map of the same level. ``width`` channels at the first level, doubled per level
  (the paper: 64 ... 1024). An input whose sides are not multiples of ``2**depth`` is padded (reflect) and the
  logits cropped back.
* ``unet_encoder``: the same decoder on any deepkit classifier backbone with per-stage maps
  (``forward_features(x, stages=True)`` and ``feature_info``: resnet*, vgg*, simple_cnn, lenet5, alexnet). The
  encoder keeps the classifier's parameter names under ``encoder.``, so a trained classifier run's weights load
  into it (the segmentation family's ``finetune.weights``); its unused head is dropped.

Every model returns ``{"out": logits (B, K, H, W)}`` at the input's size (:mod:`deepkit.models._segmentation`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from deepkit.errors import ConfigError, suggest
from deepkit.models._segmentation import Segmenter
from deepkit.models.registry import register_model
from deepkit.nn import get_act, get_norm, list_acts, list_norms

UPSAMPLING = ("transpose", "bilinear")


def double_conv(c_in: int, c_out: int, norm: str, act: str, dropout: float = 0.0) -> nn.Sequential:
    """(conv 3×3 -> norm -> act) × 2, padded: the U-Net level."""
    bias = norm == "none"
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=bias), get_norm(norm, c_out, "2d"),
                               get_act(act), nn.Conv2d(c_out, c_out, 3, padding=1, bias=bias),
                               get_norm(norm, c_out, "2d"), get_act(act)]  # fmt: skip
    if dropout > 0:
        layers.append(nn.Dropout2d(dropout))
    return nn.Sequential(*layers)


class Up(nn.Module):
    """Up-sample ``x`` to ``skip``'s size, concatenate, double conv: (B, c_in, h, w) + (B, c_skip, H, W) ->
    (B, c_out, H, W). ``transpose``: a learnt 2×2/2 transposed conv halving the channels (the paper's up-conv);
    ``bilinear``: bilinear interpolation then a 1×1 conv to half the channels."""

    def __init__(self, c_in: int, c_skip: int, c_out: int, mode: str, norm: str, act: str):
        super().__init__()
        half = max(1, c_in // 2)
        self.mode = mode
        if mode == "transpose":
            self.up = nn.ConvTranspose2d(c_in, half, 2, stride=2)
        else:
            self.up = nn.Conv2d(c_in, half, 1)
        self.conv = double_conv(half + c_skip, c_out, norm, act)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None, size: tuple[int, int]) -> torch.Tensor:
        if self.mode == "transpose":
            x = self.up(x)
            if tuple(x.shape[-2:]) != tuple(size):  # odd sizes, or encoders whose strides are nominal
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        else:
            x = self.up(F.interpolate(x, size=size, mode="bilinear", align_corners=False))
        return self.conv(x if skip is None else torch.cat([skip, x], dim=1))


def check_names(cfg: Any) -> None:
    for key, name, valid in (("act", cfg.act, list_acts()), ("norm", cfg.norm, list_norms()),
                             ("up", cfg.up, UPSAMPLING)):  # fmt: skip
        if name not in valid:
            raise ConfigError(f"model.{key}: unknown {name!r}{suggest(str(name), valid)}; valid: {', '.join(valid)}")


@dataclass
class UNetConfig:
    in_channels: int = 1
    num_classes: int = 2  # the paper's membrane / cell
    depth: int = 4  # poolings (the paper: 4, so 5 levels)
    width: int = 64  # channels of the first level, doubled per level (the paper: 64 ... 1024)
    up: str = "transpose"  # transpose (the paper's 2×2 up-conv) or bilinear
    norm: str = "batchnorm"  # the paper had none (2015); batchnorm trains far faster from scratch
    act: str = "relu"
    dropout: float = 0.0  # Dropout2d at the bottom level (the paper: dropout at the end of the contracting path)


@register_model("unet", UNetConfig, "U-Net (Ronneberger et al. 2015): depth 4, 64-1024 channels, up-convs")
@register_model("unet_small", UNetConfig, "U-Net, CPU-sized: depth 4, 16-256 channels", width=16)
class UNet(Segmenter):
    """Contracting path (double convs + max pooling) -> bottom -> expanding path (up + skip + double conv) -> 1×1."""

    def __init__(self, cfg: UNetConfig):
        super().__init__()
        check_names(cfg)
        if cfg.depth < 1 or cfg.width < 1:
            raise ConfigError(f"model.depth and model.width must be >= 1, got {cfg.depth}, {cfg.width}")
        self.cfg = cfg
        widths = [cfg.width * 2**i for i in range(cfg.depth + 1)]
        self.down = nn.ModuleList([double_conv(cfg.in_channels, widths[0], cfg.norm, cfg.act)])
        for i in range(1, cfg.depth + 1):
            drop = cfg.dropout if i == cfg.depth else 0.0
            self.down.append(double_conv(widths[i - 1], widths[i], cfg.norm, cfg.act, drop))
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList(
            [Up(widths[i], widths[i - 1], widths[i - 1], cfg.up, cfg.norm, cfg.act) for i in range(cfg.depth, 0, -1)]
        )
        self.head = nn.Conv2d(widths[0], cfg.num_classes, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h, w = x.shape[-2:]
        m = 2**self.cfg.depth
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:  # pad to a multiple of 2**depth; reflect needs a pad smaller than the side
            x = F.pad(x, (0, pw, 0, ph), mode="reflect" if ph < h and pw < w else "replicate")
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for up in self.up:
            skip = skips.pop()
            x = up(x, skip, tuple(skip.shape[-2:]))
        return {"out": self.head(x)[..., :h, :w]}  # (B, K, H, W)

    def get_classifier(self) -> nn.Module:
        """The per-pixel classifier (1×1 conv): what fine-tuning on other classes trains afresh."""
        return self.head


@dataclass
class EncoderUNetConfig:
    in_channels: int = 3
    num_classes: int = 2
    encoder: str = "resnet18"  # a registered classifier with per-stage maps (feature_info)
    encoder_config: dict[str, Any] = field(default_factory=dict)  # overrides of the encoder's config
    decoder_widths: list[int] = field(default_factory=lambda: [256, 128, 64, 32, 16])  # deepest first
    up: str = "bilinear"
    norm: str = "batchnorm"
    act: str = "relu"


@register_model("unet_encoder", EncoderUNetConfig, "U-Net decoder on a deepkit classifier's stages (default resnet18)")
class EncoderUNet(Segmenter):
    """Classifier backbone's stage maps (deepest first) -> one ``Up`` per shallower stage, then up to the input
    size (a last ``Up`` without skip), 1×1 conv to the classes (smp's U-Net with a timm encoder, in short)."""

    def __init__(self, cfg: EncoderUNetConfig):
        super().__init__()
        from deepkit.models.registry import create_model, get_entry

        check_names(cfg)
        self.cfg = cfg
        no_stages = ConfigError(
            f"model.encoder={cfg.encoder!r} has no per-stage feature maps (feature_info); use a CNN classifier: "
            "resnet18/34/50, resnet20, vgg11, simple_cnn, lenet5, alexnet"
        )
        if "in_channels" not in {f.name for f in dataclasses.fields(get_entry(cfg.encoder).config_cls)}:
            raise no_stages  # not an image model (mlp, sequence models)
        encoder = create_model(cfg.encoder, **{**cfg.encoder_config, "in_channels": cfg.in_channels})
        info = getattr(encoder, "feature_info", None)
        if not info:
            raise no_stages
        self.encoder = encoder
        self.dropped = drop_unused(encoder, cfg.in_channels)
        chans = [s["num_chs"] for s in info][::-1]  # deepest first
        n = len(chans)
        if len(cfg.decoder_widths) < n:
            raise ConfigError(f"model.decoder_widths needs {n} entries for encoder {cfg.encoder} ({n} stages), "
                              f"got {cfg.decoder_widths}")  # fmt: skip
        widths = list(cfg.decoder_widths[:n])
        ups, c = [], chans[0]
        for i in range(1, n):
            ups.append(Up(c, chans[i], widths[i - 1], cfg.up, cfg.norm, cfg.act))
            c = widths[i - 1]
        ups.append(Up(c, 0, widths[n - 1], cfg.up, cfg.norm, cfg.act))  # to the input size, no skip
        self.decoder = nn.ModuleList(ups)
        self.head = nn.Conv2d(widths[n - 1], cfg.num_classes, 1)
        self.example_size = max(64, getattr(encoder, "min_size", 1))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        size = tuple(x.shape[-2:])
        maps = self.encoder.forward_features(x, stages=True)[::-1]  # deepest first
        y = maps[0]
        for up, skip in zip(self.decoder[:-1], maps[1:], strict=True):
            y = up(y, skip, tuple(skip.shape[-2:]))
        y = self.decoder[-1](y, None, size)
        return {"out": self.head(y)}  # (B, K, H, W)

    def get_classifier(self) -> nn.Module:
        """Everything but the encoder (decoder + 1×1 conv): with a pretrained encoder, the "backbone" of
        ``finetune.freeze_backbone_epochs`` and ``backbone_lr_mult`` is the encoder."""
        return nn.ModuleList([self.decoder, self.head])


def drop_unused(encoder: nn.Module, in_channels: int) -> list[str]:
    """Replace the encoder's top-level modules that ``forward_features(stages=True)`` never reaches (the
    classifier head, hidden FC layers) by ``nn.Identity``; returns their names. Found by one small backward pass."""
    size = max(64, getattr(encoder, "min_size", 1))
    x = torch.zeros(1, in_channels, size, size)
    training = encoder.training
    encoder.eval()
    maps = encoder.forward_features(x, stages=True)
    sum(m.sum() for m in maps).backward()
    encoder.train(training)
    dropped = []
    for name, child in list(encoder.named_children()):
        params = list(child.parameters())
        if params and all(p.grad is None for p in params):
            setattr(encoder, name, nn.Identity())
            dropped.append(name)
    for p in encoder.parameters():
        p.grad = None
    return dropped

"""Conformer-CTC (Gulati et al., 2020): log-mel features, a convolutional subsampling (4x fewer frames), sinusoidal
positions, then Conformer blocks (half feed-forward, multi-head self-attention over the valid frames, a convolution
module with a depthwise convolution, half feed-forward, layer norm), a linear layer to the vocabulary + blank.

The convolution module normalizes with LayerNorm rather than BatchNorm, so padded frames never enter a statistic
and a clip's scores do not depend on its batch; padded frames are zeroed before every depthwise convolution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from deepkit.errors import ConfigError
from deepkit.models._ctc import CTCEncoder, CTCEncoderConfig
from deepkit.models.registry import register_model
from deepkit.nn.audio import length_mask


@dataclass
class ConformerCTCConfig(CTCEncoderConfig):
    dim: int = 96
    num_layers: int = 4
    num_heads: int = 4
    ff_mult: int = 4
    kernel_size: int = 15  # depthwise convolution over output frames
    dropout: float = 0.1


class FeedForward(nn.Sequential):
    def __init__(self, dim: int, mult: int, dropout: float):
        super().__init__(nn.LayerNorm(dim), nn.Linear(dim, dim * mult), nn.SiLU(), nn.Dropout(dropout),
                         nn.Linear(dim * mult, dim), nn.Dropout(dropout))  # fmt: skip


class ConvModule(nn.Module):
    def __init__(self, dim: int, kernel: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.pw1 = nn.Linear(dim, 2 * dim)
        self.dw = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.norm2 = nn.LayerNorm(dim)
        self.pw2 = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        y = F.glu(self.pw1(self.norm(x)), dim=-1) * mask
        y = self.dw(y.transpose(1, 2)).transpose(1, 2)
        return self.drop(self.pw2(F.silu(self.norm2(y))))


class ConformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mult: int, kernel: int, dropout: float):
        super().__init__()
        self.ff1, self.ff2 = FeedForward(dim, mult, dropout), FeedForward(dim, mult, dropout)
        self.attn_norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.attn_drop = nn.Dropout(dropout)
        self.conv = ConvModule(dim, kernel, dropout)
        self.out_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, pad: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + 0.5 * self.ff1(x)
        h = self.attn_norm(x)
        x = x + self.attn_drop(self.attn(h, h, h, key_padding_mask=pad, need_weights=False)[0])
        x = x + self.conv(x, mask)
        return self.out_norm(x + 0.5 * self.ff2(x)) * mask


def sinusoids(length: int, dim: int) -> torch.Tensor:
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    out = torch.zeros(length, dim)
    out[:, 0::2] = torch.sin(pos * freq)
    out[:, 1::2] = torch.cos(pos * freq)[:, : dim // 2]
    return out


@register_model("ctc_conformer", ConformerCTCConfig)
class ConformerCTC(CTCEncoder):
    """Conv subsampling + Conformer blocks + linear CTC head over waveforms."""

    def __init__(self, cfg: ConformerCTCConfig):
        super().__init__()
        if cfg.dim % cfg.num_heads or cfg.kernel_size % 2 == 0:
            raise ConfigError(f"model.dim ({cfg.dim}) must be a multiple of model.num_heads ({cfg.num_heads}) and "
                              f"model.kernel_size ({cfg.kernel_size}) odd")  # fmt: skip
        self.build_front(cfg, cfg.dim)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(ConformerBlock(cfg.dim, cfg.num_heads, cfg.ff_mult, cfg.kernel_size, cfg.dropout)
                                    for _ in range(cfg.num_layers))  # fmt: skip
        self.head = nn.Linear(cfg.dim, cfg.num_classes)

    def encode(self, x: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        valid = length_mask(frames, x.shape[1])
        mask = valid[:, :, None].to(x.dtype)
        x = self.drop(x + sinusoids(x.shape[1], self.cfg.dim).to(x))
        for block in self.blocks:
            x = block(x * mask, ~valid, mask)
        return x

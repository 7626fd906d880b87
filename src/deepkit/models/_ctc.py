"""What the CTC speech encoders share: the feature front end (waveform -> normalized log-mel, SpecAugment in
training; :class:`deepkit.nn.audio.AudioFrontend`), a convolutional subsampling of the frames, the output lengths,
and the waveform example input.

A CTC encoder's ``forward(audio (B, T), lengths (B,) | None) -> (logits (B, frames, num_classes), frames (B,))``:
one row of scores over the vocabulary (blank = 0) per output frame, and the valid output frames of each clip.
Padded frames are zeroed after every block, so a clip's scores do not depend on what it is batched with.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from deepkit.errors import ConfigError
from deepkit.models._audio import AudioClassifier, AudioFrontendConfig, make_frontend
from deepkit.nn.audio import length_mask


@dataclass
class CTCEncoderConfig(AudioFrontendConfig):
    """Front-end settings (8 kHz speech, 32 ms windows every 10 ms) and the subsampling; ``num_classes`` is the
    vocabulary size including the blank (11: the ten digits + blank)."""

    num_classes: int = 11
    subsample: int = 4  # output frame = this many feature frames (1, 2 or 4: stride-2 conv layers)
    conv_channels: int = 32
    dropout: float = 0.1


def stride2(lengths: torch.Tensor) -> torch.Tensor:
    """Frames after a 3-wide convolution with stride 2 and padding 1: ceil(n / 2)."""
    return torch.div(lengths + 1, 2, rounding_mode="floor")


class ConvSubsampling(nn.Module):
    """Features ``(B, F, frames)`` -> ``(B, frames / factor, out_dim)``: ``log2(factor)`` stride-2 3x3 conv layers
    (ReLU) over (frequency, time), then a linear map of channels x bins and a LayerNorm (Conformer's front)."""

    def __init__(self, n_features: int, out_dim: int, factor: int = 4, channels: int = 32):
        super().__init__()
        if factor not in (1, 2, 4):
            raise ConfigError(f"model.subsample must be 1, 2 or 4, got {factor}")
        self.layers = nn.ModuleList()
        c_in, bins = 1, n_features
        for _ in range({1: 0, 2: 1, 4: 2}[factor]):
            self.layers.append(nn.Sequential(nn.Conv2d(c_in, channels, 3, stride=2, padding=1), nn.ReLU()))
            c_in, bins = channels, -(-bins // 2)
        self.proj = nn.Linear(c_in * bins, out_dim)
        self.norm = nn.LayerNorm(out_dim)  # without it the projection's large constant part saturated the LSTM gates

    def output_lengths(self, frames: torch.Tensor) -> torch.Tensor:
        for _ in self.layers:
            frames = stride2(frames)
        return frames

    def forward(self, feats: torch.Tensor, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = feats[:, None]
        for layer in self.layers:
            x = layer(x)
            frames = stride2(frames)
            x = x * length_mask(frames, x.shape[-1])[:, None, None, :].to(x.dtype)
        b, c, f, t = x.shape
        return self.norm(self.proj(x.permute(0, 3, 1, 2).reshape(b, t, c * f))), frames


class CTCEncoder(nn.Module):
    """Base of the CTC encoders: ``self.frontend``, ``self.subsampling``, ``self.cfg``; subclasses define
    ``encode(x (B, frames, D), frames) -> (B, frames, H)`` and ``self.head`` (H -> num_classes)."""

    cfg: CTCEncoderConfig

    def build_front(self, cfg: CTCEncoderConfig, dim: int) -> None:
        if cfg.num_classes < 2:
            raise ConfigError(f"model.num_classes (vocabulary + blank) must be >= 2, got {cfg.num_classes}")
        self.cfg = cfg
        self.frontend = make_frontend(cfg)
        self.subsampling = ConvSubsampling(self.frontend.num_features, dim, cfg.subsample, cfg.conv_channels)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Output frames of clips of ``lengths`` samples."""
        return self.subsampling.output_lengths(self.frontend.frames(lengths))

    @property
    def seconds_per_frame(self) -> float:
        return self.frontend.hop_length * self.cfg.subsample / self.cfg.sample_rate

    example_input = AudioClassifier.example_input  # {"audio": (batch_size, 0.5 s of noise), "lengths"}

    def encode(self, x: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, audio: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        feats, frames = self.frontend(audio, lengths)
        x, frames = self.subsampling(feats, frames)
        x = x * length_mask(frames, x.shape[1])[:, :, None].to(x.dtype)
        return self.head(self.encode(x, frames)), frames

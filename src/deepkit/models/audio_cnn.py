"""A CNN on log-mel spectrograms for short clips (spoken digits, keywords): conv blocks over (mel, time) with
batch norm and 2x2 max pooling, then mean + max pooling over the valid frames and a linear classifier.

The features are computed inside the model (:class:`deepkit.nn.audio.AudioFrontend`), so it takes waveforms.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from deepkit.models._audio import AudioClassifier, AudioFrontendConfig, halve, make_frontend, masked_mean_max
from deepkit.models.registry import register_model
from deepkit.nn.audio import length_mask


@dataclass
class AudioCNNConfig(AudioFrontendConfig):
    channels: list[int] = field(default_factory=lambda: [32, 64, 128])  # one block (two 3x3 convs + pool) each
    dropout: float = 0.3


class ConvBlock(nn.Module):
    """Two 3x3 conv + BN + ReLU, then 2x2 max pooling (ceil mode: a frame is never lost)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        )  # fmt: skip
        self.pool = nn.MaxPool2d(2, ceil_mode=True)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool(self.body(x))
        lengths = halve(lengths)
        return x * length_mask(lengths, x.shape[-1])[:, None, None, :].to(x.dtype), lengths


@register_model("audio_cnn", AudioCNNConfig)
class AudioCNN(AudioClassifier):
    """CNN on log-mel features (conv blocks, masked mean+max pooling over time, linear head) for audio clips."""

    def __init__(self, cfg: AudioCNNConfig):
        super().__init__()
        self.cfg = cfg
        self.frontend = make_frontend(cfg)
        chans = [1, *cfg.channels]
        self.blocks = nn.ModuleList(ConvBlock(a, b) for a, b in zip(chans[:-1], chans[1:], strict=True))
        self.num_features = 2 * chans[-1]
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(self.num_features, cfg.num_classes)

    def forward_features(self, audio: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        feats, frames = self.frontend(audio, lengths)
        x = feats[:, None]  # (B, 1, F, T)
        for block in self.blocks:
            x, frames = block(x, frames)
        return masked_mean_max(x.mean(2), frames)

    def forward_head(self, feats: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(feats)
        return x if pre_logits else self.head(x)

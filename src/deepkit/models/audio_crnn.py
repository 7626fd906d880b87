"""A small CRNN for audio clips: conv blocks that pool mostly over frequency, a bidirectional GRU (or LSTM) over
the frames, mean + max pooling of its outputs over the valid frames, a linear classifier.

The recurrent layer runs on packed sequences, so padding never reaches the backward direction. The features are
computed inside the model (:class:`deepkit.nn.audio.AudioFrontend`), so it takes waveforms.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from deepkit.errors import ConfigError
from deepkit.models._audio import AudioClassifier, AudioFrontendConfig, halve, make_frontend, masked_mean_max
from deepkit.models.registry import register_model
from deepkit.nn.audio import length_mask


@dataclass
class AudioCRNNConfig(AudioFrontendConfig):
    channels: list[int] = field(default_factory=lambda: [32, 64])  # conv blocks: (2, 2) pooling, then (2, 1)
    rnn: str = "gru"  # gru or lstm
    hidden_size: int = 96  # per direction
    num_layers: int = 1
    dropout: float = 0.3


@register_model("audio_crnn", AudioCRNNConfig)
class AudioCRNN(AudioClassifier):
    """CRNN on log-mel features: conv blocks, a bidirectional GRU/LSTM over time, masked pooling, linear head."""

    def __init__(self, cfg: AudioCRNNConfig):
        super().__init__()
        if cfg.rnn not in ("gru", "lstm"):
            raise ConfigError(f"model.rnn must be 'gru' or 'lstm', got {cfg.rnn!r}")
        self.cfg = cfg
        self.frontend = make_frontend(cfg)
        chans = [1, *cfg.channels]
        self.convs = nn.ModuleList()
        self.time_pool = []
        bins = self.frontend.num_features
        for i, (a, b) in enumerate(zip(chans[:-1], chans[1:], strict=True)):
            pool_t = 2 if i == 0 else 1  # halve the frame rate once (20 ms per step at a 10 ms hop)
            self.convs.append(nn.Sequential(
                nn.Conv2d(a, b, 3, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True),
                nn.MaxPool2d((2, pool_t), ceil_mode=True),
            ))  # fmt: skip
            self.time_pool.append(pool_t)
            bins = -(-bins // 2)
        rnn_cls = nn.GRU if cfg.rnn == "gru" else nn.LSTM
        self.rnn = rnn_cls(chans[-1] * bins, cfg.hidden_size, cfg.num_layers, batch_first=True, bidirectional=True,
                           dropout=cfg.dropout if cfg.num_layers > 1 else 0.0)  # fmt: skip
        self.num_features = 4 * cfg.hidden_size
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(self.num_features, cfg.num_classes)

    def forward_features(self, audio: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        feats, frames = self.frontend(audio, lengths)
        x = feats[:, None]
        for conv, pool_t in zip(self.convs, self.time_pool, strict=True):
            x = conv(x)
            if pool_t == 2:
                frames = halve(frames)
            x = x * length_mask(frames, x.shape[-1])[:, None, None, :].to(x.dtype)
        b, c, f, t = x.shape
        seq = x.permute(0, 3, 1, 2).reshape(b, t, c * f)
        packed = nn.utils.rnn.pack_padded_sequence(seq, frames.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=t)
        return masked_mean_max(out.transpose(1, 2), frames)

    def forward_head(self, feats: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(feats)
        return x if pre_logits else self.head(x)

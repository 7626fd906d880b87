"""What the audio classifiers share: the feature front end's settings (a config base class), the front end itself
(:class:`deepkit.nn.audio.AudioFrontend`: waveform -> normalized log-mel or MFCC, SpecAugment in training),
masked pooling over time, and the waveform example input.

An audio classifier's ``forward(audio (B, T), lengths (B,) | None) -> logits (B, num_classes)``; ``lengths`` are
the valid samples of each row of a zero-padded batch (None: every row is whole). Padded frames are zeroed after
every block, and pooling covers valid frames only, so a clip's logits do not depend on what it is batched with.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from deepkit.models.base import Classifier, example_generator, model_device
from deepkit.nn.audio import AudioFrontend, length_mask


@dataclass
class AudioFrontendConfig:
    """Feature settings shared by the audio models (defaults: 8 kHz speech, 32 ms windows every 10 ms)."""

    num_classes: int = 10
    sample_rate: int = 8000
    features: str = "logmel"  # logmel or mfcc
    n_fft: int = 256
    hop_length: int = 80
    win_length: int | None = None  # default n_fft
    n_mels: int = 40
    n_mfcc: int = 20
    f_min: float = 20.0
    f_max: float | None = None  # default sample_rate / 2
    mel_scale: str = "slaney"  # slaney or htk
    norm: str = "global"  # global (fitted on the training split), utterance, none
    freq_masks: int = 2  # SpecAugment (training only); 0 masks: off
    freq_width: int = 6
    time_masks: int = 2
    time_width: int = 8
    max_time_ratio: float = 0.2


def make_frontend(cfg: AudioFrontendConfig) -> AudioFrontend:
    return AudioFrontend(
        cfg.sample_rate, cfg.features, cfg.n_fft, cfg.hop_length, cfg.win_length, cfg.n_mels, cfg.n_mfcc, cfg.f_min,
        cfg.f_max, cfg.mel_scale, cfg.norm, cfg.freq_masks, cfg.freq_width, cfg.time_masks, cfg.time_width,
        cfg.max_time_ratio,
    )  # fmt: skip


def masked_mean_max(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``(B, C, T)`` -> ``(B, 2C)``: mean and max over the valid frames of each row."""
    mask = length_mask(lengths, x.shape[-1])[:, None, :]
    mean = (x * mask).sum(-1) / lengths.clamp(min=1)[:, None].to(x.dtype)
    peak = x.masked_fill(~mask, torch.finfo(x.dtype).min).amax(-1)
    return torch.cat([mean, peak], 1)


def halve(lengths: torch.Tensor) -> torch.Tensor:
    """Frame lengths after a ceil-mode pooling of 2 over time."""
    return torch.div(lengths + 1, 2, rounding_mode="floor")


class AudioClassifier(Classifier):
    """Base of the waveform classifiers: ``self.frontend`` and ``self.cfg``; subclasses define
    ``forward_features(audio, lengths) -> (B, num_features)``, ``forward_head`` and ``reset_classifier``."""

    cfg: AudioFrontendConfig

    def example_input(self, batch_size: int = 2) -> dict[str, torch.Tensor]:
        """``{"audio": (batch_size, 0.5 s), "lengths"}``: noise at the model's rate, the rows of decreasing length."""
        g = example_generator()
        n = self.cfg.sample_rate // 2
        audio = 0.1 * torch.randn(batch_size, n, generator=g)
        lengths = torch.tensor([max(n - i * n // (2 * batch_size), n // 4) for i in range(batch_size)])
        audio = audio * length_mask(lengths, n).float()
        dev = model_device(self)
        return {"audio": audio.to(dev), "lengths": lengths.to(dev)}

    def forward(self, audio: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_head(self.forward_features(audio, lengths))

    def reset_classifier(self, num_classes: int) -> None:
        self.cfg.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes)

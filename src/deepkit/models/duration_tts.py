"""A duration-based (FastSpeech-like) text-to-speech acoustic model for short words: phonemes + a speaker -> log-mel
frames, with a word duration predictor and, inside the word, attention from frames to phonemes.

How a word is spoken (one batch row = one word):

* **Phoneme encoder**: phoneme embeddings plus the phoneme's relative place in the word, two 1-D convolutions over
  the word's phonemes (kernel 3), the speaker embedding added.
* **Duration**: the log of the word's number of frames, from the encoder's masked mean and the speaker (a small
  MLP). Training uses the true length (teacher forcing); synthesis rounds the prediction.
* **Frame queries**: each of the ``T`` output frames knows its relative place ``(t + 0.5) / T`` in the word and its
  absolute time ``t``, both as sinusoids, plus ``log T`` and the speaker.
* **Attention** (scaled dot product, one head): frame queries over the phoneme encodings; the weights ``(T, P)``
  are the alignment the family plots. Duration is fixed by the word, so the attention only places phonemes
  inside it: a much easier problem than Tacotron's open-ended alignment, and one that trains on a few hundred words.
* **Decoder**: the context, the query and the speaker through three masked 1-D convolutions (kernel 5) over time,
  then a linear layer to ``n_mels`` normalized log-mel values.

The outputs are normalized log-mel frames; the buffers ``mel_mean``/``mel_std`` (fitted on the training split by
the family) turn them back into log-mel (``denormalize``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from deepkit.models.base import example_generator, model_device
from deepkit.models.registry import register_model
from deepkit.nn.audio import length_mask


@dataclass
class DurationTTSConfig:
    num_phonemes: int = 20  # including the padding id 0
    num_speakers: int = 6
    n_mels: int = 40
    dim: int = 128
    speaker_dim: int = 32
    position_freqs: int = 8  # sinusoids of the relative place in the word (frames and phonemes)
    time_freqs: int = 8  # sinusoids of the absolute frame index
    kernel_size: int = 5
    decoder_layers: int = 3
    dropout: float = 0.1


def sinusoids(x: torch.Tensor, freqs: int, base: float) -> torch.Tensor:
    """``(...,)`` -> ``(..., 2 * freqs)``: sin and cos of ``x * base ** (-k / freqs)`` times pi (k = 0 .. freqs-1)."""
    scale = torch.pi * base ** (-torch.arange(freqs, device=x.device, dtype=torch.float32) / freqs)
    ang = x[..., None].float() * scale
    return torch.cat([ang.sin(), ang.cos()], -1)


class MaskedConv(nn.Module):
    """1-D convolution + ReLU + layer norm + dropout over ``(B, T, C)``, padded positions zeroed before and after."""

    def __init__(self, cin: int, cout: int, k: int, dropout: float):
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, k, padding=k // 2)
        self.norm = nn.LayerNorm(cout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x * mask[..., None]
        y = F.relu(self.conv(x.transpose(1, 2)).transpose(1, 2))
        return self.drop(self.norm(y)) * mask[..., None]


@register_model(
    "duration_tts", DurationTTSConfig, description="duration-based TTS for short words (speaker, attention)"
)
class DurationTTS(nn.Module):
    """``forward(phonemes (B, P), speaker (B,), frames (B,)) -> (mel (B, T, n_mels), log_duration (B,),
    attention (B, T, P))`` with ``T = frames.max()``; ``phonemes`` are 0-padded ids, ``frames`` the word lengths
    (true ones in training, :meth:`predict_frames` at synthesis)."""

    def __init__(self, cfg: DurationTTSConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        self.phoneme = nn.Embedding(cfg.num_phonemes, d, padding_idx=0)
        self.speaker = nn.Embedding(cfg.num_speakers, cfg.speaker_dim)
        self.phone_pos = nn.Linear(2 * cfg.position_freqs, d)
        self.enc_speaker = nn.Linear(cfg.speaker_dim, d)
        self.encoder = nn.ModuleList(MaskedConv(d, d, 3, cfg.dropout) for _ in range(2))
        self.duration = nn.Sequential(nn.Linear(d + cfg.speaker_dim, d), nn.ReLU(), nn.Linear(d, 1))
        qin = 2 * cfg.position_freqs + 2 * cfg.time_freqs + 1 + cfg.speaker_dim
        self.query = nn.Sequential(nn.Linear(qin, d), nn.ReLU(), nn.Linear(d, d))
        self.key = nn.Linear(d, d)
        chans = [2 * d + cfg.speaker_dim] + [d] * cfg.decoder_layers
        self.decoder = nn.ModuleList(
            MaskedConv(a, b, cfg.kernel_size, cfg.dropout) for a, b in zip(chans[:-1], chans[1:], strict=True)
        )
        self.out = nn.Linear(d, cfg.n_mels)
        nn.init.constant_(self.duration[-1].bias, math.log(40.0))  # a typical word: 40 frames
        self.register_buffer("mel_mean", torch.zeros(cfg.n_mels))
        self.register_buffer("mel_std", torch.ones(cfg.n_mels))

    def encode(self, phonemes: torch.Tensor, speaker: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Phoneme encodings ``(B, P, dim)``, their mask ``(B, P)`` and the speaker vectors ``(B, speaker_dim)``."""
        mask = (phonemes > 0).float()
        n = mask.sum(1, keepdim=True).clamp(min=1)
        rel = (torch.arange(phonemes.shape[1], device=phonemes.device)[None] + 0.5) / n
        spk = self.speaker(speaker)
        h = self.phoneme(phonemes) + self.phone_pos(sinusoids(rel, self.cfg.position_freqs, 8.0))
        h = h + self.enc_speaker(spk)[:, None]
        for layer in self.encoder:
            h = h + layer(h, mask)
        return h * mask[..., None], mask, spk

    def log_duration(self, enc: torch.Tensor, mask: torch.Tensor, spk: torch.Tensor) -> torch.Tensor:
        pooled = (enc * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        return self.duration(torch.cat([pooled, spk], -1)).squeeze(-1)

    def predict_frames(self, phonemes: torch.Tensor, speaker: torch.Tensor, pace: float = 1.0) -> torch.Tensor:
        """Each word's length in frames (at least 3), ``pace`` > 1 slower."""
        enc, mask, spk = self.encode(phonemes, speaker)
        return (self.log_duration(enc, mask, spk).exp() * pace).round().clamp(min=3).long()

    def forward(
        self, phonemes: torch.Tensor, speaker: torch.Tensor, frames: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        cfg = self.cfg
        enc, pmask, spk = self.encode(phonemes, speaker)
        log_dur = self.log_duration(enc, pmask, spk)
        t_max = int(frames.max())
        t = torch.arange(t_max, device=frames.device)[None].float().expand(len(frames), -1)
        fmask = length_mask(frames, t_max).float()
        rel = (t + 0.5) / frames[:, None].float()
        log_t = frames.float().log()[:, None, None].expand(-1, t_max, 1)
        q_in = [sinusoids(rel, cfg.position_freqs, 8.0), sinusoids(t, cfg.time_freqs, 64.0), log_t,
                spk[:, None].expand(-1, t_max, -1)]  # fmt: skip
        q = self.query(torch.cat(q_in, -1))
        scores = q @ self.key(enc).transpose(1, 2) / math.sqrt(cfg.dim)
        attn = scores.masked_fill(pmask[:, None] == 0, -1e4).softmax(-1)
        ctx = attn @ enc
        h = torch.cat([ctx, q, spk[:, None].expand(-1, t_max, -1)], -1)
        for i, layer in enumerate(self.decoder):
            y = layer(h, fmask)
            h = y if i == 0 else h + y
        mel = self.out(h) * fmask[..., None]
        return mel, log_dur, attn * fmask[..., None]

    def denormalize(self, mel: torch.Tensor) -> torch.Tensor:
        """Normalized outputs -> log-mel (natural log of mel power)."""
        return mel * self.mel_std + self.mel_mean

    def example_input(self, batch_size: int = 2) -> dict[str, torch.Tensor]:
        """Words of 2-4 random phonemes, random speakers, 6-12 frames."""
        g = example_generator()
        n = torch.randint(2, 5, (batch_size,), generator=g)
        phonemes = torch.randint(1, self.cfg.num_phonemes, (batch_size, 4), generator=g) * length_mask(n, 4).long()
        dev = model_device(self)
        return {"phonemes": phonemes.to(dev),
                "speaker": torch.randint(0, self.cfg.num_speakers, (batch_size,), generator=g).to(dev),
                "frames": torch.randint(6, 13, (batch_size,), generator=g).to(dev)}  # fmt: skip

"""Audio features as torch modules: resampling, STFT, mel filterbanks, log-mel, MFCC, normalization, SpecAugment.

Everything here is torch only (no numpy in ``forward``), so a model that starts from waveforms can be exported with
its feature front end. Filterbanks and windows are computed once, in float64, and kept as buffers. The conventions
follow librosa's (``tests/nn/test_audio_features.py`` checks them to 1e-4):

* :class:`Spectrogram`: ``|STFT|**power`` with a periodic Hann window, frames centred (``center=True``: the signal
  padded by ``n_fft // 2`` zeros at both ends), so a clip of ``n`` samples has ``1 + n // hop`` frames.
* :func:`mel_filterbank`: triangular filters on the HTK or the Slaney mel scale, optionally area-normalized
  (``norm="slaney"``), as ``librosa.filters.mel``.
* :class:`LogMel`: ``log(mel + eps)`` or decibels (``10 log10``, ``top_db`` below each utterance's peak, as
  ``librosa.power_to_db``).
* :class:`MFCC`: the orthonormal DCT-II of decibel log-mel frames, as ``librosa.feature.mfcc``.
* :class:`Resample`: polyphase windowed-sinc (Kaiser window) between any two integer rates.
* :class:`FeatureNorm`: per-utterance or global (statistics fitted on training data, kept as buffers) mean and
  variance normalization over the valid frames only.
* :class:`SpecAugment`: time and frequency masks, drawn only in training mode.

Shapes: waveforms ``(B, T)`` (or ``(T,)``); features ``(B, F, frames)``; ``lengths`` are valid samples or frames
per row of a padded batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from deepkit.errors import ConfigError


# --- lengths and masks ----------------------------------------------------------------------------------------------
def frame_lengths(
    lengths: torch.Tensor, hop_length: int, center: bool = True, n_fft: int | None = None
) -> torch.Tensor:
    """Frames of the STFT of clips of ``lengths`` samples (``1 + n // hop`` when centred)."""
    if center:
        return torch.div(lengths, hop_length, rounding_mode="floor") + 1
    assert n_fft is not None, "frames without centring need n_fft"
    return torch.div((lengths - n_fft).clamp(min=0), hop_length, rounding_mode="floor") + 1


def length_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """``(B, max_len)`` bool: True where a position is inside its row's length."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


# --- mel scale --------------------------------------------------------------------------------------------------------
def hz_to_mel(f: torch.Tensor, htk: bool = False) -> torch.Tensor:
    """Hertz to mels: HTK's ``2595 log10(1 + f / 700)``, or Slaney's (linear below 1 kHz, logarithmic above)."""
    f = torch.as_tensor(f, dtype=torch.float64)
    if htk:
        return 2595.0 * torch.log10(1.0 + f / 700.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    linear = f / f_sp
    log = min_log_mel + torch.log(torch.clamp(f, min=min_log_hz) / min_log_hz) / logstep
    return torch.where(f >= min_log_hz, log, linear)


def mel_to_hz(m: torch.Tensor, htk: bool = False) -> torch.Tensor:
    """The inverse of :func:`hz_to_mel`."""
    m = torch.as_tensor(m, dtype=torch.float64)
    if htk:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return torch.where(m >= min_log_mel, min_log_hz * torch.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_filterbank(
    sample_rate: int,
    n_fft: int,
    n_mels: int,
    f_min: float = 0.0,
    f_max: float | None = None,
    htk: bool = False,
    norm: str | None = "slaney",
) -> torch.Tensor:
    """``(n_mels, n_fft // 2 + 1)`` float64 triangular filters (librosa's ``filters.mel``): filter ``i`` rises from
    mel point ``i`` to ``i + 1`` and falls to ``i + 2`` of ``n_mels + 2`` points evenly spaced in mels between
    ``f_min`` and ``f_max``; ``norm="slaney"`` divides each by its width in Hz / 2 (constant energy per band)."""
    f_max = sample_rate / 2 if f_max is None else f_max
    if not 0 <= f_min < f_max <= sample_rate / 2:
        raise ConfigError(f"mel filterbank: need 0 <= f_min < f_max <= sample_rate / 2, got f_min={f_min}, "
                          f"f_max={f_max}, sample_rate={sample_rate}")  # fmt: skip
    if norm not in (None, "slaney"):
        raise ConfigError(f"mel filterbank norm must be 'slaney' or None, got {norm!r}")
    fft_freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    mels = torch.linspace(float(hz_to_mel(f_min, htk)), float(hz_to_mel(f_max, htk)), n_mels + 2, dtype=torch.float64)
    hz = mel_to_hz(mels, htk)
    widths = hz.diff()
    ramps = hz[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = torch.clamp(torch.minimum(lower, upper), min=0.0)
    if norm == "slaney":
        weights = weights * (2.0 / (hz[2:] - hz[:-2]))[:, None]
    return weights


def dct_matrix(n_mfcc: int, n_mels: int) -> torch.Tensor:
    """``(n_mfcc, n_mels)`` float64 orthonormal DCT-II (scipy's ``dct(type=2, norm="ortho")``, first rows)."""
    n = torch.arange(n_mels, dtype=torch.float64)
    k = torch.arange(n_mfcc, dtype=torch.float64)[:, None]
    basis = torch.cos(math.pi / n_mels * (n + 0.5) * k) * math.sqrt(2.0 / n_mels)
    basis[0] /= math.sqrt(2.0)
    return basis


# --- feature modules --------------------------------------------------------------------------------------------------
class Spectrogram(nn.Module):
    """``|STFT(x)|**power``: ``(B, T)`` -> ``(B, n_fft // 2 + 1, frames)``; periodic Hann window of ``win_length``
    (centred in ``n_fft``), frames centred on ``t * hop_length`` with zero padding (librosa's defaults)."""

    def __init__(
        self, n_fft: int = 400, hop_length: int | None = None, win_length: int | None = None, power: float = 2.0,
        center: bool = True,
    ):  # fmt: skip
        super().__init__()
        win_length = win_length or n_fft
        if win_length > n_fft:
            raise ConfigError(f"win_length ({win_length}) must be at most n_fft ({n_fft})")
        self.n_fft, self.hop_length, self.win_length = n_fft, hop_length or win_length // 4, win_length
        self.power, self.center = power, center
        self.register_buffer("window", torch.hann_window(win_length, periodic=True, dtype=torch.float64).float(),
                             persistent=False)  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        if self.center:  # zero padding (torch.stft pads by reflection unless told), as librosa >= 0.10
            x = F.pad(x, (self.n_fft // 2, self.n_fft // 2))
        spec = torch.stft(x, self.n_fft, self.hop_length, self.win_length, self.window.to(x.dtype), center=False,
                          return_complex=True)  # fmt: skip
        mag = spec.abs()
        out = mag if self.power == 1.0 else mag.pow(self.power)
        return out.reshape(*shape[:-1], *out.shape[-2:])

    def frames(self, lengths: torch.Tensor) -> torch.Tensor:
        return frame_lengths(lengths, self.hop_length, self.center, self.n_fft)


class MelSpectrogram(nn.Module):
    """Mel-band power: ``(B, T)`` -> ``(B, n_mels, frames)`` (librosa's ``feature.melspectrogram``)."""

    def __init__(
        self, sample_rate: int = 16000, n_fft: int = 400, hop_length: int | None = None, win_length: int | None = None,
        n_mels: int = 80, f_min: float = 0.0, f_max: float | None = None, htk: bool = False,
        norm: str | None = "slaney", power: float = 2.0, center: bool = True,
    ):  # fmt: skip
        super().__init__()
        self.sample_rate, self.n_mels = sample_rate, n_mels
        self.spectrogram = Spectrogram(n_fft, hop_length, win_length, power, center)
        fb = mel_filterbank(sample_rate, n_fft, n_mels, f_min, f_max, htk, norm)
        if (fb.sum(1) == 0).any():
            empty = int((fb.sum(1) == 0).sum())
            raise ConfigError(f"{empty} of {n_mels} mel filters are empty with n_fft={n_fft} at {sample_rate} Hz: "
                              "use fewer mels or a larger n_fft")  # fmt: skip
        self.register_buffer("filterbank", fb.float(), persistent=False)

    @property
    def hop_length(self) -> int:
        return self.spectrogram.hop_length

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.matmul(self.filterbank.to(x.dtype), self.spectrogram(x))

    def frames(self, lengths: torch.Tensor) -> torch.Tensor:
        return self.spectrogram.frames(lengths)


def power_to_db(x: torch.Tensor, amin: float = 1e-10, top_db: float | None = 80.0, ref: float = 1.0) -> torch.Tensor:
    """``10 log10(max(x, amin) / ref)``, floored ``top_db`` below the peak of each item of the batch (dims after the
    first); librosa's ``power_to_db`` for one item."""
    db = 10.0 * torch.log10(torch.clamp(x, min=amin)) - 10.0 * math.log10(max(amin, ref))
    if top_db is not None:
        peak = db.reshape(db.shape[0], -1).amax(1) if db.ndim > 1 else db.amax()
        floor = (peak - top_db).reshape(-1, *([1] * (db.ndim - 1))) if db.ndim > 1 else peak - top_db
        db = torch.maximum(db, floor)
    return db


class LogMel(nn.Module):
    """Log mel-band power: ``log(mel + eps)`` (``scale="log"``) or decibels (``scale="db"``, floored ``top_db``
    below each utterance's peak). ``(B, T)`` -> ``(B, n_mels, frames)``."""

    def __init__(self, scale: str = "log", eps: float = 1e-6, top_db: float | None = 80.0, **mel):
        super().__init__()
        if scale not in ("log", "db"):
            raise ConfigError(f"log-mel scale must be 'log' or 'db', got {scale!r}")
        self.scale, self.eps, self.top_db = scale, eps, top_db
        self.mel = MelSpectrogram(**mel)

    @property
    def n_mels(self) -> int:
        return self.mel.n_mels

    @property
    def hop_length(self) -> int:
        return self.mel.hop_length

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.mel(x)
        if self.scale == "db":
            return power_to_db(m, top_db=self.top_db)
        return torch.log(m + self.eps)

    def frames(self, lengths: torch.Tensor) -> torch.Tensor:
        return self.mel.frames(lengths)


class MFCC(nn.Module):
    """Mel-frequency cepstral coefficients: the orthonormal DCT-II of decibel log-mel frames, first ``n_mfcc``
    (librosa's ``feature.mfcc``). ``(B, T)`` -> ``(B, n_mfcc, frames)``."""

    def __init__(self, n_mfcc: int = 20, top_db: float | None = 80.0, **mel):
        super().__init__()
        self.logmel = LogMel(scale="db", top_db=top_db, **mel)
        if n_mfcc > self.logmel.n_mels:
            raise ConfigError(f"n_mfcc ({n_mfcc}) must be at most n_mels ({self.logmel.n_mels})")
        self.n_mfcc = n_mfcc
        self.register_buffer("dct", dct_matrix(n_mfcc, self.logmel.n_mels).float(), persistent=False)

    @property
    def hop_length(self) -> int:
        return self.logmel.hop_length

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.matmul(self.dct.to(x.dtype), self.logmel(x))

    def frames(self, lengths: torch.Tensor) -> torch.Tensor:
        return self.logmel.frames(lengths)


# --- resampling -------------------------------------------------------------------------------------------------------
def _kaiser(x: torch.Tensor, beta: float) -> torch.Tensor:
    """Kaiser window at positions ``x`` in [-1, 1] (0 outside)."""
    inside = x.abs() <= 1
    w = torch.special.i0(beta * torch.sqrt(torch.clamp(1 - x * x, min=0.0))) / torch.special.i0(torch.tensor(beta))
    return torch.where(inside, w, torch.zeros_like(w))


class Resample(nn.Module):
    """Band-limited resampling from ``orig`` to ``new`` Hz: a polyphase windowed-sinc filter.

    The rates are reduced by their gcd to ``L`` (input step) and ``M`` (output phases); output sample ``k M + p``
    sits at input position ``k L + p L / M``. Each of the ``M`` phases is one row of a ``conv1d`` of stride ``L``
    whose taps are ``r sinc(r t) w(t / width)``: ``r = rolloff * min(1, new / orig)`` is the cutoff relative to
    the input's Nyquist frequency (below the lower of the two), ``w`` a Kaiser window of ``zeros`` zero crossings
    each side. Defaults (16 zero crossings, rolloff 0.945, beta 14.77) keep the passband within ~1e-3 and stop
    aliases by ~80 dB. An output of ``ceil(n * new / orig)`` samples.
    """

    def __init__(self, orig: int, new: int, zeros: int = 16, rolloff: float = 0.945, beta: float = 14.769656459379492):
        super().__init__()
        if orig <= 0 or new <= 0:
            raise ConfigError(f"sample rates must be positive, got {orig} -> {new}")
        self.orig, self.new = int(orig), int(new)
        g = math.gcd(self.orig, self.new)
        self.L, self.M = self.orig // g, self.new // g
        r = rolloff * min(1.0, self.new / self.orig)
        width = zeros / r  # half-width of the filter in input samples
        self.pad = math.ceil(width)
        taps = torch.arange(2 * self.pad + self.L, dtype=torch.float64)
        phase = torch.arange(self.M, dtype=torch.float64)[:, None] * self.L / self.M
        t = phase + self.pad - taps[None, :]  # distance from the output instant to each tap, in input samples
        kernel = r * torch.sinc(r * t) * _kaiser(t / width, beta)
        self.register_buffer("kernel", kernel.float()[:, None, :], persistent=False)  # (M, 1, taps)

    def output_length(self, n: int | torch.Tensor) -> int | torch.Tensor:
        if isinstance(n, torch.Tensor):
            return torch.div(n * self.new + self.orig - 1, self.orig, rounding_mode="floor")
        return -(-n * self.new // self.orig)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.orig == self.new:
            return x
        shape = x.shape
        x = x.reshape(-1, 1, shape[-1])
        n = shape[-1]
        blocks = -(-n // self.L)  # output blocks of M samples
        right = blocks * self.L - n + self.pad + self.L
        y = F.conv1d(F.pad(x, (self.pad, right)), self.kernel.to(x.dtype), stride=self.L)[..., :blocks]
        y = y.transpose(1, 2).reshape(x.shape[0], -1)[:, : self.output_length(n)]
        return y.reshape(*shape[:-1], y.shape[-1])


# --- normalization and augmentation ---------------------------------------------------------------------------------
def masked_mean_std(x: torch.Tensor, lengths: torch.Tensor | None, eps: float = 1e-5) -> tuple[torch.Tensor, ...]:
    """Per-row, per-feature mean and std over the valid frames of ``x`` ``(B, F, frames)``: ``(B, F, 1)`` each."""
    if lengths is None:
        return x.mean(-1, keepdim=True), x.std(-1, unbiased=False, keepdim=True).clamp(min=eps)
    mask = length_mask(lengths, x.shape[-1])[:, None, :].to(x.dtype)
    count = mask.sum(-1, keepdim=True).clamp(min=1)
    mean = (x * mask).sum(-1, keepdim=True) / count
    var = (((x - mean) * mask) ** 2).sum(-1, keepdim=True) / count
    return mean, var.sqrt().clamp(min=eps)


class FeatureNorm(nn.Module):
    """Mean and variance normalization of features ``(B, F, frames)`` per feature (mel band):

    * ``"utterance"``: each clip by its own statistics over its valid frames (CMVN);
    * ``"global"``: by ``mean``/``std`` buffers fitted on training data (:meth:`fit`; saved with the weights);
    * ``"none"``: unchanged.

    Padded frames are set to 0 after normalization, so they never carry information."""

    def __init__(self, n_features: int, mode: str = "global", eps: float = 1e-5):
        super().__init__()
        if mode not in ("global", "utterance", "none"):
            raise ConfigError(f"feature normalization must be 'global', 'utterance' or 'none', got {mode!r}")
        self.mode, self.eps = mode, eps
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def fit(self, batches) -> int:
        """Global statistics from ``(features (B, F, frames), lengths or None)`` batches (training data only):
        per-feature mean and std over every valid frame, accumulated in float64. Returns the frames counted."""
        total = torch.zeros((), dtype=torch.float64)
        s1 = torch.zeros_like(self.mean, dtype=torch.float64)
        s2 = torch.zeros_like(self.mean, dtype=torch.float64)
        for feats, lengths in batches:
            f = feats.double()
            if lengths is None:
                mask = torch.ones(f.shape[0], f.shape[-1], dtype=torch.float64, device=f.device)
            else:
                mask = length_mask(lengths.to(f.device), f.shape[-1]).double()
            total += mask.sum().cpu()
            s1 += (f * mask[:, None]).sum((0, 2)).cpu()
            s2 += (f * f * mask[:, None]).sum((0, 2)).cpu()
        if total == 0:
            raise ConfigError("feature normalization: no frames to fit the statistics on")
        mean = s1 / total
        std = (s2 / total - mean * mean).clamp(min=0).sqrt().clamp(min=self.eps)
        self.mean.copy_(mean.float())
        self.std.copy_(std.float())
        self.fitted.fill_(True)
        return int(total)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if self.mode == "none":
            return x
        if self.mode == "utterance":
            mean, std = masked_mean_std(x, lengths, self.eps)
            y = (x - mean) / std
        else:
            y = (x - self.mean[:, None].to(x.dtype)) / self.std[:, None].to(x.dtype)
        if lengths is not None:
            y = y * length_mask(lengths, x.shape[-1])[:, None, :].to(y.dtype)
        return y


class SpecAugment(nn.Module):
    """SpecAugment's masks (Park et al., 2019) on features ``(B, F, frames)``, in training mode only: per clip,
    ``freq_masks`` bands of up to ``freq_width`` features and ``time_masks`` spans of up to ``time_width`` frames
    (and at most ``max_time_ratio`` of the clip's valid frames) set to ``value`` (0: the mean after normalization).
    Random draws use torch's global generator, which deepkit's checkpoints save, so resumed runs draw the same."""

    def __init__(
        self, freq_masks: int = 2, freq_width: int = 8, time_masks: int = 2, time_width: int = 10,
        max_time_ratio: float = 0.2, value: float = 0.0,
    ):  # fmt: skip
        super().__init__()
        for name, v in (("freq_masks", freq_masks), ("freq_width", freq_width), ("time_masks", time_masks),
                        ("time_width", time_width)):  # fmt: skip
            if v < 0:
                raise ConfigError(f"SpecAugment {name} must be >= 0, got {v}")
        if not 0 <= max_time_ratio <= 1:
            raise ConfigError(f"SpecAugment max_time_ratio must be in [0, 1], got {max_time_ratio}")
        self.freq_masks, self.freq_width = freq_masks, freq_width
        self.time_masks, self.time_width = time_masks, time_width
        self.max_time_ratio, self.value = max_time_ratio, value

    @property
    def active(self) -> bool:
        return self.freq_masks * self.freq_width + self.time_masks * self.time_width > 0

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if not self.training or not self.active:
            return x
        b, nf, nt = x.shape
        dev = x.device
        valid = lengths.to(dev) if lengths is not None else torch.full((b,), nt, device=dev)
        keep = torch.ones(b, nf, nt, dtype=torch.bool, device=dev)
        fpos = torch.arange(nf, device=dev)[None, :]
        tpos = torch.arange(nt, device=dev)[None, :]
        for _ in range(self.freq_masks):
            w = (torch.rand(b, device=dev) * (self.freq_width + 1)).floor().clamp(max=nf)
            start = (torch.rand(b, device=dev) * (nf - w + 1)).floor()
            keep &= ~((fpos >= start[:, None]) & (fpos < (start + w)[:, None]))[:, :, None]
        cap = torch.minimum(torch.full_like(valid, self.time_width, dtype=torch.float32),
                            (valid.float() * self.max_time_ratio).floor())  # fmt: skip
        for _ in range(self.time_masks):
            w = (torch.rand(b, device=dev) * (cap + 1)).floor()
            start = (torch.rand(b, device=dev) * (valid.float() - w + 1).clamp(min=1)).floor()
            keep &= ~((tpos >= start[:, None]) & (tpos < (start + w)[:, None]))[:, None, :]
        return torch.where(keep, x, torch.full_like(x, self.value))


# --- a whole front end ------------------------------------------------------------------------------------------------
class AudioFrontend(nn.Module):
    """Waveforms ``(B, T)`` + ``lengths`` -> normalized (and, in training, SpecAugment-masked) features
    ``(B, F, frames)`` + frame lengths: log-mel (``features="logmel"``, natural log) or MFCC (``"mfcc"``), then
    :class:`FeatureNorm`, then :class:`SpecAugment`. ``features(...)`` stops before normalization (what global
    statistics are fitted on)."""

    def __init__(
        self, sample_rate: int = 16000, features: str = "logmel", n_fft: int = 400, hop_length: int = 160,
        win_length: int | None = None, n_mels: int = 64, n_mfcc: int = 20, f_min: float = 0.0,
        f_max: float | None = None, mel_scale: str = "slaney", norm: str = "global", freq_masks: int = 0,
        freq_width: int = 0, time_masks: int = 0, time_width: int = 0, max_time_ratio: float = 0.2,
    ):  # fmt: skip
        super().__init__()
        if mel_scale not in ("slaney", "htk"):
            raise ConfigError(f"mel_scale must be 'slaney' or 'htk', got {mel_scale!r}")
        mel = dict(sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, win_length=win_length, n_mels=n_mels,
                   f_min=f_min, f_max=f_max, htk=mel_scale == "htk", norm="slaney")  # fmt: skip
        if features == "logmel":
            self.extract: nn.Module = LogMel(scale="log", **mel)
            self.num_features = n_mels
        elif features == "mfcc":
            self.extract = MFCC(n_mfcc, **mel)
            self.num_features = n_mfcc
        else:
            raise ConfigError(f"features must be 'logmel' or 'mfcc', got {features!r}")
        self.sample_rate, self.hop_length = sample_rate, hop_length
        self.norm = FeatureNorm(self.num_features, norm)
        self.augment = SpecAugment(freq_masks, freq_width, time_masks, time_width, max_time_ratio)

    def frames(self, lengths: torch.Tensor) -> torch.Tensor:
        return self.extract.frames(lengths)

    def features(self, audio: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw features (before normalization and masking) and their frame lengths."""
        feats = self.extract(audio)
        if lengths is None:
            lengths = torch.full((audio.shape[0],), audio.shape[-1], dtype=torch.long, device=audio.device)
        return feats, self.frames(lengths).clamp(max=feats.shape[-1])

    def forward(self, audio: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        feats, frames = self.features(audio, lengths)
        return self.augment(self.norm(feats, frames), frames), frames

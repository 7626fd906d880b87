"""Griffin-Lim vocoding in torch: mel power -> linear power (non-negative least squares on the mel filterbank) ->
a waveform whose STFT magnitude matches (fast Griffin-Lim: Perraudin, Balazs and Sondergaard 2013, the
"momentum" variant).

The STFT conventions are :class:`deepkit.nn.audio.Spectrogram`'s: periodic Hann window, frames centred with zero
padding, so ``1 + n // hop`` frames for ``n`` samples and a reconstruction of ``(frames - 1) * hop`` samples.
"""

from __future__ import annotations

import torch

from deepkit.errors import ConfigError


def mel_to_linear(mel: torch.Tensor, filterbank: torch.Tensor, iters: int = 200) -> torch.Tensor:
    """``(..., n_mels, T)`` mel power -> ``(..., n_fft // 2 + 1, T)`` non-negative linear power ``S`` minimising
    ``||fb @ S - mel||``: starts from the clamped pseudo-inverse solution, then projected gradient steps (step
    ``1 / ||fb||_2^2``, so each step cannot increase the error)."""
    fb = filterbank.to(torch.float64)
    x = mel.to(torch.float64)
    s = (torch.linalg.pinv(fb) @ x).clamp(min=0)
    step = 1.0 / float(torch.linalg.matrix_norm(fb, ord=2)) ** 2
    fbt = fb.T
    for _ in range(iters):
        s = (s - step * (fbt @ (fb @ s - x))).clamp(min=0)
    return s.to(mel.dtype)


def _stft(x: torch.Tensor, n_fft: int, hop: int, window: torch.Tensor) -> torch.Tensor:
    return torch.stft(x, n_fft, hop, window.shape[-1], window, center=True, pad_mode="constant", return_complex=True)


def spectral_convergence(magnitude: torch.Tensor, wave: torch.Tensor, n_fft: int, hop: int) -> float:
    """``||S - |STFT(wave)|||_F / ||S||_F``: 0 when the waveform has exactly the magnitude ``S``
    ``(n_fft // 2 + 1, T)``."""
    window = torch.hann_window(n_fft, periodic=True, dtype=wave.dtype)
    got = _stft(wave, n_fft, hop, window).abs()
    t = min(got.shape[-1], magnitude.shape[-1])
    diff = (magnitude[..., :t] - got[..., :t]).norm()
    return float(diff / magnitude.norm().clamp(min=1e-12))


def griffin_lim(
    magnitude: torch.Tensor, n_fft: int, hop: int, n_iter: int = 60, momentum: float = 0.99, seed: int = 0,
    history: list[float] | None = None,
) -> torch.Tensor:  # fmt: skip
    """A waveform ``((T - 1) * hop,)`` whose STFT magnitude approaches ``magnitude`` ``(n_fft // 2 + 1, T)``.

    Each iteration takes the phase of the STFT of the current waveform, extrapolated by ``momentum / (1 +
    momentum)`` of the previous one (``momentum=0``: the original Griffin-Lim). Phases start random (``seed``).
    ``history``, when given, receives the spectral convergence after every iteration."""
    if magnitude.ndim != 2 or magnitude.shape[0] != n_fft // 2 + 1:
        raise ConfigError(f"griffin_lim: expected a ({n_fft // 2 + 1}, frames) magnitude for n_fft={n_fft}, got "
                          f"shape {tuple(magnitude.shape)}")  # fmt: skip
    if n_iter < 1 or not 0 <= momentum < 1:
        raise ConfigError(f"griffin_lim: need n_iter >= 1 and 0 <= momentum < 1, got {n_iter}, {momentum}")
    mag = magnitude.to(torch.float64)
    window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
    length = (mag.shape[-1] - 1) * hop
    g = torch.Generator().manual_seed(seed)
    angles = torch.exp(2j * torch.pi * torch.rand(mag.shape, generator=g, dtype=torch.float64))
    prev = torch.zeros_like(angles)
    alpha = momentum / (1 + momentum)
    for _ in range(n_iter):
        wave = torch.istft(mag * angles, n_fft, hop, n_fft, window, center=True, length=length)
        rebuilt = _stft(wave, n_fft, hop, window)
        if history is not None:
            history.append(float((mag - rebuilt.abs()).norm() / mag.norm().clamp(min=1e-12)))
        angles = rebuilt - alpha * prev
        angles = angles / angles.abs().clamp(min=1e-16)
        prev = rebuilt
    wave = torch.istft(mag * angles, n_fft, hop, n_fft, window, center=True, length=length)
    return wave.to(magnitude.dtype)


def mel_to_audio(
    mel: torch.Tensor, filterbank: torch.Tensor, n_fft: int, hop: int, n_iter: int = 60, momentum: float = 0.99,
    nnls_iters: int = 200, seed: int = 0,
) -> torch.Tensor:  # fmt: skip
    """``(n_mels, T)`` mel *power* -> waveform: :func:`mel_to_linear`, square root, :func:`griffin_lim`."""
    power = mel_to_linear(mel, filterbank, nnls_iters)
    return griffin_lim(power.sqrt(), n_fft, hop, n_iter, momentum, seed)

"""Audio feature modules (deepkit.nn.audio) against librosa (test-only) and analytic signals: STFT, mel filterbanks
(HTK and Slaney), log-mel, MFCC to 1e-4; resampling keeps a tone's frequency and energy and stops aliases; global
normalization fits on what it is given; SpecAugment masks only in training; padding does not leak into features."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from deepkit.errors import ConfigError
from deepkit.nn import audio as A

librosa = pytest.importorskip("librosa", reason="librosa (test-only reference for audio features) is not installed")


def noise(n: int = 8000, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(n) * 0.1).astype(np.float32)


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


@pytest.mark.parametrize("htk", [False, True])
@pytest.mark.parametrize("norm", ["slaney", None])
def test_mel_filterbank_matches_librosa(htk, norm):
    ours = A.mel_filterbank(16000, 512, 64, 30.0, 7600.0, htk=htk, norm=norm).numpy()
    ref = librosa.filters.mel(sr=16000, n_fft=512, n_mels=64, fmin=30.0, fmax=7600.0, htk=htk, norm=norm)
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() <= 1e-4 * np.abs(ref).max()


def test_mel_scale_round_trip_and_known_points():
    f = torch.tensor([0.0, 500.0, 1000.0, 4000.0, 8000.0], dtype=torch.float64)
    for htk in (False, True):
        assert torch.allclose(A.mel_to_hz(A.hz_to_mel(f, htk), htk), f, atol=1e-9)
    assert float(A.hz_to_mel(1000.0, htk=True)) == pytest.approx(999.9855, abs=1e-3)  # HTK: ~1000 mel at 1 kHz
    assert float(A.hz_to_mel(1000.0)) == pytest.approx(15.0)  # Slaney: 1 kHz is mel 15


@pytest.mark.parametrize("win", [256, 200])
def test_spectrogram_and_mel_match_librosa(win):
    y = noise()
    spec = A.Spectrogram(256, 80, win)(torch.from_numpy(y))
    ref = np.abs(librosa.stft(y, n_fft=256, hop_length=80, win_length=win)) ** 2
    assert spec.shape == ref.shape and rel(spec.numpy(), ref) <= 1e-4
    mel = A.MelSpectrogram(8000, 256, 80, win, n_mels=40)(torch.from_numpy(y)[None])[0]
    ref = librosa.feature.melspectrogram(y=y, sr=8000, n_fft=256, hop_length=80, win_length=win, n_mels=40)
    assert rel(mel.numpy(), ref) <= 1e-4
    htk = A.MelSpectrogram(8000, 256, 80, n_mels=40, htk=True, norm=None, f_min=20)(torch.from_numpy(y))
    ref = librosa.feature.melspectrogram(y=y, sr=8000, n_fft=256, hop_length=80, n_mels=40, htk=True, norm=None,
                                         fmin=20)  # fmt: skip
    assert rel(htk.numpy(), ref) <= 1e-4


def test_log_mel_db_and_mfcc_match_librosa():
    y = noise(16000, seed=1)
    kw = dict(sample_rate=16000, n_fft=400, hop_length=160, n_mels=64)
    mel = librosa.feature.melspectrogram(y=y, sr=16000, n_fft=400, hop_length=160, n_mels=64)
    db = A.LogMel(scale="db", top_db=80.0, **kw)(torch.from_numpy(y)[None])[0].numpy()
    assert np.abs(db - librosa.power_to_db(mel, top_db=80.0)).max() <= 1e-4 * np.abs(db).max()
    ln = A.LogMel(scale="log", eps=1e-6, **kw)(torch.from_numpy(y)[None])[0].numpy()
    assert np.abs(ln - np.log(mel + 1e-6)).max() <= 1e-4 * np.abs(ln).max()
    mfcc = A.MFCC(13, **kw)(torch.from_numpy(y)[None])[0].numpy()
    ref = librosa.feature.mfcc(y=y, sr=16000, n_mfcc=13, n_fft=400, hop_length=160, n_mels=64)
    assert mfcc.shape == ref.shape and rel(mfcc, ref) <= 1e-4


def test_power_to_db_floors_each_utterance_at_its_own_peak():
    loud = torch.full((1, 4, 5), 1.0)
    quiet = torch.full((1, 4, 5), 1e-3)
    quiet[0, 0, 0] = 1e-12
    out = A.power_to_db(torch.cat([loud, quiet]), top_db=40.0)
    assert out[0].max() == pytest.approx(0.0) and out[1].max() == pytest.approx(-30.0, abs=1e-4)
    assert float(out[1, 0, 0]) == pytest.approx(-70.0, abs=1e-4)  # floored 40 dB below its own peak, not the batch's


def test_frames_of_padded_clips_match_unpadded_features():
    y = torch.from_numpy(noise(3000))
    fe = A.LogMel(sample_rate=8000, n_fft=256, hop_length=80, n_mels=40)
    alone = fe(y[None])[0]
    padded = fe(torch.cat([y, torch.zeros(2000)])[None])[0]
    n = int(fe.frames(torch.tensor([3000]))[0])
    assert n == alone.shape[-1] == 1 + 3000 // 80
    # frames whose window ends inside the clip are identical; only the last few (reaching into the padding) differ
    inside = n - 256 // 2 // 80 - 1
    assert torch.allclose(alone[:, :inside], padded[:, :inside], atol=1e-4)


# --- resampling -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("orig", "new", "freq"), [(44100, 16000, 440.0), (8000, 16000, 1000.0), (22050, 16000, 3000.0),
                                                   (16000, 8000, 2500.0)])  # fmt: skip
def test_resampled_sine_keeps_frequency_and_energy(orig, new, freq):
    t = np.arange(orig) / orig  # one second
    x = torch.from_numpy(np.sin(2 * np.pi * freq * t).astype(np.float32))
    y = A.Resample(orig, new)(x).numpy()
    assert len(y) == new
    ref = np.sin(2 * np.pi * freq * np.arange(new) / new)
    edge = new // 50  # the filter sees zeros past the ends
    assert np.abs(y - ref)[edge:-edge].max() < 1e-3
    assert np.mean(y[edge:-edge] ** 2) == pytest.approx(0.5, rel=1e-3)  # a unit sine's power
    spectrum = np.abs(np.fft.rfft(y[edge:-edge] * np.hanning(len(y) - 2 * edge)))
    peak_hz = np.argmax(spectrum) * new / (len(y) - 2 * edge)
    assert abs(peak_hz - freq) < 2.0


def test_resampling_removes_what_the_new_rate_cannot_hold():
    orig = 44100
    x = torch.from_numpy(np.sin(2 * np.pi * 10000 * np.arange(orig) / orig).astype(np.float32))
    y = A.Resample(orig, 16000)(x).numpy()[400:-400]  # 10 kHz is above 16 kHz's Nyquist: it would alias to 6 kHz
    assert 10 * math.log10(np.mean(y**2) / 0.5) < -60


def test_resample_batches_and_odd_lengths():
    x = torch.randn(3, 1001)
    r = A.Resample(8000, 16000)
    y = r(x)
    assert y.shape == (3, 2002) and r.output_length(1001) == 2002
    assert torch.allclose(y[1], r(x[1]), atol=1e-6)
    assert A.Resample(16000, 16000)(x) is x
    with pytest.raises(ConfigError, match="positive"):
        A.Resample(0, 16000)


# --- normalization and SpecAugment ----------------------------------------------------------------------------------
def test_global_norm_fits_valid_frames_only():
    norm = A.FeatureNorm(2, "global")
    feats = torch.tensor([[[1.0, 3.0, 100.0], [0.0, 2.0, -50.0]]])
    frames = norm.fit([(feats, torch.tensor([2]))])  # the third frame is padding: ignored
    assert frames == 2 and bool(norm.fitted)
    assert torch.allclose(norm.mean, torch.tensor([2.0, 1.0])) and torch.allclose(norm.std, torch.tensor([1.0, 1.0]))
    out = norm(feats, torch.tensor([2]))
    assert torch.allclose(out[0, :, :2], torch.tensor([[-1.0, 1.0], [-1.0, 1.0]])) and (out[..., 2] == 0).all()
    state = norm.state_dict()  # the statistics travel with the weights
    assert {"mean", "std", "fitted"} <= set(state)


def test_utterance_norm_is_per_clip_and_ignores_padding():
    norm = A.FeatureNorm(1, "utterance")
    x = torch.tensor([[[1.0, 3.0, 999.0]], [[10.0, 20.0, 30.0]]])
    out = norm(x, torch.tensor([2, 3]))
    assert torch.allclose(out[0, 0, :2], torch.tensor([-1.0, 1.0])) and out[0, 0, 2] == 0
    assert torch.allclose(out[1].mean(), torch.tensor(0.0), atol=1e-6)


def test_spec_augment_masks_in_training_only():
    aug = A.SpecAugment(freq_masks=2, freq_width=5, time_masks=2, time_width=8)
    x = torch.ones(4, 40, 100)
    aug.eval()
    assert torch.equal(aug(x), x)
    aug.train()
    torch.manual_seed(0)
    y = aug(x, torch.tensor([100, 100, 50, 20]))
    assert (y == 0).any() and y.shape == x.shape
    # time masks stay within each clip's valid frames and within max_time_ratio of them
    short = y[3]
    fully_masked_frames = (short == 0).all(0)
    assert not fully_masked_frames[20:].any()
    assert int(fully_masked_frames[:20].sum()) <= 2 * 4  # 2 masks of at most 0.2 * 20 frames
    torch.manual_seed(0)
    assert torch.equal(aug(x, torch.tensor([100, 100, 50, 20])), y)  # the draws come from torch's seeded generator
    with pytest.raises(ConfigError, match="freq_masks"):
        A.SpecAugment(freq_masks=-1)


def test_bad_feature_settings_are_one_line_errors():
    with pytest.raises(ConfigError, match="f_max"):
        A.mel_filterbank(8000, 256, 40, f_max=6000)
    with pytest.raises(ConfigError, match="empty"):
        A.MelSpectrogram(8000, n_fft=64, n_mels=128)
    with pytest.raises(ConfigError, match="n_mfcc"):
        A.MFCC(50, sample_rate=8000, n_fft=256, n_mels=40)


def test_frontend_features_lengths_and_mfcc_variant():
    audio = torch.from_numpy(np.stack([noise(4000, 2), noise(4000, 3)]))
    audio[1, 2500:] = 0
    lengths = torch.tensor([4000, 2500])
    fe = A.AudioFrontend(8000, "logmel", n_fft=256, hop_length=80, n_mels=32, norm="utterance")
    feats, frames = fe(audio, lengths)
    assert feats.shape == (2, 32, 51) and frames.tolist() == [51, 32]
    assert (feats[1, :, 32:] == 0).all()  # padded frames carry nothing after normalization
    torch.testing.assert_close(feats[1, :, :32].mean(1), torch.zeros(32), atol=1e-4, rtol=0)
    mf = A.AudioFrontend(8000, "mfcc", n_fft=256, hop_length=80, n_mels=32, n_mfcc=13, norm="none")
    out, _ = mf(audio[:1])
    ref = librosa.feature.mfcc(y=audio[0].numpy(), sr=8000, n_mfcc=13, n_fft=256, hop_length=80, n_mels=32, fmin=0.0)
    assert out.shape == (1, 13, 51) and rel(out[0].numpy(), ref) <= 1e-4
    with pytest.raises(ConfigError, match="features must be"):
        A.AudioFrontend(features="spectrogram")

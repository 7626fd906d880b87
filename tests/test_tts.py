"""Text to speech on spoken digits: the text front end and its one-line errors, the Griffin-Lim vocoder (non-negative
mel inversion, convergence with and without momentum, on a synthetic and on a real FSDD clip), and a tiny
train -> speak round trip on a synthetic FSDD folder (Python and CLI) writing a valid WAV, with the unknown-speaker
error. The model's forward/backward is covered by tests/models/test_registry.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import deepkit
from conftest import _write_fsdd, datasets_root
from deepkit.data.digit_text import PHONEMES, parse_digits, phoneme_ids
from deepkit.errors import DataError
from deepkit.nn.audio import MelSpectrogram
from deepkit.nn.griffinlim import griffin_lim, mel_to_linear, spectral_convergence

RATE, N_FFT, HOP = 8000, 256, 64


# --- text front end ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text", ["4 1 7", "417", "four one seven", "Four-ONE, seven", " 4,one 7 "]
)  # fmt: skip
def test_digit_strings_and_words_parse_alike(text):
    assert parse_digits(text) == [4, 1, 7]


def test_every_word_has_phonemes_from_the_inventory():
    ids = [phoneme_ids(d) for d in range(10)]
    assert all(ids) and all(0 < i < len(PHONEMES) for word in ids for i in word)
    assert len({tuple(w) for w in ids}) == 10  # ten distinct words
    assert phoneme_ids(1)[-1] == phoneme_ids(7)[-1] == phoneme_ids(9)[-1]  # the N they share is one token


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("4 1 x7", "unknown word 'x'"),
        ("4 + 1", "'+'"),
        ("fiv", "'fiv'"),
        ("", "no digits"),
        ("4 é", "'é'"),
        ("٣", "'٣'"),
    ],
)
def test_unknown_characters_and_words_are_one_line_errors(text, named):
    with pytest.raises(DataError) as e:
        parse_digits(text)
    msg = str(e.value)
    assert named in msg and "0-9" in msg and "zero..nine" in msg and "\n" not in msg


# --- vocoder ---------------------------------------------------------------------------------------------------------
def _tone_clip(seconds: float = 0.5) -> torch.Tensor:
    t = torch.arange(int(seconds * RATE)) / RATE
    f0 = 180 + 60 * t  # a gliding voice-like harmonic tone
    phase = 2 * math.pi * torch.cumsum(f0, 0) / RATE
    x = sum(torch.sin(k * phase) / k for k in range(1, 8)) * torch.hann_window(len(t), periodic=False)
    return (0.3 * x).float()


def test_mel_inversion_is_non_negative_and_fits_the_mel():
    mel = MelSpectrogram(RATE, N_FFT, HOP, n_mels=40, f_min=0.0)
    x = _tone_clip()
    m = mel(x[None])[0]
    s = mel_to_linear(m, mel.filterbank)
    assert s.shape == (N_FFT // 2 + 1, m.shape[1]) and (s >= 0).all()
    assert float((mel.filterbank @ s - m).norm() / m.norm()) < 1e-2


def _check_griffin_lim(x: torch.Tensor) -> None:
    mel = MelSpectrogram(RATE, N_FFT, HOP, n_mels=40, f_min=0.0)
    mag = mel.spectrogram(x[None])[0].sqrt()  # (129, T) magnitude
    plain, fast = [], []
    griffin_lim(mag, N_FFT, HOP, n_iter=40, momentum=0.0, history=plain)
    wave = griffin_lim(mag, N_FFT, HOP, n_iter=40, momentum=0.99, history=fast)
    assert fast[-1] < 0.5 * fast[0] and fast[-1] < fast[9], fast  # convergence improves with iterations
    assert fast[-1] < plain[-1], (fast[-1], plain[-1])  # momentum (fast GL) beats the original at 40 iterations
    assert spectral_convergence(mag, wave, N_FFT, HOP) < 0.25
    # the reconstructed waveform's log-mel is close to the input's (phase is free; the mel envelope is not)
    a = torch.log(mel(x[None])[0] + 1e-5)
    b = torch.log(mel(wave[None])[0] + 1e-5)
    t = min(a.shape[1], b.shape[1])
    loud = a[:, :t] > a.max() - 6  # bands within 6 nats of the peak: where the speech is
    assert float((a[:, :t] - b[:, :t]).abs()[loud].mean()) < 0.5


def test_griffin_lim_converges_on_a_synthetic_clip():
    _check_griffin_lim(_tone_clip())


def test_griffin_lim_converges_on_a_real_fsdd_clip():
    clip = datasets_root() / "fsdd" / "recordings" / "7_jackson_3.wav"
    if not clip.is_file():
        pytest.skip(f"real FSDD clip not found: {clip} (set DEEPKIT_DATA to the shared datasets)")
    x, rate = sf.read(str(clip), dtype="float32")
    assert rate == RATE
    _check_griffin_lim(torch.from_numpy(x))


# --- train -> speak ---------------------------------------------------------------------------------------------------
TINY = ["model.dim=32", "model.speaker_dim=8", "model.decoder_layers=2", "data.batch_size=16", "trainer.epochs=2",
        "data.val_per_group=1", "trainer.progress=none", "trainer.threads=1"]  # fmt: skip


@pytest.fixture(scope="module")
def tts_run(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("tts")
    rec = _write_fsdd(base / "recordings", ("ann", "bob"), takes=8)
    out = base / "run"
    deepkit.train("fsdd_tts", f"data.path={rec}", *TINY, out=out)
    return out


def test_train_reports_alignment_and_samples(tts_run):
    results = json.loads((tts_run / "results.json").read_text())
    assert {"mel_l1", "log_mel_l1", "duration_mae"} <= set(results["metrics"])
    assert all(math.isfinite(v) for v in results["metrics"].values())
    assert (tts_run / "plots" / "alignment.png").stat().st_size > 1000
    assert (tts_run / "plots" / "mels.png").stat().st_size > 1000
    assert sorted(p.name for p in (tts_run / "samples").glob("*.wav")) == ["ann_417.wav", "bob_417.wav"]


def test_speak_writes_a_valid_wav(tts_run, tmp_path):
    p = deepkit.load(tts_run)
    out = tmp_path / "four17.wav"
    summary = p.speak_to_file("four 1 seven", "bob", out)
    wave, rate = sf.read(str(out), dtype="float32")
    assert rate == RATE and summary["digits"] == [4, 1, 7]
    assert abs(len(wave) / rate - summary["seconds"]) < 1e-3 and len(wave) > 0.1 * RATE
    assert np.isfinite(wave).all() and float(np.sqrt((wave**2).mean())) > 1e-3 and np.abs(wave).max() <= 1.0
    r = p.synthesize("4 1 7", "bob")
    # three words of the predicted lengths, with the pause between them; attention rows sum to 1 inside words
    (_, a0, b0), (_, a1, _), (_, _, b2) = r["words"]
    assert a1 - b0 == round(120 / 1000 * RATE / HOP) and b2 + 2 == r["log_mel"].shape[1]
    assert r["attention"].shape == (r["log_mel"].shape[1], 3 + 3 + 5)
    assert torch.allclose(r["attention"][a0:b0].sum(1), torch.ones(b0 - a0), atol=1e-4)
    assert float(r["attention"][b0:a1].abs().sum()) == 0.0
    # another voice gives another waveform
    assert not np.allclose(p.speak("4 1 7", "ann"), r["wave"][: len(p.speak("4 1 7", "ann"))])


def test_speak_through_the_cli_and_its_errors(tts_run, tmp_path, deepkit_cli):
    out = tmp_path / "x.wav"
    code, stdout, err = deepkit_cli("speak", tts_run, "4 1 7", "--speaker", "ann", "--out", out)
    assert code == 0, err
    assert json.loads(stdout)["out"] == str(out) and sf.info(str(out)).samplerate == RATE
    code, _, err = deepkit_cli("speak", tts_run, "4 1 7", "--speaker", "jackson", "--out", tmp_path / "y.wav")
    assert code != 0 and "unknown speaker 'jackson'" in err and "ann, bob" in err
    assert not (tmp_path / "y.wav").exists()
    code, _, err = deepkit_cli("speak", tts_run, "4 1 x", "--speaker", "ann", "--out", tmp_path / "z.wav")
    assert code != 0 and "unknown word 'x'" in err and not (tmp_path / "z.wav").exists()


def test_real_fsdd_words_are_trimmed_and_split_by_take():
    root = datasets_root() / "fsdd" / "recordings"
    if not root.is_dir():
        pytest.skip(f"real FSDD not found: {root} (set DEEPKIT_DATA to the shared datasets)")
    from deepkit.families.tts import TTSDataConfig, build_tts_data

    data = build_tts_data(TTSDataConfig(path=str(root), max_clips=60, speakers=["jackson", "theo"]))
    assert data.speakers == ["jackson", "theo"]
    assert all(c.index >= 5 for c in data.sets["train"].clips) and all(c.index < 5 for c in data.sets["test"].clips)
    for ws in data.sets.values():
        x, _ = sf.read(str(ws.clips[0].path))
        assert 3 <= len(ws.mels[0]) <= 1 + len(x) // HOP  # trimmed, never longer than the clip

"""Audio reading and corpus readers (deepkit.data.audio): conversions noted once, bad files named in one line,
padding with lengths, the FSDD split rules, LibriSpeech / LJ Speech / labelled-folder layouts (synthetic files, and
the real datasets when present)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import datasets_root
from deepkit.data import audio as da
from deepkit.errors import ConfigError, DataError


def tone(seconds: float, rate: int, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    x = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([x] * channels, 1) if channels > 1 else x


def write(path: Path, data: np.ndarray, rate: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data, rate)
    return path


def test_reader_converts_stereo_and_rate_and_notes_each_once(tmp_path, caplog):
    a = write(tmp_path / "a.wav", tone(0.5, 44100, channels=2), 44100)
    b = write(tmp_path / "b.wav", tone(0.5, 44100, channels=2), 44100)
    c = write(tmp_path / "c.flac", tone(0.5, 8000), 8000)
    reader = da.AudioReader(16000)
    with caplog.at_level("INFO", logger="deepkit.audio"):
        xs = [reader(p) for p in (a, b, c)]
    assert [len(x) for x in xs] == [8000, 8000, 8000] and all(x.ndim == 1 for x in xs)
    assert len(reader.notes) == 3  # stereo once, 44.1 kHz once, 8 kHz once (not once per file)
    assert "averaged to mono" in reader.notes[0] and "a.wav" in reader.notes[0]
    assert any("44100 Hz -> 16000 Hz" in n for n in reader.notes) and any("8000 Hz" in n for n in reader.notes)
    assert reader.counts()["downmix"] == 2 and len(caplog.records) == 3
    assert float(xs[0].pow(2).mean()) == pytest.approx(0.125, rel=0.02)  # the tone's power survives both steps


def test_bad_audio_files_are_named_in_one_line(tmp_path):
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio\n")
    with pytest.raises(DataError, match=r"notes\.wav is not a readable audio file") as e:
        da.read_audio(text)
    assert "\n" not in str(e.value)
    with pytest.raises(DataError, match="not found"):
        da.read_audio(tmp_path / "missing.wav")
    empty = write(tmp_path / "empty.wav", np.zeros(0, np.float32), 8000)
    with pytest.raises(DataError, match=r"empty\.wav is empty \(0 samples\)"):
        da.AudioReader(8000)(empty)
    short = write(tmp_path / "short.wav", tone(0.05, 8000), 8000)
    with pytest.raises(DataError, match=r"short\.wav is too short: 0\.050 s .*at least 0\.1 s"):
        da.AudioReader(8000, min_seconds=0.1)(short)


def test_long_clips_are_cut_and_noted(tmp_path):
    reader = da.AudioReader(8000, max_seconds=1.0)
    x = reader(write(tmp_path / "long.wav", tone(2.5, 8000), 8000))
    assert len(x) == 8000 and "cut" in reader.notes[0]


def test_pad_batch_lengths():
    x, lengths = da.pad_batch([torch.ones(3), torch.ones(5), torch.ones(1)], multiple=4)
    assert x.shape == (3, 8) and lengths.tolist() == [3, 5, 1]
    assert x.sum(1).tolist() == [3, 5, 1]
    with pytest.raises(DataError):
        da.pad_batch([])


def fake_fsdd(root: Path, speakers=("ann", "bob"), takes: int = 8) -> Path:
    for s in speakers:
        for d in range(10):
            for i in range(takes):
                write(root / f"{d}_{s}_{i}.wav", tone(0.2, 8000, 200 + 50 * d), 8000)
    return root


def test_fsdd_official_split_and_validation_rule(tmp_path):
    clips = da.read_fsdd(fake_fsdd(tmp_path / "rec"))
    assert len(clips) == 160 and clips[0].label in "0123456789" and clips[0].speaker in ("ann", "bob")
    sets = da.fsdd_split(clips, val_per_group=2, seed=0)
    assert all(c.index < 5 for c in sets["test"]) and len(sets["test"]) == 2 * 10 * 5
    assert all(c.index >= 5 for c in sets["train"] + sets["val"])
    assert len(sets["val"]) == 2 * 10 * 2  # 2 per (speaker, digit)
    assert not {c.id for c in sets["val"]} & {c.id for c in sets["train"]}
    again = da.fsdd_split(clips, val_per_group=2, seed=0)
    assert [c.id for c in again["val"]] == [c.id for c in sets["val"]]  # deterministic
    other = da.fsdd_split(clips, val_per_group=2, seed=1)
    assert [c.id for c in other["val"]] != [c.id for c in sets["val"]]


def test_fsdd_leave_one_speaker_out(tmp_path):
    clips = da.read_fsdd(fake_fsdd(tmp_path / "rec"))
    sets = da.fsdd_split(clips, holdout_speaker="bob")
    assert {c.speaker for c in sets["test"]} == {"bob"} and len(sets["test"]) == 80
    assert {c.speaker for c in sets["train"] + sets["val"]} == {"ann"}
    with pytest.raises(ConfigError, match="'carol' is not an FSDD speaker; expected one of ann, bob"):
        da.fsdd_split(clips, holdout_speaker="carol")


def test_fsdd_names_checked(tmp_path):
    write(tmp_path / "rec" / "hello.wav", tone(0.2, 8000), 8000)
    with pytest.raises(DataError, match=r"hello\.wav does not follow FSDD's naming"):
        da.read_fsdd(tmp_path / "rec")


def test_labelled_folder(tmp_path):
    for cls in ("yes", "no"):
        for i in range(3):
            write(tmp_path / "clips" / cls / f"{i}.flac", tone(0.1, 16000), 16000)
    (tmp_path / "clips" / "yes" / "readme.txt").write_text("x")
    clips = da.read_labelled_folder(tmp_path / "clips")
    assert len(clips) == 6 and {c.label for c in clips} == {"yes", "no"}
    write(tmp_path / "one" / "only" / "a.wav", tone(0.1, 8000), 8000)
    with pytest.raises(DataError, match="only one class"):
        da.read_labelled_folder(tmp_path / "one")


def test_librispeech_and_ljspeech_layouts(tmp_path):
    chap = tmp_path / "LibriSpeech" / "train-clean-5" / "32" / "21631"
    write(chap / "32-21631-0000.flac", tone(0.3, 16000), 16000)
    (chap / "32-21631.trans.txt").write_text("32-21631-0000 HELLO WORLD\n32-21631-0001 MISSING ONE\n")
    with pytest.raises(DataError, match=r"32-21631-0001 has no 32-21631-0001\.flac"):
        da.read_librispeech(tmp_path / "LibriSpeech")
    (chap / "32-21631.trans.txt").write_text("32-21631-0000 HELLO WORLD\n")
    clips = da.read_librispeech(tmp_path / "LibriSpeech")
    assert clips[0].text == "HELLO WORLD" and clips[0].speaker == "32" and clips[0].id == "32-21631-0000"
    lj = tmp_path / "LJ"
    write(lj / "wavs" / "LJ001-0001.wav", tone(0.3, 22050), 22050)
    (lj / "metadata.csv").write_text("LJ001-0001|Printing 1 thing|Printing one thing\n")
    assert da.read_ljspeech(lj)[0].text == "Printing one thing"
    assert da.read_ljspeech(lj, normalized=False)[0].text == "Printing 1 thing"


# --- the real datasets (skipped when absent) ------------------------------------------------------------------------
def real(*parts: str) -> Path:
    path = datasets_root().joinpath(*parts)
    if not path.is_dir():
        pytest.skip(f"{path} not found (set DEEPKIT_DATA or provide ../shared/datasets)")
    return path


def test_real_fsdd_official_split():
    clips = da.read_fsdd(real("fsdd", "recordings"))
    assert len(clips) == 3000 and len({c.speaker for c in clips}) == 6
    sets = da.fsdd_split(clips)
    assert [len(sets[k]) for k in ("train", "val", "test")] == [2580, 120, 300]
    x = da.AudioReader(8000)(sets["test"][0].path)
    assert x.dtype == torch.float32 and x.ndim == 1 and 0.1 < len(x) / 8000 < 2.5


def test_real_librispeech_and_ljspeech():
    libri = da.read_librispeech(real("librispeech_mini", "LibriSpeech"))
    assert len(libri) == 105 and len({c.speaker for c in libri}) == 4
    reader = da.AudioReader(16000)
    assert len(reader(libri[0].path)) > 16000 and not reader.notes  # FLAC at 16 kHz: nothing to convert
    lj = da.read_ljspeech(real("ljspeech_subset", "LJSpeech-1.1"))
    assert len(lj) == 100 and lj[0].id == "LJ001-0001"
    x = reader(lj[1].path)
    assert reader.notes == [f"audio: resampled 22050 Hz -> 16000 Hz (windowed sinc; first: {lj[1].path})"]
    assert x.ndim == 1

"""The speech family end to end: train a digit classifier on a synthetic FSDD-style folder (tones named
``{digit}_{speaker}_{index}.wav``), eval with its per-class table, transcribe and predict through the CLI and Python,
the report's plots and samples, normalization fitted on the training split only, batch-independent predictions
(padding masks), and issue 16's bad inputs (not audio, stereo 44.1 kHz, empty, too short) as one-line errors. The
real FSDD splits are checked when the dataset is present."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import deepkit
from conftest import _write_fsdd, datasets_root
from deepkit.errors import DataError

FAST = ["trainer.progress=none", "trainer.threads=1"]
TINY = ["model.channels=[8,16]", "model.n_mels=24", "data.batch_size=16", "trainer.epochs=6",
        "trainer.optimizer.lr=0.01", "trainer.schedule.name=constant", "trainer.schedule.warmup_steps=0",
        "data.val_per_group=1", "data.augment.shift_ms=0", "data.augment.gain_db=3"]  # fmt: skip
RATE = 8000


def fake_fsdd(root: Path, speakers: tuple[str, ...] = ("ann", "bob"), takes: int = 12) -> Path:
    return _write_fsdd(root, speakers, takes)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("speech")
    rec = fake_fsdd(base / "recordings")
    out = base / "run"
    deepkit.train("fsdd_digits_cnn", f"data.path={rec}", *TINY, *FAST, out=out)
    return out, rec


def test_a_run_learns_and_reports(digits_run):
    run, _ = digits_run
    results = json.loads((run / "results.json").read_text())
    metrics = results["metrics"]
    assert metrics["accuracy"] >= 0.8, metrics  # 10 tone classes, 100 test clips; chance is 0.1
    assert {f"recall_{d}" for d in range(10)} <= set(metrics)
    assert "takes 0-4" in results["split_rule"]
    assert isinstance(results["misclassified"], list)
    assert (run / "plots" / "confusion_matrix.png").stat().st_size > 1000
    assert (run / "plots" / "logmel.png").stat().st_size > 1000
    samples = sorted((run / "samples").glob("*.wav"))
    assert len(samples) == 10 and {p.name.split("_")[0] for p in samples} == {str(d) for d in range(10)}
    log = (run / "train.log").read_text() if (run / "train.log").exists() else ""
    stats = json.loads((run / "feature_stats.json").read_text())
    assert stats["fitted_on"] == "train" and len(stats["mean"]) == 24
    del log
    # training-epoch logs keep accuracy and F1; recall per class only in the final evaluation
    header = (run / "metrics.csv").read_text().splitlines()[0]
    assert "val_accuracy" in header and "recall_" not in header


def test_eval_prints_the_per_class_table(digits_run, deepkit_cli):
    run, _ = digits_run
    code, out, err = deepkit_cli("eval", run)
    assert code == 0, err
    lines = out.splitlines()
    assert any(ln.split()[:1] == ["7"] and "/10" in ln for ln in lines), out  # class 7: correct/total of 10 clips
    assert any(ln.split()[:1] == ["all"] and "/100" in ln for ln in lines), out


def test_transcribe_and_predict_through_the_cli(digits_run, deepkit_cli):
    run, _ = digits_run
    clips = sorted((run / "samples").glob("*.wav"))[:3]
    code, out, err = deepkit_cli("transcribe", run, *clips, "--json")
    assert code == 0, err
    records = json.loads(out)
    assert [r["input"] for r in records] == [str(c) for c in clips]
    assert all(r["text"] in [str(d) for d in range(10)] and 0 <= r["probability"] <= 1 for r in records)
    correct = sum(r["text"] == Path(r["input"]).name.split("_")[0] for r in records)
    assert correct >= 2
    code, out, err = deepkit_cli("transcribe", run, clips[0], "--top-k", "2")
    assert code == 0 and out.startswith(f"{clips[0]}: ") and "(p=" in out and "next:" in out
    code, out, err = deepkit_cli("predict", run, clips[0])
    assert code == 0 and "(p=" in out, err


def test_predictions_do_not_depend_on_the_batch(digits_run):
    run, rec = digits_run
    p = deepkit.load(run)
    files = sorted(rec.glob("*_ann_0.wav"))[:4]
    alone = torch.cat([p.probabilities([f]) for f in files])
    together = p.probabilities(files)  # padded to the longest clip: masks keep padding out of every clip's result
    torch.testing.assert_close(alone, together, atol=1e-5, rtol=0)
    assert p.transcribe(files[0]) == [r["class"] for r in p.predict([files[0]])]


def test_normalization_is_fitted_on_the_training_split_only(digits_run):
    run, rec = digits_run
    stats = json.loads((run / "feature_stats.json").read_text())
    built = deepkit.api.build(deepkit.api.resolve_recipe("fsdd_digits_cnn", deepkit.api.parse_overrides(
        [f"data.path={rec}", *TINY])))  # fmt: skip
    norm = built.task.model.frontend.norm
    torch.testing.assert_close(norm.mean, torch.tensor(stats["mean"]))
    model, data = built.task.model, built.data
    with torch.no_grad():  # statistics of every split together differ from the training split's
        feats = [model.frontend.features(w[None])[0][0] for s in ("train", "val", "test") for w in data.sets[s].waves]
    everything = torch.cat(feats, 1).mean(1)
    assert not torch.allclose(everything, norm.mean, atol=1e-3)
    train = torch.cat([model.frontend.features(w[None])[0][0] for w in data.sets["train"].waves], 1).mean(1)
    torch.testing.assert_close(train, norm.mean, atol=1e-4, rtol=1e-4)


def test_spec_augment_changes_features_in_training_only(digits_run):
    run, rec = digits_run
    model = deepkit.load(run).model
    audio = torch.from_numpy(sf.read(str(rec / "3_ann_0.wav"), dtype="float32")[0])[None]
    model.eval()
    a, b = model.frontend(audio)[0], model.frontend(audio)[0]
    assert torch.equal(a, b)
    model.train()
    torch.manual_seed(0)
    masked = model.frontend(audio)[0]
    model.eval()
    assert not torch.equal(masked, a) and (masked == 0).sum() > (a == 0).sum()


# --- bad inputs --------------------------------------------------------------------------------------------------
def test_bad_clips_are_one_line_errors_naming_the_file(digits_run, deepkit_cli, tmp_path):
    run, _ = digits_run
    text = tmp_path / "notes.wav"
    text.write_text("not audio at all")
    code, _, err = deepkit_cli("transcribe", run, text)
    assert code == 2 and err.count("\n") == 1 and "notes.wav is not a readable audio file" in err, err
    empty = tmp_path / "empty.wav"
    sf.write(str(empty), np.zeros(0, np.float32), RATE)
    code, _, err = deepkit_cli("transcribe", run, empty)
    assert code == 2 and "empty.wav is empty (0 samples)" in err, err
    short = tmp_path / "short.wav"
    sf.write(str(short), np.zeros(400, np.float32), RATE)
    code, _, err = deepkit_cli("transcribe", run, short)
    assert code == 2 and "short.wav is too short: 0.050 s" in err and "at least 0.1 s" in err, err
    code, _, err = deepkit_cli("transcribe", run, tmp_path / "missing.wav")
    assert code == 2 and "missing.wav" in err


def test_stereo_44k_input_is_converted_and_noted_once(digits_run, deepkit_cli, tmp_path):
    run, rec = digits_run
    mono = sf.read(str(rec / "5_ann_1.wav"), dtype="float32")[0]
    t_old = np.arange(len(mono)) / RATE
    t_new = np.arange(int(len(mono) * 44100 / RATE)) / 44100
    hi = np.interp(t_new, t_old, mono).astype(np.float32)
    files = []
    for i in range(2):
        files.append(tmp_path / f"5_stereo_{i}.wav")
        sf.write(str(files[-1]), np.stack([hi, hi], 1), 44100)
    code, out, err = deepkit_cli("transcribe", run, *files)
    assert code == 0, err
    assert err.count("averaged to mono") == 1 and err.count("44100 Hz -> 8000 Hz") == 1, err
    assert len(out.splitlines()) == 2
    p = deepkit.load(run)
    assert p.transcribe(files[0]) == p.transcribe(torch.from_numpy(mono))  # same answer as the 8 kHz mono original


def test_bad_recipe_settings(tmp_path):
    rec = fake_fsdd(tmp_path / "rec", speakers=("ann",), takes=6)
    with pytest.raises(deepkit.errors.ConfigError, match="holdout_speaker='zed' is not an FSDD speaker"):
        deepkit.train("fsdd_digits_cnn", f"data.path={rec}", "data.holdout_speaker=zed", *FAST, out=tmp_path / "r")
    with pytest.raises(deepkit.errors.ShapeError, match="does not take audio"):
        deepkit.train("fsdd_digits_cnn", f"data.path={rec}", "model.name=simple_cnn", *FAST, out=tmp_path / "r2")
    with pytest.raises(deepkit.errors.ShapeError, match="model.sample_rate=16000 does not fit"):
        deepkit.train("fsdd_digits_cnn", f"data.path={rec}", "model.sample_rate=16000", *FAST, out=tmp_path / "r3")
    assert not (tmp_path / "r").exists() and not (tmp_path / "r2").exists()
    with pytest.raises(DataError, match="not found"):
        deepkit.train("fsdd_digits_cnn", f"data.path={tmp_path / 'nothing'}", *FAST, out=tmp_path / "r4")


# --- real FSDD --------------------------------------------------------------------------------------------------------
def test_real_fsdd_official_and_leave_one_speaker_out_splits():
    from deepkit.families.speech import SpeechDataConfig, build_speech_data

    if not (datasets_root() / "fsdd" / "recordings").is_dir():
        pytest.skip(f"FSDD not found under {datasets_root()} (set DEEPKIT_DATA or provide ../shared/datasets/fsdd)")
    data = build_speech_data(SpeechDataConfig(max_clips=None))
    assert data.sizes() == {"train": 2580, "val": 120, "test": 300} and data.sample_rate == 8000
    assert data.class_names == [str(d) for d in range(10)]
    assert not {c.id for c in data.sets["test"].clips} & {c.id for c in data.sets["train"].clips}
    loso = build_speech_data(SpeechDataConfig(holdout_speaker="theo", max_clips=50))
    assert {c.speaker for c in loso.sets["test"].clips} == {"theo"}
    assert "theo" not in {c.speaker for c in loso.sets["train"].clips}


@pytest.mark.slow
def test_onnx_export_takes_clips_of_any_length(digits_run, tmp_path):
    from deepkit.data.audio import pad_batch
    from deepkit.export import OnnxModel, export

    run, rec = digits_run
    p = deepkit.load(run)
    done = export(p, "onnx", tmp_path / "export", dynamic_batch=True)
    assert done.max_diff is not None and done.max_diff <= 1e-4
    side = json.loads(done.sidecar.read_text())
    assert side["inputs"]["audio"]["sample_rate"] == RATE and side["outputs"]["probabilities"]["labels"][3] == "3"
    files = sorted(rec.glob("*_bob_2.wav"))[:3]  # ~0.3 s each: not the 1 s of the traced example
    audio, lengths = pad_batch([p.reader(f) for f in files])
    out = OnnxModel(tmp_path / "export").run({"audio": audio.numpy(), "lengths": lengths.numpy()})["probabilities"]
    np.testing.assert_allclose(out, p.probabilities(files).numpy(), atol=1e-4)


def test_a_folder_of_labelled_clips_with_mixed_formats(tmp_path):
    """data.name=folder: class = sub-folder; stereo 44.1 kHz files among 16 kHz mono ones are converted, and each kind
    of conversion is noted once in the run's log."""
    rng = np.random.default_rng(0)
    for c, (name, freq) in enumerate((("low", 300.0), ("mid", 900.0), ("high", 2500.0))):
        for i in range(12):
            rate, channels = (44100, 2) if i % 4 == 0 else (16000, 1)
            t = np.arange(int(0.25 * rate)) / rate
            x = (0.3 * np.sin(2 * np.pi * freq * (1 + 0.02 * rng.standard_normal()) * t)).astype(np.float32)
            x = np.stack([x] * channels, 1) if channels == 2 else x
            (tmp_path / "clips" / name).mkdir(parents=True, exist_ok=True)
            sf.write(str(tmp_path / "clips" / name / f"{c}_{i}.wav"), x, rate)
    out = tmp_path / "run"
    deepkit.train("fsdd_digits_cnn", "data.name=folder", f"data.path={tmp_path / 'clips'}", "data.val_split=0.2",
                  "data.test_split=0.2", "model.channels=[4,8]", "model.n_mels=16", "trainer.epochs=1", *FAST,
                  out=out)  # fmt: skip
    log = (out / "log.txt").read_text()
    assert log.count("averaged to mono") == 1 and log.count("44100 Hz -> 16000 Hz") == 1, log
    assert "folder: 0.2 validation / 0.2 test" in log
    results = json.loads((out / "results.json").read_text())
    assert {"recall_low", "recall_mid", "recall_high"} <= set(results["metrics"])
    assert deepkit.load(out).class_names == ["high", "low", "mid"]

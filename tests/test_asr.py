"""CTC speech recognition (the ``asr`` family): digit strings respect FSDD's split and are deterministic, prefix beam
search against a brute-force sum over every alignment, the too-short check and vocabulary errors naming the
utterance, a tiny train -> eval -> transcribe round trip on a synthetic FSDD, LibriSpeech-layout data."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import deepkit
from conftest import _write_fsdd, datasets_root
from deepkit.api import build, parse_overrides, resolve_recipe
from deepkit.data.asr import Vocabulary, char_vocabulary, digit_vocabulary
from deepkit.errors import DataError
from deepkit.nn.ctc import ctc_min_frames, error_rates, greedy_decode, prefix_beam_search

FAST = ["trainer.progress=none", "trainer.threads=1"]
TINY_MODEL = ["model.input_dim=32", "model.hidden_size=32", "model.num_layers=1", "model.conv_channels=8",
              "model.n_mels=24", "model.dropout=0.0"]  # fmt: skip
TINY_DATA = ["data.train_strings=96", "data.val_strings=16", "data.test_strings=24", "data.min_digits=2",
             "data.max_digits=4", "data.val_per_group=1", "data.batch_size=8"]  # fmt: skip


@pytest.fixture(scope="module")
def fsdd(tmp_path_factory) -> Path:
    return _write_fsdd(tmp_path_factory.mktemp("asr") / "recordings", ("ann", "bob"), takes=8)


def strings_data(rec: Path, *overrides: str, recipe: str = "fsdd_strings_ctc", model: list[str] = TINY_MODEL):
    return build(resolve_recipe(recipe, parse_overrides([f"data.path={rec}", *model, *TINY_DATA, *overrides])))


def take(clip_id: str) -> int:
    return int(clip_id.split("_")[2])


# --- digit strings ----------------------------------------------------------------------------------------------------
def test_digit_strings_use_only_their_splits_recordings_and_are_deterministic(fsdd):
    data = strings_data(fsdd).data
    train, val, test = (data.sets[k] for k in ("train", "val", "test"))
    seen_train = set()
    for epoch in range(3):
        train.set_epoch(epoch)
        seen_train |= train.recordings()
    assert seen_train and all(take(c) >= 5 for c in seen_train)
    assert test.recordings() and all(take(c) < 5 for c in test.recordings())
    assert not (seen_train & val.recordings()) and all(take(c) >= 5 for c in val.recordings())
    for s in (train, val, test):  # 2-4 digits, the text is the digits of the recordings used, one speaker a string
        for i in range(len(s)):
            ids = s.id(i).split("[")[1].rstrip("]").split("+")
            assert 2 <= len(ids) <= 4 and s.text(i) == " ".join(c.split("_")[0] for c in ids)
            assert len({c.split("_")[1] for c in ids}) == 1
            assert len(s.wave(i)) == int(s.lengths[i])
    train.set_epoch(0)
    first = [train.wave(i) for i in range(4)]
    train.set_epoch(1)
    assert any(train.wave(i).shape != first[i].shape or not torch.equal(train.wave(i), first[i]) for i in range(4))
    again = strings_data(fsdd).data  # the same seed: the same strings
    assert [again.sets["test"].id(i) for i in range(len(test))] == [test.id(i) for i in range(len(test))]
    torch.testing.assert_close(again.sets["test"].wave(3), test.wave(3))
    other = strings_data(fsdd, "data.seed=1").data
    assert [other.sets["test"].id(i) for i in range(5)] != [test.id(i) for i in range(5)]


def test_a_held_out_speaker_is_only_in_test_strings(fsdd):
    data = strings_data(fsdd, "data.holdout_speaker=bob").data
    assert {c.split("_")[1] for c in data.sets["test"].recordings()} == {"bob"}
    for k in ("train", "val"):
        assert {c.split("_")[1] for c in data.sets[k].recordings()} == {"ann"}


@pytest.mark.skipif(not (datasets_root() / "fsdd" / "recordings").is_dir(), reason="FSDD not in DEEPKIT_DATA")
def test_real_fsdd_strings_keep_test_takes_out_of_training():
    rec = datasets_root() / "fsdd" / "recordings"
    sizes = ["data.train_strings=300", "data.val_strings=50", "data.test_strings=100"]
    data = build(resolve_recipe("fsdd_strings_ctc", parse_overrides([f"data.path={rec}", *sizes]))).data
    assert all(take(c) >= 5 for c in data.sets["train"].recordings())
    assert all(take(c) < 5 for c in data.sets["test"].recordings())
    assert len({c.split("_")[1] for c in data.sets["test"].recordings()}) == 6


# --- decoding ---------------------------------------------------------------------------------------------------------
def brute_force(log_probs: torch.Tensor, blank: int = 0) -> dict[tuple[int, ...], float]:
    """log P(labels) for every labelling: the sum over every alignment path (V ** T of them) that collapses to it."""
    probs = log_probs.double().exp()
    out: dict[tuple[int, ...], float] = {}
    for path in itertools.product(range(probs.shape[1]), repeat=probs.shape[0]):
        labels = tuple(k for i, k in enumerate(path) if k != blank and (i == 0 or path[i - 1] != k))
        out[labels] = out.get(labels, 0.0) + float(torch.prod(probs[torch.arange(len(path)), list(path)]))
    return {k: math.log(v) for k, v in out.items()}


@pytest.mark.parametrize("seed", range(6))
def test_prefix_beam_search_equals_the_brute_force_sum_over_alignments(seed):
    g = torch.Generator().manual_seed(seed)
    t, v = (4, 3) if seed % 2 else (5, 3)
    lp = (torch.randn(t, v, generator=g) * 2).log_softmax(-1)
    exact = brute_force(lp)
    ranked = sorted(exact.items(), key=lambda kv: -kv[1])
    full = prefix_beam_search(lp, beam=len(exact) + 5, prune=None)  # keeps every prefix: exact
    assert len(full) == len(exact)
    for labels, score in full:
        assert score == pytest.approx(exact[tuple(labels)], abs=1e-9)
    best, score = prefix_beam_search(lp, beam=4, prune=None)[0]
    assert tuple(best) == ranked[0][0] and score <= ranked[0][1] + 1e-9  # a narrow beam drops some alignments' mass


def test_beam_search_finds_the_labelling_greedy_misses():
    # every frame's argmax is the blank, yet 'a' (= 1) spread over its alignments is the more likely text
    p = torch.tensor([[0.6, 0.4], [0.6, 0.4]]).log()
    assert greedy_decode(p) == []
    exact = brute_force(p)
    assert exact[(1,)] > exact[()]
    assert prefix_beam_search(p, beam=2, prune=None)[0][0] == [1]
    assert greedy_decode(torch.tensor([[0.1, 0.9, 0.0], [0.1, 0.9, 0.0], [0.9, 0.1, 0.0], [0.1, 0.9, 0.0]]).log()) \
        == [1, 1]  # fmt: skip


def test_ctc_minimum_frames_and_error_rates():
    assert ctc_min_frames([1, 2, 3]) == 3 and ctc_min_frames([1, 1, 2, 2, 2]) == 8 and ctc_min_frames([]) == 0
    rates = error_rates(["1 2", "4 5 6"], ["1 2 3", "4 5 6"], " ")
    assert rates["ter"] == pytest.approx(1 / 6) and rates["wer"] == pytest.approx(1 / 6)
    assert rates["cer"] == pytest.approx(2 / 10)  # "1 2 3" -> "1 2": two characters deleted of 5 + 5


# --- bad input --------------------------------------------------------------------------------------------------------
def test_a_transcript_outside_the_vocabulary_names_the_tokens_and_the_utterance():
    v = digit_vocabulary()
    assert v.encode("4 1 7") == [5, 2, 8] and v.decode([5, 2, 8]) == "4 1 7"
    with pytest.raises(DataError, match=r"utt-7.*'x'.*vocabulary is 10 words"):
        v.encode("4 x 7", "utt-7")
    c = char_vocabulary(["AB C"])
    assert c.tokens == ["<blank>", " ", "A", "B", "C"] and c.decode(c.encode("CAB")) == "CAB"
    with pytest.raises(DataError, match=r"u1.*'D', 'é'"):
        c.encode("DAé", "u1")
    with pytest.raises(Exception, match="blank"):
        Vocabulary(["a", "b"])


def write_librispeech(root: Path, texts: dict[str, tuple[float, str]]) -> Path:
    """A LibriSpeech-layout corpus: ``{utterance id SPK-CHAP-NNNN: (seconds, transcript)}`` -> FLAC tones + trans."""
    rate = 16000
    by_chapter: dict[tuple[str, str], list[str]] = {}
    for uid, (sec, text) in texts.items():
        spk, chap, _ = uid.split("-")
        folder = root / "train-clean-5" / spk / chap
        folder.mkdir(parents=True, exist_ok=True)
        t = np.arange(int(sec * rate)) / rate
        x = 0.3 * np.sin(2 * np.pi * (300 + 40 * len(text)) * t) * np.hanning(len(t))
        sf.write(str(folder / f"{uid}.flac"), x.astype(np.float32), rate)
        by_chapter.setdefault((spk, chap), []).append(f"{uid} {text}")
    for (spk, chap), lines in by_chapter.items():
        (root / "train-clean-5" / spk / chap / f"{spk}-{chap}.trans.txt").write_text("\n".join(lines) + "\n")
    return root


LIBRI_OVERRIDES = ["data.name=librispeech", "data.val_split=0.34", "model.hop_length=160", "model.n_fft=400",
                   *TINY_MODEL]  # fmt: skip


def test_a_clip_too_short_for_its_transcript_is_named(tmp_path):
    root = write_librispeech(tmp_path / "ls", {
        "11-1-0001": (1.0, "AB BA"), "11-1-0002": (1.0, "A B"), "11-1-0003": (1.0, "BAA"),
        "11-1-0004": (0.3, "ABABABABABAB AB AB"),  # 0.3 s: 8 output frames at 40 ms, 18 labels
        "22-1-0001": (1.0, "AB"),
    })  # fmt: skip
    with pytest.raises(DataError, match=r"1 clip\(s\) too short.*11-1-0004 \((train|val): 8 output frames, 18 "
                                        r"needed\).*40 ms.*model.subsample"):  # fmt: skip
        build(resolve_recipe("fsdd_strings_ctc", parse_overrides([*LIBRI_OVERRIDES, f"data.path={root}"])))
    # the same clip is long enough at 10 ms per output frame
    built = build(resolve_recipe("fsdd_strings_ctc", parse_overrides(
        [*LIBRI_OVERRIDES, f"data.path={root}", "model.subsample=1"])))  # fmt: skip
    assert built.data.vocab.tokens == ["<blank>", " ", "A", "B"] and set(built.data.sets) == {"train", "val", "test"}


def test_a_test_transcript_with_unseen_characters_is_named(tmp_path):
    root = write_librispeech(tmp_path / "ls", {
        "11-1-0001": (1.0, "AB"), "11-1-0002": (1.0, "BA"), "11-1-0003": (1.0, "AB'BA"), "22-1-0001": (1.0, "ABZ"),
    })  # fmt: skip
    with pytest.raises(DataError, match=r"22-1-0001: transcript 'ABZ' has 1 token\(s\) outside the vocabulary \('Z'\)"):
        build(resolve_recipe("fsdd_strings_ctc", parse_overrides([*LIBRI_OVERRIDES, f"data.path={root}",
                                                                  "data.val_split=0"])))  # fmt: skip


# --- train -> eval -> transcribe ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ctc_run(fsdd, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("asr_run") / "run"
    deepkit.train("fsdd_strings_ctc", f"data.path={fsdd}", *TINY_MODEL, *TINY_DATA, "data.train_strings=32",
                  "trainer.epochs=2", "task.beam=4", *FAST, out=out)  # fmt: skip
    return out


def test_a_run_reports_greedy_and_beam_rates_transcripts_and_alignments(ctc_run):
    results = json.loads((ctc_run / "results.json").read_text())
    m = results["metrics"]
    assert {"wer", "cer", "der", "wer_beam", "cer_beam", "der_beam"} <= set(m)
    assert all(math.isfinite(v) and v >= 0 for v in m.values()), m
    assert "takes 0-4" in results["split_rule"] and results["vocabulary"] == ["<blank>", *map(str, range(10))]
    listed = results["transcripts"]
    assert len(listed) == 24 and set(listed[0]) == {"id", "reference", "greedy", "beam"}
    assert listed[0]["id"].startswith("test-00000[") and all(take(c) < 5 for c in listed[0]["id"][11:-1].split("+"))
    assert (ctc_run / "plots" / "ctc_alignment.png").stat().st_size > 5000
    header = (ctc_run / "metrics.csv").read_text().splitlines()[0]
    assert "val_der" in header and "beam" not in header  # the beam only in the final evaluation


def test_eval_prints_greedy_and_beam_rates(ctc_run, deepkit_cli):
    code, out, err = deepkit_cli("eval", ctc_run)
    assert code == 0, err
    rows = {ln.split()[0]: ln for ln in out.splitlines() if ln.split()[:1] in (["greedy"], ["beam"])}
    assert set(rows) == {"greedy", "beam"} and "DER" in out and rows["beam"].count("%") == 3, out


def test_transcribe_through_the_cli_and_python(ctc_run, deepkit_cli):
    clips = sorted((ctc_run / "samples").glob("*.wav"))[:4]
    assert len(clips) == 4 and all(c.stem.split("_")[1].isdigit() for c in clips)  # test-NNN_DIGITS.wav
    code, out, err = deepkit_cli("transcribe", ctc_run, *clips, "--json")
    assert code == 0, err
    records = json.loads(out)
    assert [r["input"] for r in records] == [str(c) for c in clips] and all(r["decoder"] == "greedy" for r in records)
    assert all(set(r["text"].split()) <= set("0123456789") for r in records)
    p = deepkit.load(ctc_run)
    assert p.transcribe(clips) == [r["text"] for r in records]
    code, out, err = deepkit_cli("transcribe", ctc_run, clips[0], "--beam", "4", "--top-k", "3", "--json")
    assert code == 0, err
    (rec,) = json.loads(out)
    scores = [rec["log_prob"], *(a["log_prob"] for a in rec["alternatives"])]
    assert rec["decoder"] == "beam 4" and len(scores) == 3 and scores == sorted(scores, reverse=True)
    code, out, err = deepkit_cli("transcribe", ctc_run, clips[0], "--beam", "4")
    assert code == 0 and out.startswith(f"{clips[0]}: '") and "(beam 4, log p" in out, (out, err)
    audio, _ = sf.read(str(clips[0]), dtype="float32")
    assert p.transcribe(audio, beam=4) == [rec["text"]]
    lp = p.posteriors([clips[0]])[0]
    assert lp.shape[1] == 11 and torch.allclose(lp.exp().sum(-1), torch.ones(len(lp)), atol=1e-5)
    text = ctc_run / "not_audio.wav"
    text.write_text("hello")
    code, out, err = deepkit_cli("transcribe", ctc_run, text)
    assert code == 2 and err.strip().count("\n") == 0 and "not_audio.wav is not a readable audio file" in err, err
    code, out, err = deepkit_cli("transcribe", ctc_run, clips[0], "--beam", "-1")
    assert code == 2 and "--beam must be >= 0" in err, err


@pytest.mark.slow
@pytest.mark.parametrize("model", ["ctc_lstm", "ctc_conformer"])
def test_each_encoder_learns_a_batch_of_tone_digit_strings(fsdd, model):
    """Past CTC's all-blank plateau: a batch of 8 strings transcribed exactly after 500 steps."""
    torch.manual_seed(0)
    small = {"ctc_lstm": [*TINY_MODEL, "model.hidden_size=64"],
             "ctc_conformer": ["model.dim=32", "model.num_layers=2", "model.num_heads=2", "model.dropout=0.0",
                               "model.conv_channels=8", "model.n_mels=24"]}  # fmt: skip
    b = strings_data(fsdd, "model.freq_masks=0", "model.time_masks=0", recipe=f"fsdd_strings_{model[4:]}_ctc",
                     model=small[model])  # fmt: skip
    task, batch = b.task, next(iter(b.data.loader("train", shuffle=False)))
    opt = torch.optim.Adam(task.model.parameters(), 3e-3)
    task.model.train()
    for _ in range(500):
        loss = task.training_step(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    task.model.eval()
    task.reset_metrics()
    task.validation_step(batch)
    assert task.compute_metrics()["der"] == 0.0


# --- LibriSpeech layout -----------------------------------------------------------------------------------------------
def test_librispeech_layout_trains_with_a_character_vocabulary(tmp_path):
    root = write_librispeech(tmp_path / "ls", {
        "11-1-0001": (0.8, "AB BA"), "11-1-0002": (0.9, "A B"), "11-1-0003": (0.7, "BAA"), "22-1-0001": (0.8, "AB"),
    })  # fmt: skip
    out = tmp_path / "run"
    deepkit.train("fsdd_strings_ctc", *LIBRI_OVERRIDES, f"data.path={root}", "trainer.epochs=1", *FAST, out=out)
    results = json.loads((out / "results.json").read_text())
    assert {"wer", "cer", "wer_beam"} <= set(results["metrics"]) and "der" not in results["metrics"]
    assert results["vocabulary"] == ["<blank>", " ", "A", "B"] and results["transcripts"][0]["id"] == "22-1-0001"
    assert "speaker 22" in results["split_rule"]


@pytest.mark.skipif(not (datasets_root() / "librispeech_mini").is_dir(), reason="librispeech_mini not in DEEPKIT_DATA")
def test_real_librispeech_smoke(tmp_path):
    out = tmp_path / "run"
    deepkit.train("fsdd_strings_ctc", *LIBRI_OVERRIDES, "data.max_clips=2", "trainer.max_steps=1", *FAST, out=out)
    results = json.loads((out / "results.json").read_text())
    assert math.isfinite(results["metrics"]["cer"]) and len(results["vocabulary"]) > 20

"""wav2vec2 in the speech recognition family: a Hugging Face wav2vec2 checkpoint directory (deepkit's own export of a
random tiny model, and ``save_pretrained`` where ``transformers`` is importable) transcribes through ``deepkit
transcribe DIR`` exactly as ``interop.wav2vec2.transcribe`` does; ``model.weights=DIR`` fine-tunes it on digit
strings (its vocabulary and head, or the data's under a new head), the loss falls, the run transcribes and exports
back to a directory ``transformers`` loads; the recipe trains a small wav2vec2 from scratch on 16 kHz waveforms
resampled from FSDD's 8 kHz; bad input (not a wav2vec2 directory, transcripts outside its vocabulary, a file that is
not audio) is one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import deepkit
from conftest import _write_fsdd, datasets_root
from deepkit import create_model
from deepkit.api import build, parse_overrides, resolve_recipe
from deepkit.errors import ConfigError, DataError
from deepkit.families.asr import ASRPredictor
from deepkit.interop.wav2vec2 import CTCVocab, export_wav2vec2, load_wav2vec2, transcribe

RECIPE = "fsdd_strings_wav2vec2_ctc"
FAST = ["trainer.progress=none", "trainer.threads=1"]
TINY = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=24, conv_dim=[8, 8, 12],
            conv_kernel=[10, 5, 4], conv_stride=[5, 4, 4], num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2,
            conv_bias=True, layerdrop=0.0, hidden_dropout=0.0, mask_time_prob=0.0)  # fmt: skip
TINY_DATA = ["data.train_strings=8", "data.val_strings=4", "data.test_strings=4", "data.min_digits=2",
             "data.max_digits=3", "data.val_per_group=1", "data.batch_size=4", "data.gap_seconds=[0.02,0.05]",
             "data.edge_seconds=[0.0,0.02]"]  # fmt: skip
# a digit vocabulary as a Hugging Face CTC tokenizer writes it, the pad token (the blank) last: deepkit reorders
DIGIT_VOCAB = ["|", *map(str, range(10)), "<unk>", "<pad>"]


@pytest.fixture(scope="module")
def fsdd(tmp_path_factory) -> Path:
    return _write_fsdd(tmp_path_factory.mktemp("w2v") / "recordings", ("ann", "bob"), takes=7)


def tiny_checkpoint(folder: Path, tokens: list[str], norm: str = "layer", seed: int = 0) -> Path:
    """deepkit's export of a random tiny wav2vec2 (O(0.3) weights, so frames disagree on their argmax)."""
    torch.manual_seed(seed)
    model = create_model("wav2vec2_ctc", vocab_size=len(tokens), feat_extract_norm=norm,
                         pad_token_id=tokens.index("<pad>"), **TINY).eval()  # fmt: skip
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = ("norm" in name and name.endswith("weight")) or name.endswith("original0")
            p.copy_(torch.randn(p.shape, generator=g) * 0.3 + (1.0 if scale else 0.0))
    model.vocab = CTCVocab(dict(enumerate(tokens)))
    return export_wav2vec2(model, folder)


def write_clips(folder: Path, n: int = 4, rate: int = 16000) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        t = np.arange(int(rate * (0.25 + 0.1 * i))) / rate
        x = 0.3 * np.sin(2 * np.pi * (200 + 150 * i) * t) + 0.05 * rng.standard_normal(len(t))
        out.append(folder / f"clip{i}.wav")
        sf.write(str(out[-1]), x.astype(np.float32), rate, subtype="FLOAT")
    return out


# --- a checkpoint directory transcribes ------------------------------------------------------------------------------
@pytest.mark.parametrize("norm", ["layer", "group"])
def test_transcribe_a_checkpoint_directory_equals_the_interop_transcription(norm, tmp_path, deepkit_cli):
    ckpt = tiny_checkpoint(tmp_path / "ckpt", ["<pad>", "<s>", "</s>", "<unk>", "|", "A", "B", "E", "O"], norm)
    clips = write_clips(tmp_path / "clips")
    want = [transcribe(ckpt, sf.read(str(c), dtype="float32")[0]) for c in clips]
    assert len(set(want)) > 1, want  # a random model that says different things
    code, out, err = deepkit_cli("transcribe", ckpt, *clips, "--json")
    assert code == 0, err
    records = json.loads(out)
    assert [r["text"] for r in records] == want and [r["input"] for r in records] == [str(c) for c in clips]
    p = deepkit.load(ckpt)  # the same predictor in Python, group-norm models clip by clip (padding would show)
    assert p.transcribe(clips) == want and len(p.hypotheses(clips[0], beam=4, top_k=2)[0]) == 2


def test_a_pad_token_that_is_not_first_is_the_blank(tmp_path, deepkit_cli):
    ckpt = tiny_checkpoint(tmp_path / "ckpt", DIGIT_VOCAB, seed=1)
    clips = write_clips(tmp_path / "clips", 3)
    want = [transcribe(ckpt, sf.read(str(c), dtype="float32")[0]) for c in clips]
    code, out, err = deepkit_cli("transcribe", ckpt, *clips, "--json")
    assert code == 0 and [r["text"] for r in json.loads(out)] == want, (out, err, want)
    model = load_wav2vec2(ckpt)
    assert model.vocab.blank_id == len(DIGIT_VOCAB) - 1


def test_a_save_pretrained_directory_transcribes_like_transformers(tmp_path, deepkit_cli):
    transformers = pytest.importorskip("transformers", reason="transformers makes the save_pretrained directory")
    transformers.logging.set_verbosity_error()
    tokens = ["<pad>", "<s>", "</s>", "<unk>", "|", "A", "B", "E", "O"]
    (tmp_path / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    torch.manual_seed(0)
    config = transformers.Wav2Vec2Config(vocab_size=len(tokens), feat_extract_norm="layer", do_stable_layer_norm=True,
                                         **TINY)  # fmt: skip
    hf = transformers.Wav2Vec2ForCTC(config).eval()
    with torch.no_grad():
        hf.lm_head.weight.mul_(50.0)  # frames that disagree
    tok = transformers.Wav2Vec2CTCTokenizer(str(tmp_path / "vocab.json"))
    fe = transformers.Wav2Vec2FeatureExtractor(return_attention_mask=True)
    hf.save_pretrained(tmp_path / "ckpt")
    transformers.Wav2Vec2Processor(feature_extractor=fe, tokenizer=tok).save_pretrained(tmp_path / "ckpt")
    clips = write_clips(tmp_path / "clips", 3)
    waves = [sf.read(str(c), dtype="float32")[0] for c in clips]
    want = [transcribe(tmp_path / "ckpt", w) for w in waves]
    code, out, err = deepkit_cli("transcribe", tmp_path / "ckpt", *clips, "--json")
    assert code == 0 and [r["text"] for r in json.loads(out)] == want, (out, err)
    proc = transformers.Wav2Vec2Processor.from_pretrained(tmp_path / "ckpt")
    with torch.no_grad():
        ids = [hf(**proc(w, sampling_rate=16000, return_tensors="pt")).logits.argmax(-1)[0] for w in waves]
    assert [proc.decode(i) for i in ids] == want


# --- fine-tuning a checkpoint directory -----------------------------------------------------------------------------
def test_fine_tuning_a_checkpoint_lowers_the_ctc_loss_and_keeps_its_vocabulary(fsdd, tmp_path):
    ckpt = tiny_checkpoint(tmp_path / "ckpt", DIGIT_VOCAB)
    rec = resolve_recipe(RECIPE, parse_overrides([f"data.path={fsdd}", f"model.weights={ckpt}", *TINY_DATA]))
    b = build(rec)
    notes = " | ".join(b.data.notes)
    assert "the checkpoint's vocab.json" in notes and "reordered" in notes and "resampled 8000 Hz -> 16000" in notes
    assert b.data.sample_rate == 16000 and b.data.vocab.decode(b.data.vocab.encode("4 1 7")) == "4 1 7"
    model = b.task.model
    assert model.cfg.freeze_feature_encoder and model.cfg.pad_token_id == 0
    assert not any(p.requires_grad for p in model.wav2vec2.feature_extractor.parameters())
    # the reordered head scores as the checkpoint did: the same greedy text on a clip
    wave = b.data.sets["test"].wave(0)
    predictor = ASRPredictor(model, "speech_recognition", rec.family.saved(rec, b.data))
    assert predictor.transcribe([wave.numpy()]) == [transcribe(ckpt, wave.numpy())]
    batch = next(iter(b.data.loader("train", shuffle=False)))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], 3e-3)
    model.train()
    losses = []
    for _ in range(25):
        loss = b.task.training_step(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


def test_a_fine_tuned_run_transcribes_and_exports_to_transformers(fsdd, tmp_path, deepkit_cli):
    ckpt = tiny_checkpoint(tmp_path / "ckpt", ["<pad>", "<unk>", "|", "A"])  # no digits: the data's vocabulary
    out = tmp_path / "run"
    deepkit.train(RECIPE, f"data.path={fsdd}", f"model.weights={ckpt}", "task.vocabulary=data", "task.beam=2",
                  *TINY_DATA, "trainer.epochs=1", *FAST, out=out)  # fmt: skip
    log = (out / "log.txt").read_text()
    assert "CTC head: re-initialised for the data's vocabulary" in log and "conv feature encoder frozen" in log
    assert "the new CTC head at" in log
    results = json.loads((out / "results.json").read_text())
    assert {"der", "der_beam"} <= set(results["metrics"]) and (out / "plots" / "ctc_alignment.png").is_file()
    saved = yaml_model(out)
    assert saved["weights"] is None and saved["hidden_size"] == 16 and saved["vocab_size"] == 11
    code, text, err = deepkit_cli("eval", out)  # the run rebuilds its data and model without the checkpoint dir
    assert code == 0 and "DER" in text, err
    clips = sorted((out / "samples").glob("*.wav"))[:2]
    code, text, err = deepkit_cli("transcribe", out, *clips, "--json")
    assert code == 0, err
    texts = [r["text"] for r in json.loads(text)]
    code, _, err = deepkit_cli("export", out, "--format", "hf", "--out", tmp_path / "hf")
    assert code == 0, err
    code, again, err = deepkit_cli("transcribe", tmp_path / "hf", *clips, "--json")  # deepkit reads it back
    assert code == 0 and [r["text"] for r in json.loads(again)] == texts, (again, err)
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["pad_token_id"] == 0
    transformers = pytest.importorskip("transformers", reason="transformers loads the exported directory")
    hf = transformers.Wav2Vec2ForCTC.from_pretrained(tmp_path / "hf").eval()
    ours = deepkit.load(out).model
    x = torch.randn(1, 8000)
    with torch.no_grad():
        torch.testing.assert_close(hf(x).logits, ours(x), atol=1e-4, rtol=0)


def yaml_model(run: Path) -> dict:
    import yaml

    return yaml.safe_load((run / "config.yaml").read_text())["model"]


def test_the_recipe_trains_a_small_wav2vec2_from_scratch_on_16khz_waveforms(fsdd):
    b = build(resolve_recipe(RECIPE, parse_overrides([f"data.path={fsdd}", *TINY_DATA])))
    notes = " | ".join(b.data.notes)
    assert b.data.sample_rate == 16000 and "resampled 8000 Hz -> 16000" in notes and "attention mask" in notes
    model = b.task.model
    assert model.cfg.vocab_size == 11 and not model.cfg.freeze_feature_encoder and model.uses_attention_mask
    batch = next(iter(b.data.loader("train", shuffle=False)))
    inputs = model.prepare(batch["audio"], batch["lengths"])
    for row, n in zip(inputs["input_values"], batch["lengths"].tolist(), strict=True):  # normalised, padding zero
        assert abs(float(row[:n].mean())) < 1e-4 and abs(float(row[:n].std(unbiased=False)) - 1) < 1e-3
        assert not row[n:].any()
    assert torch.equal(inputs["attention_mask"].sum(1), batch["lengths"])


# --- bad input ------------------------------------------------------------------------------------------------------
def test_not_a_wav2vec2_directory_is_one_line(fsdd, tmp_path, deepkit_cli):
    clip = write_clips(tmp_path / "clips", 1)[0]
    (tmp_path / "empty").mkdir()
    code, _, err = deepkit_cli("transcribe", tmp_path / "empty", clip)
    assert code == 2 and err.strip().count("\n") == 0 and "wav2vec2 checkpoint directory" in err, err
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ConfigError, match=r"holds a 'bert' checkpoint; expected a wav2vec2 one"):
        build(resolve_recipe(RECIPE, parse_overrides([f"data.path={fsdd}", f"model.weights={bert}", *TINY_DATA])))
    with pytest.raises(ConfigError, match=r"not a Hugging Face checkpoint directory \(no config.json\)"):
        build(resolve_recipe(RECIPE, parse_overrides([f"data.path={fsdd}", f"model.weights={tmp_path / 'empty'}"])))


def test_transcripts_outside_the_checkpoint_vocabulary_name_the_characters(fsdd, tmp_path):
    ckpt = tiny_checkpoint(tmp_path / "ckpt", ["<pad>", "<unk>", "|", "A", "B", "1"])
    with pytest.raises(DataError, match=r"transcript '.*' has \d token\(s\) outside the vocabulary \('\d'.*"
                                        r"task.vocabulary=data"):  # fmt: skip
        build(resolve_recipe(RECIPE, parse_overrides([f"data.path={fsdd}", f"model.weights={ckpt}", *TINY_DATA])))


def test_a_file_that_is_not_audio_is_named(tmp_path, deepkit_cli):
    ckpt = tiny_checkpoint(tmp_path / "ckpt", ["<pad>", "<unk>", "|", "A"])
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    code, _, err = deepkit_cli("transcribe", ckpt, bad)
    assert code == 2 and err.strip().count("\n") == 0 and "notes.wav is not a readable audio file" in err, err


# --- real data ------------------------------------------------------------------------------------------------------
@pytest.mark.skipif(not (datasets_root() / "fsdd" / "recordings").is_dir(), reason="FSDD not in DEEPKIT_DATA")
def test_real_fsdd_strings_reach_wav2vec2_at_16khz():
    b = build(resolve_recipe(RECIPE, parse_overrides(["data.max_clips=40", "data.train_strings=8",
                                                      "data.val_strings=4", "data.test_strings=4"])))  # fmt: skip
    assert b.data.sample_rate == 16000 and any("8000 Hz -> 16000 Hz" in n for n in b.data.notes)
    batch = next(iter(b.data.loader("test", shuffle=False)))
    logits, frames = b.task.forward(batch)
    assert logits.shape[-1] == 11 and torch.equal(frames, b.task.model.frame_lengths(batch["lengths"]))

"""Parallel-text batches, a tiny German->English run with BLEU, and the adding problem with gradient norms."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import torch

import deepkit
from deepkit import create_model
from deepkit.data.long_range import adding_problem, input_gradient_norms
from deepkit.data.translation import IGNORE, PairLoader
from deepkit.errors import DataError


def test_pair_loader_shifts_targets_and_masks_padding():
    loader = PairLoader([[5, 6, 7], [8]], [[9, 10], [11, 12, 13]], batch_size=2)
    b = next(iter(loader))
    assert b["src"].tolist() == [[5, 6, 7], [8, 0, 0]] and b["src_lengths"].tolist() == [3, 1]
    assert b["tgt_in"].tolist() == [[2, 9, 10, 0], [2, 11, 12, 13]]
    assert b["target"].tolist() == [[9, 10, 3, IGNORE], [11, 12, 13, 3]]
    with pytest.raises(DataError, match="line-aligned"):
        PairLoader([[1]], [[1], [2]], 2)


LEXICON = {
    "ein": "a",
    "mann": "man",
    "eine": "a",
    "frau": "woman",
    "hund": "dog",
    "läuft": "runs",
    "sitzt": "sits",
    "kind": "child",
    "rot": "red",
    "blau": "blue",
}


@pytest.fixture(scope="module")
def toy_multi30k(tmp_path_factory):
    """Word-for-word 'translations' in the Multi30k file layout (gzip, line-aligned)."""
    folder = tmp_path_factory.mktemp("multi30k")
    rng = np.random.default_rng(0)
    words = list(LEXICON)
    for stem, n in (("train", 1500), ("val", 60), ("test_2016_flickr", 60)):
        de = [" ".join(rng.choice(words, rng.integers(2, 6))) for _ in range(n)]
        en = [" ".join(LEXICON[w] for w in s.split()) for s in de]
        for lang, lines in (("de", de), ("en", en)):
            with gzip.open(folder / f"{stem}.{lang}.gz", "wt", encoding="utf-8") as f:
                f.write("\n".join(lines) + "\n")
    return folder


def test_tiny_translation_run_beats_copying_the_source(toy_multi30k, tmp_path, run_cli):
    recipe = {
        "name": "toy_mt",
        "task": {"name": "translation"},
        "model": {"name": "seq2seq_luong", "embed_dim": 16, "hidden_size": 32, "dropout": 0.0},
        "data": {"name": "multi30k", "path": str(toy_multi30k), "batch_size": 32, "eval_batch_size": 64},
        "trainer": {"epochs": 6, "optimizer": {"name": "adamw", "lr": 0.01}, "progress": "none", "threads": 1},
    }
    res = deepkit.train(recipe, out=tmp_path / "mt")
    m = res.metrics
    assert m["bleu_greedy"] > 60 and m["bleu_beam5"] > 60, m
    assert m["bleu_copy_source"] < 20
    assert (res.run_dir / "src_tokenizer.json").is_file()
    p = deepkit.load(res.run_dir)
    assert p.translate(["ein mann läuft"], beam_size=3) == ["a man runs"]
    assert deepkit.evaluate(res.run_dir)["loss"] == pytest.approx(m["loss"], rel=1e-5)
    proc = run_cli("translate", res.run_dir, "ein hund sitzt", "eine frau läuft", "--beam-size", "1")
    assert proc.returncode == 0 and proc.stdout.splitlines() == ["a dog sits", "a woman runs"], proc.stderr
    (tmp_path / "src.txt").write_text("ein kind\n\nein mann sitzt\n")
    proc = run_cli("translate", res.run_dir, "--file", tmp_path / "src.txt")
    lines = proc.stdout.splitlines()  # one per non-empty line, beam search by default
    assert len(lines) == 2 and lines[0] == "a child" and lines[1].startswith("a man sits"), proc.stderr
    proc = run_cli("translate", res.run_dir)
    assert proc.returncode == 2 and "no sentences given" in proc.stderr


def test_adding_problem_has_two_markers_one_per_half():
    x, y = adding_problem(500, 20, seed=1)
    assert x.shape == (500, 20, 2) and y.shape == (500, 1)
    assert (x[..., 1].sum(1) == 2).all()
    assert (x[:, :10, 1].sum(1) == 1).all() and (x[:, 10:, 1].sum(1) == 1).all()
    torch.testing.assert_close((x[..., 0] * x[..., 1]).sum(1, keepdim=True), y)
    assert abs(float(y.var()) - 1 / 6) < 0.02  # the predict-the-mean baseline's MSE


def test_vanilla_rnn_gradients_vanish_faster_than_lstm():
    torch.manual_seed(0)
    x, y = adding_problem(64, 100)
    rnn = create_model("rnn_classifier", vocab_size=0, in_features=2, num_classes=1, hidden_size=32)
    lstm = create_model("lstm_classifier", vocab_size=0, in_features=2, num_classes=1, hidden_size=32)
    g_rnn, g_lstm = input_gradient_norms(rnn, x, y), input_gradient_norms(lstm, x, y)
    assert g_rnn.shape == (100,)
    assert g_rnn[0] / g_rnn[-1] < 1e-6  # 100 tanh Jacobians shrink the signal to nothing
    assert g_lstm[0] / g_lstm[-1] > g_rnn[0] / g_rnn[-1]


def test_adding_run_stores_gradient_norms(tmp_path):
    recipe = {
        "name": "toy_adding",
        "task": {"name": "long_range"},
        "model": {"name": "gru_classifier", "hidden_size": 8},
        "data": {
            "name": "adding",
            "batch_size": 32,
            "long_range": {"length": 12, "num_train": 256, "num_val": 64, "num_test": 64},
        },
        "trainer": {"epochs": 1, "progress": "none", "threads": 1},
    }
    res = deepkit.train(recipe, out=tmp_path / "add")
    norms = json.loads((res.run_dir / "gradient_norms.json").read_text())
    assert len(norms["trained"]) == len(norms["init"]) == 12
    init = norms["init"]
    deepkit.train(resume=res.run_dir, trainer={"epochs": 2})  # the untrained model's norms survive a resume
    assert json.loads((res.run_dir / "gradient_norms.json").read_text())["init"] == init
    assert (res.run_dir / "plots" / "gradient_norms.png").is_file()
    assert {"accuracy", "mse", "baseline_mse"} <= set(res.metrics)

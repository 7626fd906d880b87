"""End-to-end: each Transformer objective / head trains through ``deepkit.train`` on tiny synthetic data and
lowers its loss; plus the error paths (wrong head, vocabulary larger than the embedding)."""

from __future__ import annotations

import json
import random

import pytest
import torch

import deepkit
from deepkit.data.tokenizers import build_tokenizer
from deepkit.errors import ConfigError

TINY_BERT = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}
TINY_T5 = {"name": "t5", "d_model": 32, "d_kv": 16, "d_ff": 64, "num_layers": 1, "num_heads": 2, "dropout_rate": 0.0}
COLORS = ["red", "green", "blue", "black", "white"]
ANIMALS = ["dog", "cat", "horse", "bird", "fish"]


def _sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [f"the {rng.choice(COLORS)} {rng.choice(ANIMALS)} runs to the {rng.choice(COLORS)} house" for _ in range(n)]


def _trainer(epochs: int, lr: float = 3e-3) -> dict:
    return {"epochs": epochs, "optimizer": {"name": "adamw", "lr": lr}, "progress": "none", "log_every": 1000}


def _first_last(history: list[dict], key: str = "train_loss") -> tuple[float, float]:
    return history[0][key], history[-1][key]


def test_masked_lm_trains_and_lowers_loss(tmp_path):
    (tmp_path / "corpus.txt").write_text("\n".join(_sentences(400)) + "\n")
    recipe = {
        "task": {"name": "masked_lm"},
        "model": {"name": "bert", "head": "mlm", "max_position_embeddings": 32, **TINY_BERT},
        "data": {
            "name": "text_file",
            "path": str(tmp_path / "corpus.txt"),
            "batch_size": 32,
            "text": {"tokenizer": "word", "max_len": 16},
        },
        "trainer": _trainer(6),
    }
    run = deepkit.train(recipe, out=tmp_path / "run")
    first, last = _first_last(run.history)
    assert last < 0.7 * first, (first, last)
    assert run.metrics["perplexity"] < 20  # a 30-word vocabulary; unigram guessing is ~11, context does better
    assert (run.run_dir / "tokenizer.json").is_file()


def test_pretrained_mlm_fine_tunes_as_classifier_with_its_tokenizer(tmp_path):
    sents = _sentences(300, seed=1)
    (tmp_path / "corpus.txt").write_text("\n".join(sents) + "\n")
    bert = {"name": "bert", "max_position_embeddings": 32, **TINY_BERT}
    pre = deepkit.train(
        {
            "task": {"name": "masked_lm"},
            "model": {**bert, "head": "mlm"},
            "data": {
                "name": "text_file",
                "path": str(tmp_path / "corpus.txt"),
                "text": {"tokenizer": "wordpiece", "vocab_size": 80, "max_len": 16},
            },
            "trainer": _trainer(1),
        },
        out=tmp_path / "pre",
    )
    rows = ["sentence\tlabel"] + [f"{s}\t{int(any(c in s.split()[1] for c in ('red', 'blue')))}" for s in sents]
    (tmp_path / "cls.tsv").write_text("\n".join(rows) + "\n")
    run = deepkit.train(
        {
            "task": {"name": "text_classification"},
            "model": {**bert, "head": "classification"},
            "data": {
                "name": "text_table",
                "path": str(tmp_path / "cls.tsv"),
                "batch_size": 16,
                "text": {"tokenizer": "wordpiece", "max_len": 16, "add_special": True},
            },
            "finetune": {"weights": str(pre.run_dir)},
            "trainer": _trainer(6),
        },
        out=tmp_path / "ft",
    )
    first, last = _first_last(run.history)
    assert last < 0.5 * first and run.metrics["accuracy"] > 0.9, (first, last, run.metrics)
    # the fine-tuned run reads text with the pretrained run's tokenizer
    assert (run.run_dir / "tokenizer.json").read_text() == (pre.run_dir / "tokenizer.json").read_text()
    probs = deepkit.load(run.run_dir).predict_proba(["the red dog runs to the white house"])
    assert probs.shape == (1, 2)
    # a tokenizer with more tokens than the pretrained embedding has rows: one clear error, no run directory
    big = build_tokenizer("word", [" ".join(f"w{i}" for i in range(200))])
    big.save(tmp_path / "big.json")
    with pytest.raises(
        ConfigError, match=rf"tokenizer has {big.vocab_size} tokens but the pretrained weights .* has only \d+ rows"
    ):
        deepkit.train(
            {
                "task": {"name": "text_classification"},
                "model": {**bert, "head": "classification"},
                "data": {
                    "name": "text_table",
                    "path": str(tmp_path / "cls.tsv"),
                    "text": {"tokenizer_file": str(tmp_path / "big.json")},
                },
                "finetune": {"weights": str(pre.run_dir)},
                "trainer": _trainer(1),
            },
            out=tmp_path / "bad",
        )
    assert not (tmp_path / "bad").exists()


def test_span_corruption_and_text_to_text(tmp_path):
    (tmp_path / "corpus.txt").write_text("\n".join(_sentences(300, seed=2)) + "\n")
    sc = deepkit.train(
        {
            "task": {"name": "span_corruption"},
            "model": TINY_T5,
            "data": {
                "name": "text_file",
                "path": str(tmp_path / "corpus.txt"),
                "batch_size": 32,
                "text": {"tokenizer": "word", "num_sentinels": 8, "max_len": 16},
            },
            "trainer": _trainer(4),
        },
        out=tmp_path / "sc",
    )
    first, last = _first_last(sc.history)
    assert last < 0.7 * first, (first, last)
    # text-to-text: "translate" a colour and an animal into a German sentence (JSONL pairs). Content decides where a
    # word goes (T5 has no absolute positions, so a tiny one learns this fast); BLEU is reported after training
    german = ["rot", "gruen", "blau", "schwarz", "weiss", "hund", "katze", "pferd", "vogel", "fisch"]
    german = dict(zip(COLORS + ANIMALS, german, strict=True))
    rng = random.Random(3)
    lines = []
    for _ in range(300):
        color, animal = rng.choice(COLORS), rng.choice(ANIMALS)
        pair = {"source": f"the {color} {animal}", "target": f"der {german[animal]} ist {german[color]}"}
        lines.append(json.dumps(pair))
    (tmp_path / "pairs.jsonl").write_text("\n".join(lines) + "\n")
    run = deepkit.train(
        {
            "task": {"name": "text_to_text"},
            "model": {**TINY_T5, "num_layers": 2},
            "data": {
                "name": "text_pairs",
                "path": str(tmp_path / "pairs.jsonl"),
                "batch_size": 16,
                "val_split": 0.1,
                "test_split": 0.1,
                "text": {"tokenizer": "word"},
            },
            "trainer": _trainer(8, lr=1e-2),
        },
        out=tmp_path / "t2t",
    )
    first, last = _first_last(run.history)
    assert last < 0.5 * first, (first, last)
    assert run.metrics["bleu_greedy"] > 30 > run.metrics["bleu_copy_source"], run.metrics
    out = deepkit.load(run.run_dir).translate(["red dog cat blue"], beam_size=2)
    assert len(out) == 1 and isinstance(out[0], str)


def test_token_classification_trains(tmp_path):
    rng = random.Random(4)
    lines = []
    for _ in range(200):
        for w in [rng.choice(COLORS + ANIMALS + ["the", "a", "runs"]) for _ in range(6)]:
            lines.append(f"{w} {'COLOR' if w in COLORS else 'ANIMAL' if w in ANIMALS else 'O'}")
        lines.append("")
    (tmp_path / "tags.conll").write_text("\n".join(lines))
    run = deepkit.train(
        {
            "task": {"name": "token_classification"},
            "model": {"name": "bert", "head": "token_classification", "max_position_embeddings": 32, **TINY_BERT},
            "data": {
                "name": "token_tags",
                "path": str(tmp_path / "tags.conll"),
                "batch_size": 16,
                "text": {"tokenizer": "wordpiece", "vocab_size": 60},
            },
            "trainer": _trainer(5),
        },
        out=tmp_path / "tok",
    )
    first, last = _first_last(run.history)
    assert last < 0.3 * first and run.metrics["accuracy"] > 0.95, (first, last, run.metrics)


def _qa_rows(n: int, filler_words: tuple[int, int], seed: int = 5) -> list[str]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        color, animal = rng.choice(COLORS), rng.choice(ANIMALS)
        filler = " ".join(rng.choice(["it", "was", "a", "day", "and"]) for _ in range(rng.randint(*filler_words)))
        context = f"{filler} the {animal} is {color} today".strip()
        q = f"what color is the {animal} ?"
        rows.append(
            json.dumps(
                {
                    "id": str(i),
                    "question": q,
                    "context": context,
                    "answers": [{"text": color, "answer_start": context.index(f" is {color}") + 4}],
                }
            )
        )
    return rows


def _train_qa(tmp_path, rows: list[str], text: dict, batch_size: int):
    (tmp_path / "qa.jsonl").write_text("\n".join(rows) + "\n")
    return deepkit.train(
        {
            "task": {"name": "question_answering"},
            "model": {"name": "bert", "head": "question_answering", "max_position_embeddings": 64, **TINY_BERT},
            "data": {
                "name": "squad",
                "path": str(tmp_path / "qa.jsonl"),
                "batch_size": batch_size,
                "test_split": 0.1,
                "text": {"tokenizer": "word", **text},
            },
            "trainer": _trainer(8, lr=5e-3),
        },
        out=tmp_path / "qa",
    )


def test_question_answering_trains(tmp_path):
    run = _train_qa(tmp_path, _qa_rows(300, (0, 4)), {}, batch_size=16)
    first, last = _first_last(run.history)
    assert last < 0.5 * first, (first, last)
    assert run.metrics["exact_match"] > 50, run.metrics


def test_question_answering_reads_long_contexts_in_windows(tmp_path):
    # the answer sits 12-30 words into the context; a window holds 13 context tokens, so most answers are in a later
    # window: training must label them there and evaluation must pick the best span over all windows
    run = _train_qa(tmp_path, _qa_rows(300, (12, 30), seed=6), {"max_len": 24, "doc_stride": 6}, batch_size=32)
    notes = (run.run_dir / "log.txt").read_text()
    assert "context windows for" in notes and "training questions dropped" not in notes
    assert run.metrics["exact_match"] > 50, run.metrics


def test_wrong_head_and_too_small_vocabulary_are_config_errors(tmp_path):
    (tmp_path / "corpus.txt").write_text("\n".join(_sentences(50)) + "\n")
    data = {"name": "text_file", "path": str(tmp_path / "corpus.txt"), "text": {"tokenizer": "word"}}
    base = {"task": {"name": "masked_lm"}, "data": data, "trainer": _trainer(1)}
    with pytest.raises(ConfigError, match="head=mlm"):
        deepkit.train({**base, "model": {"name": "bert", "head": "classification", **TINY_BERT}}, out=tmp_path / "a")
    with pytest.raises(ConfigError, match=r"tokenizer has \d+ tokens but the model's embedding has only 10 rows"):
        deepkit.train(
            {**base, "model": {"name": "bert", "head": "mlm", "vocab_size": 10, **TINY_BERT}}, out=tmp_path / "b"
        )
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_t5_greedy_decode_matches_uncached_argmax():
    torch.manual_seed(0)
    model = deepkit.create_model(
        "t5", **{k: v for k, v in TINY_T5.items() if k != "name"}, vocab_size=40, eos_token_id=3
    ).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.5)
    src = torch.randint(4, 40, (2, 6))
    fast = model.greedy_decode(src, torch.tensor([6, 4]), max_len=8)
    for row, n in enumerate([6, 4]):
        dec = torch.zeros(1, 1, dtype=torch.long)
        ref = []
        for _ in range(8):
            nxt = int(model(src[row : row + 1, :n], dec)[0, -1].argmax())
            if nxt == 3:
                break
            ref.append(nxt)
            dec = torch.cat([dec, torch.tensor([[nxt]])], 1)
        assert fast[row] == ref
    assert model.beam_search(src, torch.tensor([6, 4]), beam_size=1, max_len=8) == fast

"""Tokenizers: round trips, vocabulary caps, special ids, save/load, BPE/WordPiece via `tokenizers`, bad input."""

from __future__ import annotations

import json

import pytest

from deepkit.data.tokenizers import SPECIALS, build_tokenizer, load_tokenizer
from deepkit.errors import CheckpointError, ConfigError, DataError

CORPUS = [
    "A man is riding a horse.",
    "Two dogs play in the snow.",
    "A woman is walking her dog.",
    "The boy and the girl are running!",
    "A man walks his dogs in the park.",
] * 4


@pytest.mark.parametrize("kind", ["char", "word", "bpe", "wordpiece"])
def test_specials_have_fixed_ids_and_save_load_round_trip(kind, tmp_path):
    tok = build_tokenizer(kind, CORPUS, vocab_size=120)
    assert [tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id] == [0, 1, 2, 3]
    assert [tok.id_to_token(i) for i in range(4)] == SPECIALS
    ids = tok.encode("A man is walking.", add_special=True)
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
    assert all(0 <= i < tok.vocab_size for i in ids)
    again = load_tokenizer(tok.save(tmp_path / "tok.json"))
    assert again.kind == kind and again.vocab_size == tok.vocab_size
    assert again.encode("Two girls walk a dog.") == tok.encode("Two girls walk a dog.")
    assert again.fingerprint() == tok.fingerprint()


def test_char_tokenizer_is_lossless_and_maps_unseen_chars_to_unk():
    tok = build_tokenizer("char", ["hello world\n"])
    text = "hello\nworld"
    assert tok.decode(tok.encode(text)) == text
    assert tok.vocab_size == 4 + len(set("hello world\n"))
    assert tok.encode("z") == [tok.unk_id]


def test_word_tokenizer_lowercases_caps_vocabulary_by_frequency():
    tok = build_tokenizer("word", CORPUS, vocab_size=4 + 3)
    assert tok.vocab_size == 7
    # the three most frequent tokens (4 times per copy; "A"/"a" and "The"/"the" merged), ties alphabetical
    assert [tok.id_to_token(i) for i in range(4, 7)] == [".", "a", "the"]
    assert tok.decode(tok.encode("A Man!")).split()[0] == "a"
    assert tok.encode("xylophone") == [tok.unk_id]
    cased = build_tokenizer("word", CORPUS, lowercase=False)
    assert cased.token_to_id("A") is not None and cased.token_to_id("a") is not None
    assert build_tokenizer("word", ["don't stop, it's fine"]).tokens("don't stop") == ["don't", "stop"]


def test_bpe_is_lossless_on_unseen_words_and_wordpiece_marks_continuations():
    bpe = build_tokenizer("bpe", CORPUS, vocab_size=300)
    text = "Zebras gallop quickly."
    assert bpe.decode(bpe.encode(text)) == text  # byte-level: no <unk>, exact round trip
    assert bpe.unk_id not in bpe.encode(text)
    wp = build_tokenizer("wordpiece", CORPUS, vocab_size=200)
    assert any(t.startswith("##") for t in wp.tokens("walkings"))
    assert wp.decode(wp.encode("a man is walking")) == "a man is walking"


def test_empty_corpus_and_bad_settings():
    with pytest.raises(DataError, match="empty text"):
        build_tokenizer("word", ["", "   "])
    with pytest.raises(ConfigError, match="unknown tokenizer 'wrod'.*did you mean 'word'"):
        build_tokenizer("wrod", CORPUS)
    with pytest.raises(ConfigError, match="vocab_size must be > 4"):
        build_tokenizer("word", CORPUS, vocab_size=3)
    tok = build_tokenizer("word", CORPUS)
    with pytest.raises(DataError, match="outside this tokenizer's vocabulary"):
        tok.decode([tok.vocab_size + 5])


def test_load_rejects_missing_corrupt_and_foreign_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_tokenizer(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not a tokenizer JSON"):
        load_tokenizer(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text(json.dumps({"vocab": ["a"]}))
    with pytest.raises(CheckpointError, match="not a deepkit tokenizer"):
        load_tokenizer(tmp_path / "other.json")
    (tmp_path / "wrong.json").write_text(json.dumps({"format": "deepkit-tokenizer/1", "kind": "word", "vocab": ["x"]}))
    with pytest.raises(CheckpointError, match="must start with"):
        load_tokenizer(tmp_path / "wrong.json")

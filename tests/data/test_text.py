"""Text data: reading, padding, truncation, bucketing loader (exact resume), LM windows, word vectors."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch

from deepkit.data.text import (
    LMWindowLoader,
    SequenceLoader,
    embedding_from_vectors,
    pad_batch,
    padding_mask,
    read_text,
    read_word_vectors,
    truncate,
)
from deepkit.data.tokenizers import build_tokenizer
from deepkit.errors import ConfigError, DataError


def test_read_text_rejects_empty_and_non_utf8(tmp_path):
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(DataError, match="empty"):
        read_text(tmp_path / "empty.txt")
    (tmp_path / "latin.txt").write_bytes("Mis\xe9rables".encode("latin-1"))
    with pytest.raises(DataError, match=r"not UTF-8.*0xe9 at offset 3"):
        read_text(tmp_path / "latin.txt")
    with gzip.open(tmp_path / "t.txt.gz", "wt") as f:
        f.write("line one\r\nline two\n")
    assert read_text(tmp_path / "t.txt.gz") == "line one\nline two\n"
    with pytest.raises(DataError, match="not found"):
        read_text(tmp_path / "missing.txt")


def test_pad_batch_and_mask():
    ids, lengths = pad_batch([[5, 6, 7], [8], [9, 10]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0], [9, 10, 0]]
    assert lengths.tolist() == [3, 1, 2]
    assert padding_mask(lengths, 3).tolist() == [[True] * 3, [True, False, False], [True, True, False]]


def test_truncate_policies():
    assert truncate([1, 2, 3], 5) == [1, 2, 3]
    with pytest.warns(UserWarning, match="truncated to max_len=2"):
        assert truncate([1, 2, 3], 2, "warn") == [1, 2]
    with pytest.raises(DataError, match="3 tokens, more than max_len=2"):
        truncate([1, 2, 3], 2, "error")
    assert truncate([1, 2, 3], 2, "silent") == [1, 2]


def _seqs(n=103, seed=0):
    g = np.random.default_rng(seed)
    return [list(g.integers(1, 50, g.integers(1, 30))) for _ in range(n)], torch.arange(n)


def test_sequence_loader_covers_every_sample_once_and_buckets_lengths():
    seqs, y = _seqs()
    loader = SequenceLoader(seqs, y, batch_size=8, shuffle=True, bucket=True, seed=3)
    seen = []
    pad_bucketed = 0
    for batch in loader:
        tokens, lengths, target = batch["tokens"], batch["lengths"], batch["target"]
        assert tokens.shape == (len(target), int(lengths.max()))
        for row, i in enumerate(target.tolist()):
            assert tokens[row, : lengths[row]].tolist() == seqs[i]
            assert (tokens[row, lengths[row] :] == 0).all()
        pad_bucketed += int((tokens == 0).sum())
        seen += target.tolist()
    assert sorted(seen) == list(range(len(seqs)))
    unbucketed = SequenceLoader(seqs, y, batch_size=8, shuffle=True, bucket=False, seed=3)
    pad_random = sum(int((b["tokens"] == 0).sum()) for b in unbucketed)
    assert pad_bucketed < pad_random / 2  # bucketing removes most of the padding


def test_sequence_loader_order_is_a_function_of_seed_and_epoch_and_resumes_exactly():
    seqs, y = _seqs()
    a = SequenceLoader(seqs, y, 8, shuffle=True, seed=1)
    a.set_epoch(2)
    full = [b["target"].tolist() for b in a]
    b = SequenceLoader(seqs, y, 8, shuffle=True, seed=1)
    b.set_epoch(2, start_batch=5)
    assert [x["target"].tolist() for x in b] == full[5:]
    a.set_epoch(3)
    assert [x["target"].tolist() for x in a] != full
    assert len(a) == 13 and a.num_samples == 103
    ev = SequenceLoader(seqs, y, 10)
    assert [x["target"].tolist() for x in ev][0] == list(range(10))  # evaluation keeps the order


def test_sequence_loader_rejects_empty_sequences_and_mismatched_targets():
    with pytest.raises(DataError, match="empty"):
        SequenceLoader([[1], []], torch.tensor([0, 1]), 2)
    with pytest.raises(DataError, match="2 sequences but 3 targets"):
        SequenceLoader([[1], [2]], torch.tensor([0, 1, 1]), 2)


def test_lm_windows_shift_targets_by_one_and_cover_the_stream():
    stream = torch.arange(1000)
    ev = LMWindowLoader(stream, block_size=16, batch_size=10)
    batches = list(ev)
    x = torch.cat([b["tokens"] for b in batches])
    y = torch.cat([b["target"] for b in batches])
    assert torch.equal(y, x + 1)
    assert x[:, 0].tolist() == list(range(0, 1000 - 16, 16))
    train = LMWindowLoader(stream, 16, 10, shuffle=True, seed=0)
    train.set_epoch(0)
    s0 = torch.cat([b["tokens"][:, 0] for b in train])
    train.set_epoch(1)
    s1 = torch.cat([b["tokens"][:, 0] for b in train])
    assert set(s0.tolist()) != set(s1.tolist())  # window boundaries move between epochs
    train.set_epoch(1, start_batch=2)
    assert torch.equal(torch.cat([b["tokens"][:, 0] for b in train]), s1[20:])
    with pytest.raises(DataError, match="at least 2 tokens"):
        LMWindowLoader(torch.tensor([1]), 4, 2)


def test_word_vectors_word2vec_and_glove_formats(tmp_path):
    (tmp_path / "w2v.txt").write_text("3 2\ndog 1 2\ncat 3 4\nrun 5 6\n")
    (tmp_path / "glove.txt").write_text("dog 1 2\ncat 3 4\n")
    words, vecs = read_word_vectors(tmp_path / "w2v.txt")
    assert words == ["dog", "cat", "run"] and vecs.shape == (3, 2)
    words, vecs = read_word_vectors(tmp_path / "glove.txt")
    assert words == ["dog", "cat"] and vecs[1].tolist() == [3, 4]
    tok = build_tokenizer("word", ["the dog and the cat", "a Dog"])
    weight, found = embedding_from_vectors(tok, words, vecs, embed_dim=2)
    assert weight.shape == (tok.vocab_size, 2)
    assert weight[tok.token_to_id("dog")].tolist() == [1, 2]
    assert weight[tok.pad_id].abs().sum() == 0
    assert found == pytest.approx(2 / (tok.vocab_size - 4))
    with pytest.raises(ConfigError, match="embed_dim=8 but the word vectors have 2"):
        embedding_from_vectors(tok, words, vecs, embed_dim=8)
    (tmp_path / "ragged.txt").write_text("dog 1 2\ncat 3\n")
    with pytest.raises(DataError, match="line 2: 1 numbers after the word, expected 2"):
        read_word_vectors(tmp_path / "ragged.txt")

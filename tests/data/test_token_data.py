"""Readers and alignment for Transformer heads: sub-word label alignment, QA answer spans, text pairs."""

from __future__ import annotations

import itertools
import json

import pytest

from deepkit.data.masking import IGNORE
from deepkit.data.token_data import (
    align_labels,
    char_span_to_tokens,
    check_vocab,
    qa_features,
    read_pairs,
    read_squad,
    read_tagged,
)
from deepkit.data.tokenizers import build_tokenizer
from deepkit.errors import ConfigError, DataError

CORPUS = ["the quick brown fox jumps over the lazy dog", "a dog runs in the park", "foxes are quick"] * 20


@pytest.fixture(scope="module")
def wordpiece():
    return build_tokenizer("wordpiece", CORPUS, vocab_size=60, min_freq=1)


def test_first_piece_gets_the_label(wordpiece):
    words = ["The", "quickest", "foxes", "jumped"]
    ids, labels, starts = align_labels(wordpiece, words, [0, 1, 2, 3], max_len=64)
    assert ids[0] == wordpiece.bos_id and ids[-1] == wordpiece.eos_id
    assert labels[0] == IGNORE and labels[-1] == IGNORE and len(ids) == len(labels)
    pieces = [wordpiece.encode(w) for w in words]
    assert any(len(p) > 1 for p in pieces), "the test needs a word split into several pieces"
    for w, (p, s) in enumerate(zip(pieces, starts, strict=True)):
        assert ids[s : s + len(p)] == p
        assert labels[s] == w and all(x == IGNORE for x in labels[s + 1 : s + len(p)])
    assert sum(x != IGNORE for x in labels) == len(words)


def test_alignment_drops_words_beyond_max_len(wordpiece):
    ids, labels, starts = align_labels(wordpiece, ["dog"] * 20, list(range(20)), max_len=8)
    assert len(ids) <= 8 and len(starts) == 6 and labels[-1] == IGNORE


def test_read_conll_and_jsonl(tmp_path):
    conll = tmp_path / "train.txt"
    conll.write_text("-DOCSTART- O\n\nEU B-ORG\nrejects O\nGerman B-MISC\n\nPeter B-PER\nBlackburn I-PER\n")
    assert read_tagged(conll) == [
        (["EU", "rejects", "German"], ["B-ORG", "O", "B-MISC"]),
        (["Peter", "Blackburn"], ["B-PER", "I-PER"]),
    ]
    js = tmp_path / "train.jsonl"
    js.write_text(json.dumps({"tokens": ["a", "b"], "tags": ["X", "Y"]}) + "\n")
    assert read_tagged(js) == [(["a", "b"], ["X", "Y"])]
    js.write_text(json.dumps({"tokens": ["a", "b"], "tags": ["X"]}) + "\n")
    with pytest.raises(DataError, match="record 1"):
        read_tagged(js)


def test_char_span_to_tokens():
    offsets = [(0, 3), (4, 9), (10, 15), (15, 16)]  # "The quick brown."
    assert char_span_to_tokens(offsets, 4, 15) == (1, 2)
    assert char_span_to_tokens(offsets, 5, 7) == (1, 1)  # inside one token
    assert char_span_to_tokens(offsets, 20, 25) is None


SQUAD = {
    "data": [
        {
            "paragraphs": [
                {
                    "context": "The quick brown fox jumps over the lazy dog in the park.",
                    "qas": [
                        {
                            "id": "q1",
                            "question": "What jumps?",
                            "answers": [{"text": "quick brown fox", "answer_start": 4}],
                        },
                        {
                            "id": "q2",
                            "question": "Where is the dog?",
                            "answers": [{"text": "in the park", "answer_start": 44}],
                        },
                    ],
                }
            ]
        }
    ]
}


@pytest.mark.parametrize("kind", ["word", "wordpiece", "bpe", "char"])
def test_qa_span_round_trip(tmp_path, kind):
    path = tmp_path / "train.json"
    path.write_text(json.dumps(SQUAD))
    examples = read_squad(path)
    tok = build_tokenizer(
        kind, [SQUAD["data"][0]["paragraphs"][0]["context"], "What jumps? Where is the dog?"], min_freq=1
    )
    for ex in examples:
        [f] = qa_features(tok, ex, max_len=128)  # a short context: one window
        assert 0 < f["start"] <= f["end"] < len(f["tokens"])
        assert f["token_type_ids"][f["start"]] == 1  # inside the context
        m = f["meta"]
        a, b = m["offsets"][f["start"] - m["first"]][0], m["offsets"][f["end"] - m["first"]][1]
        assert ex["context"][a:b].strip() == ex["answers"][0]["text"]


def test_qa_long_context_is_read_in_overlapping_windows(tmp_path):
    path = tmp_path / "train.json"
    path.write_text(json.dumps(SQUAD))
    tok = build_tokenizer("word", CORPUS + ["what jumps where is park"], min_freq=1)
    ex = read_squad(path)[1]  # "Where is the dog?" -> "in the park", at the end of the context
    context_ids = tok.encode(ex["context"])
    feats = qa_features(tok, ex, max_len=12, doc_stride=2)
    room = 12 - len(tok.encode(ex["question"])) - 3
    assert len(feats) > 1 and all(len(f["tokens"]) <= 12 for f in feats)
    windows = [f["tokens"][f["meta"]["first"] : -1] for f in feats]
    for a, b in itertools.pairwise(windows):
        assert a[-2:] == b[:2]  # consecutive windows share doc_stride tokens
    assert [t for w in windows[:-1] for t in w[: room - 2]] + windows[-1] == context_ids  # the whole context
    with_answer = [f for f in feats if f["end"] > 0]
    assert with_answer and feats[0]["start"] == feats[0]["end"] == 0  # not in the first window: the <bos> label
    for f in with_answer:
        m = f["meta"]
        a, b = m["offsets"][f["start"] - m["first"]][0], m["offsets"][f["end"] - m["first"]][1]
        assert ex["context"][a:b] == "in the park"


def test_qa_doc_stride_must_leave_the_window_moving(tmp_path):
    path = tmp_path / "train.json"
    path.write_text(json.dumps(SQUAD))
    tok = build_tokenizer("word", CORPUS + ["what jumps where is park"], min_freq=1)
    with pytest.raises(ConfigError, match=r"data.text.doc_stride must be >= 0 and less than .* got 128"):
        qa_features(tok, read_squad(path)[1], max_len=12, doc_stride=128)
    assert len(qa_features(tok, read_squad(path)[1], max_len=12)) > 1  # the default: half a window


def test_example_loader_never_splits_a_group_in_evaluation_order():
    from deepkit.data.token_data import ExampleLoader

    groups = [0, 0, 0, 1, 2, 2, 3, 4, 4, 4, 4, 5]
    fields = {"tokens": [[1, 2]] * len(groups), "start": list(range(len(groups)))}
    loader = ExampleLoader(fields, {"tokens": 0}, batch_size=4, groups=groups)
    batches = [b.tolist() for b in loader.batches()]
    assert [i for b in batches for i in b] == list(range(len(groups))) and len(loader) == len(batches)
    for b in batches:
        assert {groups[i] for i in b}.isdisjoint({groups[i] for c in batches if c is not b for i in c})
    assert [len(b) for b in batches] == [4, 3, 4, 1]  # cut before a group that would overfill the batch
    shuffled = ExampleLoader(fields, {"tokens": 0}, batch_size=4, shuffle=True, groups=groups)
    assert sorted(i for b in shuffled.batches() for i in b.tolist()) == list(range(len(groups)))


def test_qa_answer_is_the_best_span_over_all_windows():
    from deepkit.tasks.token_tasks import QuestionAnsweringTask

    meta = [{"id": "a"}, {"id": "a"}, {"id": "b"}]
    best = QuestionAnsweringTask.best_per_question([("x", 1.0), ("y", 3.0), ("z", -2.0)], meta)
    assert {k: v[0] for k, v in best.items()} == {"a": "y", "b": "z"}


def test_qa_wrong_offset_names_the_example(tmp_path):
    bad = json.loads(json.dumps(SQUAD))
    bad["data"][0]["paragraphs"][0]["qas"][1]["answers"][0]["answer_start"] = 40
    path = tmp_path / "train.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(DataError, match="example q2"):
        read_squad(path)


def test_qa_jsonl_hf_layout(tmp_path):
    path = tmp_path / "val.jsonl"
    row = {"id": "x", "question": "q?", "context": "abc def", "answers": {"text": ["def"], "answer_start": [4]}}
    path.write_text(json.dumps(row) + "\n")
    assert read_squad(path)[0]["answers"] == [{"text": "def", "answer_start": 4}]


def test_read_pairs_tsv_and_jsonl(tmp_path):
    tsv = tmp_path / "train.tsv"
    tsv.write_text("target\tsource\nhello\thallo\n")
    assert read_pairs(tsv) == [("hallo", "hello")]
    js = tmp_path / "train.jsonl"
    js.write_text(json.dumps({"source": "a", "target": "b"}) + "\n" + json.dumps({"source": "a"}) + "\n")
    with pytest.raises(DataError, match="record 2"):
        read_pairs(js)


def test_tokenizer_larger_than_embedding_is_a_config_error(wordpiece):
    with pytest.raises(ConfigError, match=f"{wordpiece.vocab_size} tokens .* only 20 rows"):
        check_vocab(wordpiece, 20)
    check_vocab(wordpiece, wordpiece.vocab_size + 10)  # spare rows are fine

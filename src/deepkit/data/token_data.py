"""Data for Transformer objectives and heads: MLM / span-corruption corpora, token tagging (CoNLL or JSONL),
extractive QA (SQuAD JSON or JSONL) and text-to-text pairs (TSV or JSONL; Multi30k German→English).

Every builder returns a :class:`~deepkit.data.text.TextData`; the tokenizer is trained on the training
part (or reused: evaluation, fine-tuning) and saved in the run.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepkit.data.loader import BucketedLoader
from deepkit.data.masking import IGNORE, MaskedLMLoader, PairBatcher, random_spans_noise_mask, span_corruption
from deepkit.data.sources import data_root, dataset_path
from deepkit.data.text import TextData, read_lines, read_text, read_text_table
from deepkit.data.tokenizers import MASK, SPECIALS, Tokenizer, build_tokenizer, sentinel
from deepkit.errors import ConfigError, DataError

PRETRAINING = {
    "sst2_multi30k": "SST-2 training sentences (no labels) + Multi30k English training captions; val: Multi30k val",
    "multi30k": "Multi30k English captions (train / val)",
    "text_file": "a UTF-8 text file (data.path), one sentence per line; the last val_split lines are held out",
}
TOKEN_TAGGING = {
    "token_tags": "CoNLL-style 'word ... TAG' lines (blank line between sentences) or JSONL {tokens, tags}; "
    "data.path: a file or a folder with train/val/test files",
}
QUESTION_ANSWERING = {
    "squad": "SQuAD JSON ({data: [{paragraphs: [{context, qas}]}]}) or JSONL {id, question, context, answers}; "
    "data.path: a file or a folder with train/val/test files",
}
TEXT_PAIRS = {
    "multi30k": "Multi30k German->English (train / val / test_2016_flickr), from data.path or DATA_ROOT/multi30k",
    "text_pairs": "TSV (source<TAB>target, header row) or JSONL {source, target}; data.path: a file or a folder "
    "with train/val/test files",
}


# --- shared --------------------------------------------------------------------------------------------------------
def _split_files(folder: Path) -> dict[str, Path]:
    """train/val/test files of a folder (``dev`` and ``validation`` count as val)."""
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        stem = p.name.split(".")[0].lower()
        split = {"dev": "val", "valid": "val", "validation": "val"}.get(stem, stem)
        if split in ("train", "val", "test") and split not in out and p.is_file():
            out[split] = p
    if "train" not in out:
        raise DataError(f"{folder} has no train file; expected train.* (and val.* / test.*)")
    return out


def _hold_out(items: list, cfg) -> dict[str, list]:
    """Random val / test parts of one file's items (fixed by data.split_seed)."""
    idx = np.random.default_rng(cfg.split_seed).permutation(len(items))
    n_test, n_val = int(len(items) * cfg.test_split), int(len(items) * cfg.val_split)
    parts = {"test": idx[:n_test], "val": idx[n_test : n_test + n_val], "train": idx[n_test + n_val :]}
    return {k: [items[i] for i in sorted(v)] for k, v in parts.items()}


def _read_parts(cfg, reader) -> dict[str, list]:
    if not cfg.path:
        raise ConfigError(f"data.name={cfg.name} needs data.path (a file or a folder with train/val/test files)")
    path = dataset_path(cfg, "")
    parts = {k: reader(p) for k, p in _split_files(path).items()} if path.is_dir() else _hold_out(reader(path), cfg)
    if cfg.limit:
        parts["train"] = parts["train"][: cfg.limit]
    if not parts.get("train"):
        raise DataError(f"dataset '{cfg.name}' at {path}: the training part is empty")
    return {k: v for k, v in parts.items() if v}


def _jsonl(path: Path) -> list[dict]:
    rows = []
    for n, line in enumerate(read_lines(path), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path} line {n} is not JSON: {e.msg}") from None
        if not isinstance(row, dict):
            raise DataError(f"{path} line {n}: expected a JSON object, got {type(row).__name__}")
        rows.append(row)
    return rows


def check_vocab(tokenizer: Tokenizer, vocab_size: int | None, where: str = "model") -> None:
    """A tokenizer whose ids reach past the model's embedding table is a configuration error."""
    if vocab_size is not None and tokenizer.vocab_size > vocab_size:
        raise ConfigError(
            f"the tokenizer has {tokenizer.vocab_size} tokens but the {where}'s embedding has only {vocab_size} "
            f"rows (vocab_size); use the tokenizer the model was trained with or a model with vocab_size >= "
            f"{tokenizer.vocab_size}"
        )


# --- pretraining corpora (masked LM, span corruption) --------------------------------------------------------------
def pretraining_sentences(cfg) -> dict[str, list[str]]:
    if cfg.name in ("multi30k", "sst2_multi30k"):
        m30k = dataset_path(cfg, "multi30k") if cfg.name == "multi30k" else _data_dir("multi30k")
        parts = {"train": read_lines(m30k / "train.en.gz"), "val": read_lines(m30k / "val.en.gz")}
        if cfg.name == "sst2_multi30k":
            sst = _data_dir("sst2")
            parts["train"] = read_text_table(sst / "train.tsv", "sentence", "label")[0] + parts["train"]
    else:
        if not cfg.path:
            raise ConfigError("data.name=text_file needs data.path (a UTF-8 text file, one sentence per line)")
        lines = [ln for ln in read_text(dataset_path(cfg, "")).splitlines() if ln.strip()]
        n_val = max(1, int(len(lines) * cfg.val_split))
        parts = {"train": lines[:-n_val], "val": lines[-n_val:]}
    parts = {k: [s for s in v if s.strip()] for k, v in parts.items()}
    if cfg.limit:
        parts["train"] = parts["train"][: cfg.limit]
    return parts


def _data_dir(name: str) -> Path:
    path = data_root() / name
    if not path.is_dir():
        raise DataError(f"dataset folder {path} not found; set DEEPKIT_DATA (expected {name}/ under it)")
    return path


def _encode_sentences(tok: Tokenizer, texts: list[str], max_len: int) -> list[list[int]]:
    """``<bos> ids <eos>``, cut to ``max_len`` (the ``<eos>`` kept)."""
    out = []
    for ids in tok.encode_batch(texts):
        ids = ids[: max_len - 2]
        if ids:
            out.append([tok.bos_id, *ids, tok.eos_id])
    return out


def masked_lm_data(cfg, tokenizer: Tokenizer | None = None) -> TextData:

    tc = cfg.text
    parts = pretraining_sentences(cfg)
    if tokenizer is None:
        tokenizer = build_tokenizer(
            tc.tokenizer,
            parts["train"],
            vocab_size=tc.vocab_size,
            min_freq=tc.min_freq,
            lowercase=tc.lowercase,
            specials=[MASK],
        )
    mask_id = tokenizer.token_to_id(MASK)
    if mask_id is None:
        raise ConfigError("masked LM needs a tokenizer with a <mask> token (one built for the masked_lm task)")
    num_special = len(SPECIALS) + 1
    encoded = {k: _encode_sentences(tokenizer, v, tc.max_len) for k, v in parts.items()}

    def make(split: str, shuffle: bool, seed: int) -> MaskedLMLoader:
        bs = cfg.batch_size if split == "train" else cfg.eval_batch_size
        return MaskedLMLoader(
            encoded[split],
            bs,
            tokenizer.vocab_size,
            mask_id,
            num_special,
            tc.mask_prob,
            shuffle=shuffle,
            dynamic=split == "train",
            seed=seed if split == "train" else 12345,
            pad_id=tokenizer.pad_id,
        )

    n_tokens = sum(len(s) for s in encoded["train"])
    return TextData(
        make,
        {k: len(v) for k, v in encoded.items() if v},
        cfg.batch_size,
        cfg.eval_batch_size,
        notes=[f"masked LM: {len(encoded['train'])} training sentences, {n_tokens} tokens"],
        tokenizer=tokenizer,
        vocab_at_least=True,
        model_sizes={"vocab_size": tokenizer.vocab_size},
    )


def sentinel_ids(tokenizer: Tokenizer, n: int) -> list[int]:
    ids = [tokenizer.token_to_id(sentinel(i)) for i in range(n)]
    if any(i is None for i in ids):
        raise ConfigError(f"span corruption needs a tokenizer with {n} sentinel tokens <extra_id_0>...")
    return ids


def span_corruption_data(cfg, tokenizer: Tokenizer | None = None) -> TextData:

    tc = cfg.text
    parts = pretraining_sentences(cfg)
    if tokenizer is None:
        specials = [sentinel(i) for i in range(tc.num_sentinels)]
        tokenizer = build_tokenizer(
            tc.tokenizer,
            parts["train"],
            vocab_size=tc.vocab_size,
            min_freq=tc.min_freq,
            lowercase=tc.lowercase,
            specials=specials,
        )
    sentinels = sentinel_ids(tokenizer, tc.num_sentinels)
    encoded = {k: [s[: tc.max_len - 1] for s in tokenizer.encode_batch(v) if s] for k, v in parts.items()}

    def make(split: str, shuffle: bool, seed: int) -> PairBatcher:
        seqs = encoded[split]

        def pairs(idx: list[int], rng: np.random.Generator):
            out = []
            for i in idx:
                mask = random_spans_noise_mask(len(seqs[i]), tc.noise_density, tc.mean_span_length, rng)
                src, tgt = span_corruption(seqs[i], mask, sentinels)
                out.append(([*src, tokenizer.eos_id], tgt))
            return out

        return _t5_batcher(cfg, tokenizer, split, [len(s) for s in seqs], pairs, shuffle, seed)

    return TextData(
        make,
        {k: len(v) for k, v in encoded.items() if v},
        cfg.batch_size,
        cfg.eval_batch_size,
        tokenizer=tokenizer,
        vocab_at_least=True,
        model_sizes=_t5_overrides(tokenizer),
    )


def _t5_batcher(cfg, tok: Tokenizer, split: str, lengths: list[int], make_pairs, shuffle: bool, seed: int):
    """T5 batches of one split: new noise every epoch in training (``dynamic``), the same noise in evaluation."""
    return PairBatcher(
        torch.tensor(lengths),
        make_pairs,
        cfg.batch_size if split == "train" else cfg.eval_batch_size,
        shuffle=shuffle,
        dynamic=split == "train",
        seed=seed,
        pad_id=tok.pad_id,
        eos_id=tok.eos_id,
        decoder_start_id=tok.pad_id,  # T5 starts the decoder with the padding id
    )


def _t5_overrides(tok: Tokenizer) -> dict[str, int]:
    # T5 starts the decoder with the padding id and ends targets with <eos>
    return {
        "vocab_size": tok.vocab_size,
        "pad_token_id": tok.pad_id,
        "eos_token_id": tok.eos_id,
        "decoder_start_token_id": tok.pad_id,
    }


# --- padded dict batches -------------------------------------------------------------------------------------------
class ExampleLoader(BucketedLoader):
    """Batches of examples whose list-valued fields are right-padded (``pads``: field -> padding value) and whose
    scalar fields are stacked; ``meta`` (Python objects, e.g. QA contexts) rides along untouched.

    The order is a pure function of (seed, epoch); training batches hold similar lengths (bucketing).
    """

    def __init__(
        self,
        fields: dict[str, list],
        pads: dict[str, int],
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        meta: list | None = None,
        groups: list[int] | None = None,
    ):
        self.fields, self.pads, self.meta, self.groups = fields, pads, meta, groups
        super().__init__(torch.tensor([len(v) for v in fields["tokens"]]), batch_size, shuffle, bucket=True, seed=seed)

    def __len__(self) -> int:
        return len(self.batches()) if self.groups is not None and not self.shuffle else super().__len__()

    def batches(self) -> list[torch.Tensor]:
        """Training: bucketed random batches. In order (evaluation) with ``groups`` (a non-decreasing group id per
        example, e.g. the question of each QA window): consecutive batches that never split a group."""
        if self.shuffle or self.groups is None:
            return super().batches()
        runs, begin = [], 0  # [begin, end) of each group
        for i in range(1, len(self.groups) + 1):
            if i == len(self.groups) or self.groups[i] != self.groups[begin]:
                runs.append((begin, i))
                begin = i
        out, current = [], []
        for a, b in runs:  # a group that alone exceeds batch_size gets a batch of its own
            if current and len(current) + b - a > self.batch_size:
                out.append(torch.tensor(current))
                current = []
            current += range(a, b)
        return [*out, torch.tensor(current)] if current else out

    def collate(self, idx: list[int]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        lengths = self.lengths[idx]
        t = int(lengths.max())
        for name, values in self.fields.items():
            if name in self.pads:
                x = torch.full((len(idx), t), self.pads[name], dtype=torch.long)
                for r, i in enumerate(idx):
                    x[r, : len(values[i])] = torch.as_tensor(values[i], dtype=torch.long)
            else:
                x = torch.as_tensor([values[i] for i in idx], dtype=torch.long)
            out[name] = x.to(self.device)
        out["lengths"] = lengths
        if self.meta is not None:
            out["meta"] = [self.meta[i] for i in idx]
        return out

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for idx in self.batches()[self.start_batch :]:
            yield self.collate(idx.tolist())
        self.start_batch = 0


# --- token classification ------------------------------------------------------------------------------------------
def read_tagged(path: Path) -> list[tuple[list[str], list[str]]]:
    """Sentences of (words, tags) from a CoNLL-style file (first column word, last column tag) or JSONL."""
    if path.suffix in (".jsonl", ".json"):
        out = []
        for n, row in enumerate(_jsonl(path), 1):
            words, tags = row.get("tokens"), row.get("tags", row.get("ner_tags"))
            if not isinstance(words, list) or not isinstance(tags, list) or len(words) != len(tags):
                raise DataError(f"{path} record {n}: expected equally long lists 'tokens' and 'tags'")
            out.append(([str(w) for w in words], [str(t) for t in tags]))
        return out
    out, words, tags = [], [], []
    for n, line in enumerate(read_lines(path), 1):
        cols = line.split()
        if not cols or cols[0] == "-DOCSTART-":
            if words:
                out.append((words, tags))
            words, tags = [], []
            continue
        if len(cols) < 2:
            raise DataError(f"{path} line {n}: expected 'word TAG' (two or more columns), got {line!r}")
        words.append(cols[0])
        tags.append(cols[-1])
    if words:
        out.append((words, tags))
    return out


def align_labels(
    tokenizer: Tokenizer, words: Sequence[str], labels: Sequence[int], max_len: int
) -> tuple[list[int], list[int], list[int]]:
    """Sub-word ids with ``<bos>``/``<eos>`` and per-piece labels: a word's first piece carries its label, the
    other pieces and the specials -100. Returns ``(ids, piece_labels, word_starts)`` (index of each word's
    first piece; words cut off by ``max_len`` are left out)."""
    ids, out, starts = [tokenizer.bos_id], [IGNORE], []
    for word, label in zip(words, labels, strict=True):
        pieces = tokenizer.encode(word) or [tokenizer.unk_id]
        if len(ids) + len(pieces) > max_len - 1:
            break
        starts.append(len(ids))
        ids += pieces
        out += [label] + [IGNORE] * (len(pieces) - 1)
    return [*ids, tokenizer.eos_id], [*out, IGNORE], starts


def token_classification_data(cfg, tokenizer: Tokenizer | None = None) -> TextData:

    tc = cfg.text
    parts = _read_parts(cfg, read_tagged)
    tags = sorted({t for _, ts in parts["train"] for t in ts})
    tag_id = {t: i for i, t in enumerate(tags)}
    unknown = sorted({t for k, v in parts.items() for _, ts in v for t in ts} - set(tags))
    if unknown:
        raise DataError(f"tags {unknown[:5]} appear outside the training part; known tags: {tags}")
    if tokenizer is None:
        texts = [" ".join(w) for w, _ in parts["train"]]
        tokenizer = build_tokenizer(
            tc.tokenizer, texts, vocab_size=tc.vocab_size, min_freq=tc.min_freq, lowercase=tc.lowercase
        )
    loaders_data = {}
    for split, sents in parts.items():
        ids, labels = [], []
        for words, ts in sents:
            i, lab, _ = align_labels(tokenizer, words, [tag_id[t] for t in ts], tc.max_len)
            ids.append(i)
            labels.append(lab)
        loaders_data[split] = (ids, labels)

    def make(split: str, shuffle: bool, seed: int) -> ExampleLoader:
        ids, labels = loaders_data[split]
        bs = cfg.batch_size if split == "train" else cfg.eval_batch_size
        return ExampleLoader(
            {"tokens": ids, "target": labels}, {"tokens": tokenizer.pad_id, "target": IGNORE}, bs, shuffle, seed
        )

    return TextData(
        make,
        {k: len(v[0]) for k, v in loaders_data.items()},
        cfg.batch_size,
        cfg.eval_batch_size,
        tokenizer=tokenizer,
        vocab_at_least=True,
        class_names=tags,
        model_sizes={"vocab_size": tokenizer.vocab_size, "num_classes": len(tags)},
    )


# --- extractive question answering ---------------------------------------------------------------------------------
def read_squad(path: Path) -> list[dict[str, Any]]:
    """QA examples ``{id, question, context, answers: [{text, answer_start}]}`` from SQuAD JSON or JSONL
    (answers as a list of objects or Hugging Face's ``{"text": [...], "answer_start": [...]}``)."""
    if path.suffix == ".jsonl":
        rows = _jsonl(path)
    else:
        try:
            doc = json.loads(read_text(path))
        except json.JSONDecodeError as e:
            raise DataError(f"{path} is not JSON: {e.msg}") from None
        rows = [
            {**qa, "context": para["context"]}
            for article in doc.get("data", [])
            for para in article.get("paragraphs", [])
            for qa in para.get("qas", [])
        ]
    out = []
    for n, row in enumerate(rows, 1):
        try:
            answers = row["answers"]
            if isinstance(answers, dict):
                answers = [
                    {"text": t, "answer_start": s}
                    for t, s in zip(answers["text"], answers["answer_start"], strict=True)
                ]
            ex = {
                "id": str(row.get("id", n)),
                "question": str(row["question"]),
                "context": str(row["context"]),
                "answers": [{"text": str(a["text"]), "answer_start": int(a["answer_start"])} for a in answers],
            }
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(
                f"{path} example {n}: expected id, question, context and answers ({type(e).__name__}: {e})"
            ) from None
        for a in ex["answers"]:
            s = a["answer_start"]
            if ex["context"][s : s + len(a["text"])] != a["text"]:
                raise DataError(
                    f"{path} example {ex['id']}: answer {a['text']!r} is not at character {s} of its context "
                    f"(found {ex['context'][s : s + len(a['text'])]!r})"
                )
        out.append(ex)
    return out


def char_span_to_tokens(offsets: Sequence[tuple[int, int]], start: int, end: int) -> tuple[int, int] | None:
    """First and last token (indices into ``offsets``) covering characters ``[start, end)``; None if none does."""
    first = next((i for i, (a, b) in enumerate(offsets) if b > start), None)
    last = next((i for i in range(len(offsets) - 1, -1, -1) if offsets[i][0] < end), None)
    if first is None or last is None or first > last:
        return None
    return first, last


def qa_features(
    tokenizer: Tokenizer, ex: dict[str, Any], max_len: int, doc_stride: int | None = None
) -> list[dict[str, Any]]:
    """One feature per context window: ``<bos> question <eos> context window <eos>`` ids, token types (0 question /
    1 context), the gold token span (0, 0 = the answer is not whole inside this window: the ``<bos>`` position, as
    in BERT's SQuAD recipe) and the window's character offsets for decoding answers.

    A context that does not fit next to the question is cut into windows that overlap by ``doc_stride`` tokens
    (None: half a window, at most 128).
    """
    q = tokenizer.encode(ex["question"])[: max_len // 2]
    c_ids, c_off = tokenizer.encode_with_offsets(ex["context"])
    room = max_len - len(q) - 3  # context tokens per window
    if room < 1:
        raise ConfigError(f"data.text.max_len={max_len} leaves no room for the context after the question")
    if doc_stride is None:
        doc_stride = min(128, room // 2)
    if not 0 <= doc_stride < room:
        raise ConfigError(
            f"data.text.doc_stride must be >= 0 and less than the context tokens per window ({room} at "
            f"max_len={max_len}), got {doc_stride}"
        )
    gold = None
    if ex["answers"] and c_off:
        a = ex["answers"][0]
        a_end = a["answer_start"] + len(a["text"])
        if a_end <= c_off[-1][1]:  # not beyond the tokenized context
            gold = char_span_to_tokens(c_off, a["answer_start"], a_end)
    first = len(q) + 2  # position of the first context token
    starts = [0]
    while starts[-1] + room < len(c_ids):
        starts.append(starts[-1] + room - doc_stride)
    feats = []
    for s in starts:
        w_ids, w_off = c_ids[s : s + room], c_off[s : s + room]
        ids = [tokenizer.bos_id, *q, tokenizer.eos_id, *w_ids, tokenizer.eos_id]
        types = [0] * first + [1] * (len(w_ids) + 1)
        start = end = 0
        if gold is not None and s <= gold[0] and gold[1] < s + len(w_ids):
            start, end = gold[0] - s + first, gold[1] - s + first
        meta = {"id": ex["id"], "context": ex["context"], "answers": ex["answers"], "offsets": w_off, "first": first}
        feats.append({"tokens": ids, "token_type_ids": types, "start": start, "end": end, "meta": meta})
    return feats


def qa_data(cfg, tokenizer: Tokenizer | None = None) -> TextData:

    tc = cfg.text
    parts = _read_parts(cfg, read_squad)
    if tokenizer is None:
        texts = [t for ex in parts["train"] for t in (ex["question"], ex["context"])]
        tokenizer = build_tokenizer(
            tc.tokenizer, texts, vocab_size=tc.vocab_size, min_freq=tc.min_freq, lowercase=tc.lowercase
        )
    feats, groups, notes = {}, {}, []
    for split, exs in parts.items():
        per_ex = [qa_features(tokenizer, ex, tc.max_len, tc.doc_stride) for ex in exs]
        windows = sum(len(fs) for fs in per_ex)
        if windows > len(exs):
            notes.append(f"{split}: {windows} context windows for {len(exs)} questions (doc_stride={tc.doc_stride})")
        if split == "train":  # a question whose answer is whole in no window cannot be learned
            kept = [fs for fs in per_ex if any(f["end"] > 0 for f in fs)]
            if len(kept) < len(per_ex):
                notes.append(
                    f"{len(per_ex) - len(kept)} training questions dropped: the answer is beyond the tokenized "
                    f"context or longer than doc_stride={tc.doc_stride} + 1 tokens"
                )
            per_ex = kept
        feats[split] = [f for fs in per_ex for f in fs]
        groups[split] = [n for n, fs in enumerate(per_ex) for _ in fs]  # the question of each window
    if not feats["train"]:
        raise DataError("no training question has its answer inside its context; check the answers' offsets")

    def make(split: str, shuffle: bool, seed: int) -> ExampleLoader:
        fs = feats[split]
        fields = {k: [f[k] for f in fs] for k in ("tokens", "token_type_ids", "start", "end")}
        bs = cfg.batch_size if split == "train" else cfg.eval_batch_size
        pads = {"tokens": tokenizer.pad_id, "token_type_ids": 0}
        # evaluation batches keep all windows of a question together, so its best span is chosen over all of them
        return ExampleLoader(fields, pads, bs, shuffle, seed, meta=[f["meta"] for f in fs], groups=groups[split])

    return TextData(
        make,
        {k: len(v) for k, v in feats.items() if v},
        cfg.batch_size,
        cfg.eval_batch_size,
        notes=notes,
        tokenizer=tokenizer,
        vocab_at_least=True,
        model_sizes={"vocab_size": tokenizer.vocab_size},
    )


# --- text-to-text pairs --------------------------------------------------------------------------------------------
def read_pairs(path: Path) -> list[tuple[str, str]]:
    """(source, target) pairs from JSONL ``{source, target}`` or a TSV with a header (``source``/``target`` columns,
    else the first two)."""
    if path.suffix in (".jsonl", ".json"):
        out = []
        for n, row in enumerate(_jsonl(path), 1):
            if not isinstance(row.get("source"), str) or not isinstance(row.get("target"), str):
                raise DataError(f"{path} record {n}: expected string fields 'source' and 'target'")
            out.append((row["source"], row["target"]))
        return out
    rows = [r for r in csv.reader(io.StringIO(read_text(path)), delimiter="\t", quoting=csv.QUOTE_NONE) if r]
    if len(rows) < 2:
        raise DataError(f"{path} has no data rows; expected a header and one source<TAB>target pair per line")
    header = [h.strip().lower() for h in rows[0]]
    si, ti = (header.index("source"), header.index("target")) if {"source", "target"} <= set(header) else (0, 1)
    out = []
    for n, r in enumerate(rows[1:], 2):
        if len(r) <= max(si, ti):
            raise DataError(f"{path} line {n}: {len(r)} fields, expected source<TAB>target")
        out.append((r[si].strip(), r[ti].strip()))
    return out


def text_pair_parts(cfg) -> dict[str, list[tuple[str, str]]]:
    if cfg.name != "multi30k":
        return _read_parts(cfg, read_pairs)
    folder = dataset_path(cfg, "multi30k")
    parts = {}
    for split, stem in {"train": "train", "val": "val", "test": "test_2016_flickr"}.items():
        src, tgt = read_lines(folder / f"{stem}.de.gz"), read_lines(folder / f"{stem}.en.gz")
        if len(src) != len(tgt):
            raise DataError(
                f"{stem}.de.gz has {len(src)} lines but {stem}.en.gz has {len(tgt)}; expected aligned files"
            )
        parts[split] = [(s, t) for s, t in zip(src, tgt, strict=True) if s.strip() and t.strip()]
    if cfg.limit:
        parts["train"] = parts["train"][: cfg.limit]
    return parts


def text_to_text_data(cfg, tokenizer: Tokenizer | None = None) -> TextData:
    """One tokenizer for both sides (T5 shares its embedding between encoder, decoder and output layer)."""

    tc = cfg.text
    parts = text_pair_parts(cfg)
    if tokenizer is None:
        texts = [t for pair in parts["train"] for t in pair] + ([tc.source_prefix] if tc.source_prefix else [])
        tokenizer = build_tokenizer(
            tc.tokenizer, texts, vocab_size=tc.vocab_size, min_freq=tc.min_freq, lowercase=tc.lowercase
        )
    prefix = tokenizer.encode(tc.source_prefix) if tc.source_prefix else []
    encoded = {}
    for split, pairs in parts.items():
        src = [
            [*prefix, *s[: tc.max_len - 1 - len(prefix)], tokenizer.eos_id]
            for s in tokenizer.encode_batch([p[0] for p in pairs])
        ]
        tgt = [t[: tc.max_len - 1] for t in tokenizer.encode_batch([p[1] for p in pairs])]
        encoded[split] = (src, tgt)

    def make(split: str, shuffle: bool, seed: int) -> PairBatcher:
        src, tgt = encoded[split]

        def pairs(idx: list[int], rng: np.random.Generator):  # fixed pairs: the rng is not used
            return [(src[i], tgt[i]) for i in idx]

        return _t5_batcher(cfg, tokenizer, split, [len(s) for s in src], pairs, shuffle, seed)

    return TextData(
        make,
        {k: len(v) for k, v in parts.items() if v},
        cfg.batch_size,
        cfg.eval_batch_size,
        tokenizer=tokenizer,
        vocab_at_least=True,
        model_sizes=_t5_overrides(tokenizer),
        parts=parts,
        encoded=encoded,
    )

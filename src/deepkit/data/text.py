"""Text data: reading corpora safely, padding and masks, length bucketing, LM windows, pretrained word vectors.

Loaders follow the Trainer's protocol (``__iter__``, ``__len__``, ``set_epoch(epoch, start_batch)``, ``to(device)``,
``num_samples``); the batch order is a pure function of (seed, epoch), so a resumed run sees the same batches.
"""

from __future__ import annotations

import csv
import gzip
import io
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from deepkit.data.loader import BucketedLoader
from deepkit.data.module import LoaderData
from deepkit.errors import ConfigError, DataError


@dataclass
class TextConfig:
    """The ``data.text`` recipe section: how text becomes token ids."""

    tokenizer: Literal["char", "word", "bpe", "wordpiece"] = "word"
    vocab_size: int | None = 20000  # cap, special tokens included (None: every token seen in training)
    min_freq: int = 1  # word/subword: drop rarer tokens (they become <unk>)
    lowercase: bool = True
    max_len: int = 256  # tokens per sequence (classification); longer ones are handled by `truncation`
    truncation: Literal["warn", "error", "silent"] = "warn"
    block_size: int = 128  # language modelling: tokens per training window
    bucket: bool = True  # batch sequences of similar length together (less padding, faster)
    vectors: str | None = None  # pretrained word vectors (word2vec/GloVe text format) to initialize embeddings
    window: int = 5  # word2vec: max distance between centre and context words
    negatives: int = 5  # word2vec: negative samples per positive pair
    subsample: float = 1e-3  # word2vec: frequent-word subsampling threshold t (0 = off)
    add_special: bool = False  # classification: wrap each text as <bos> ... <eos> (BERT's [CLS] ... [SEP])
    tokenizer_file: str | None = None  # reuse a saved tokenizer (tokenizer.json or a run directory holding one)
    mask_prob: float = 0.15  # masked LM: fraction of non-special tokens chosen for prediction
    noise_density: float = 0.15  # span corruption: fraction of tokens corrupted
    mean_span_length: float = 3.0  # span corruption: mean length of a corrupted span
    num_sentinels: int = 32  # span corruption: sentinel tokens <extra_id_0>... in the vocabulary
    source_prefix: str = ""  # text-to-text: T5 task prefix put before every source, e.g. "translate German to English:"
    max_answer_len: int = 30  # extractive QA: longest answer span (tokens) when decoding
    # extractive QA: a context longer than max_len is read in overlapping windows; doc_stride = tokens shared by
    # consecutive windows (Hugging Face's doc_stride), so every answer of up to doc_stride + 1 tokens is whole in one.
    # None: half a window, at most 128
    doc_stride: int | None = None


@dataclass
class TextDataConfig:
    """The ``data`` section of the text families (text, sequence-to-sequence, word vectors)."""

    name: str = "text_file"  # sst2, text_table, tinyshakespeare, text_file, multi30k, ...
    path: str | None = None  # file or folder; default DATA_ROOT/<name> for public datasets
    target: str | None = None  # text tables: the label column (default: label)
    features: list[str] | None = None  # text tables: [text column] (default: sentence, text or the other column)
    val_split: float = 0.1  # fraction held out for validation (of the training part, or the end of a corpus)
    test_split: float = 0.2  # fraction held out for test when the dataset has no official test split
    split_seed: int = 0  # fixes the held-out sets independently of the training seed
    batch_size: int = 64
    eval_batch_size: int = 1024
    limit: int | None = None  # use only the first N training texts / characters (quick experiments)
    text: TextConfig = field(default_factory=TextConfig)


@dataclass
class TextData(LoaderData):
    """Token data of one split layout, with what the model and the run need to know about it."""

    tokenizer: Any = None  # the vocabulary (deepkit.data.tokenizers.Tokenizer), saved in the run
    src_tokenizer: Any = None  # translation: the source language's vocabulary
    class_names: list[str] | None = None  # classes (text classification) or tags (token classification)
    model_sizes: dict[str, int] = field(default_factory=dict)  # model config fields that follow from the data
    parts: dict[str, Any] = field(default_factory=dict)  # raw text per split (baselines, samples, BLEU references)
    encoded: dict[str, Any] = field(default_factory=dict)  # token ids per split (decoding for BLEU)
    counts: Literal["lengths", "targets"] | None = None  # what a tokens/s figure counts (None: not reported)
    vocab_at_least: bool = False  # the model's embedding may have more rows than the vocabulary (a pretrained one)

    @property
    def counts_tokens(self) -> bool:
        return self.counts is not None

    def count_tokens(self, batch: Any) -> Any:
        if self.counts == "lengths":  # SequenceLoader: padded tokens, true lengths
            return batch["lengths"].sum()
        if self.counts == "targets":  # LM windows / translation targets (-100 = padding)
            return (batch["target"] >= 0).sum()
        return None


# --- reading -------------------------------------------------------------------------------------------------------
def read_text(path: str | Path) -> str:
    """A UTF-8 text file (``.gz`` allowed) as one string; empty or non-UTF-8 files are a ``DataError``."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"text file not found: {path}")
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(
            f"{path} is not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); "
            "re-save it as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)"
        ) from None
    if not text.strip():
        raise DataError(f"{path} is empty; expected text")
    return text.replace("\r\n", "\n")


def read_lines(path: str | Path) -> list[str]:
    """Lines of a UTF-8 text file, without line endings (``.gz`` allowed)."""
    return read_text(path).rstrip("\n").split("\n")


def read_text_table(path: Path, text_column: str | None, label_column: str | None) -> tuple[list[str], list[str]]:
    """Texts and label strings from a TSV (``.tsv``) or CSV file with a header row."""
    try:
        content = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text (byte offset {e.start})") from None
    delimiter = "\t" if path.suffix in (".tsv", ".tab") else ","
    rows = list(
        csv.reader(io.StringIO(content), delimiter=delimiter, quoting=csv.QUOTE_NONE if delimiter == "\t" else 0)
    )
    rows = [r for r in rows if r]
    if len(rows) < 2:
        raise DataError(f"{path} has no data rows; expected a header and one text per line")
    header = [h.strip() for h in rows[0]]
    label_column = label_column or "label"
    if label_column not in header:
        raise DataError(f"{path} has no label column '{label_column}'; columns: {', '.join(header)} (set data.target)")
    if text_column is None:
        text_column = next((h for h in ("sentence", "text") if h in header), None) or next(
            h for h in header if h != label_column
        )
    if text_column not in header:
        raise DataError(f"{path} has no text column '{text_column}'; columns: {', '.join(header)}")
    ti, li = header.index(text_column), header.index(label_column)
    texts, labels = [], []
    for n, r in enumerate(rows[1:], 2):
        if len(r) <= max(ti, li):
            raise DataError(f"{path} line {n}: {len(r)} fields, expected {len(header)} ({', '.join(header)})")
        texts.append(r[ti].strip())
        labels.append(r[li].strip())
    return texts, labels


# --- padding, masks, truncation ------------------------------------------------------------------------------------
def truncate(ids: list[int], max_len: int, policy: str = "warn", where: str = "text") -> list[int]:
    """Cut ``ids`` to ``max_len``; ``policy`` error raises, warn warns (once per call site), silent just cuts."""
    if len(ids) <= max_len:
        return ids
    if policy == "error":
        raise DataError(
            f"{where} has {len(ids)} tokens, more than max_len={max_len}; "
            "raise data.text.max_len or set data.text.truncation=warn"
        )
    if policy == "warn":
        warnings.warn(f"{where}: {len(ids)} tokens truncated to max_len={max_len}", stacklevel=2)
    return ids[:max_len]


def pad_batch(seqs: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token id lists -> ids (B, T) int64 and lengths (B,); the mask is ``ids_mask(lengths, T)``."""
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    out = torch.full((len(seqs), int(lengths.max()) if len(seqs) else 0), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
    return out, lengths


def padding_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B,) lengths -> (B, max_len) bool, True on real tokens."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


# --- loaders -------------------------------------------------------------------------------------------------------
class SequenceLoader(BucketedLoader):
    """Batches of variable-length token sequences with one target each (classification / regression).

    Sequences are stored flat (one int64 tensor plus offsets); the batch order is :class:`BucketedLoader`'s.

    Yields ``{"tokens": (B, T) int64, "lengths": (B,), "target": (B, ...)}``.
    """

    def __init__(
        self,
        seqs: Sequence[Sequence[int]],
        targets: torch.Tensor,
        batch_size: int,
        shuffle: bool = False,
        bucket: bool = True,
        seed: int = 0,
        pad_id: int = 0,
    ):
        if len(seqs) != len(targets):
            raise DataError(f"{len(seqs)} sequences but {len(targets)} targets; expected the same number")
        if any(len(s) == 0 for s in seqs):
            raise DataError("a sequence is empty (0 tokens); drop empty lines or give each at least one token")
        super().__init__(torch.tensor([len(s) for s in seqs]), batch_size, shuffle, bucket, seed)
        self.offsets = torch.cat([torch.zeros(1, dtype=torch.long), self.lengths.cumsum(0)])
        self.flat = torch.tensor([t for s in seqs for t in s], dtype=torch.long)
        self.targets, self.pad_id = targets, pad_id

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for idx in self.batches()[self.start_batch :]:
            lengths = self.lengths[idx]
            # gather all rows at once (a per-row Python copy costs ~1 ms per batch of 64, ~2% of a small LSTM step)
            pos = torch.arange(int(lengths.max()))  # (T,)
            src = (self.offsets[idx][:, None] + pos).clamp_max(len(self.flat) - 1)  # (B, T) index into flat
            tokens = torch.where(pos < lengths[:, None], self.flat[src], self.pad_id)  # (B, T), pad after each length
            yield {
                "tokens": tokens.to(self.device),
                "lengths": lengths,  # pack_padded_sequence wants lengths on the CPU
                "target": self.targets[idx].to(self.device),
            }
        self.start_batch = 0


class LMWindowLoader:
    """Language-model windows over one token stream: inputs ``x = s[i : i+T]``, targets ``y = s[i+1 : i+T+1]``.

    Each epoch cuts the stream into non-overlapping windows starting at a random offset in ``[0, T)`` (so window
    boundaries move between epochs) and shuffles them; evaluation uses offset 0 and the stream order.
    Yields ``{"tokens": (B, T), "target": (B, T)}``.
    """

    def __init__(self, stream: torch.Tensor, block_size: int, batch_size: int, shuffle: bool = False, seed: int = 0):
        if len(stream) < 2:
            raise DataError(f"a language-model split needs at least 2 tokens, got {len(stream)}")
        self.stream = stream.long()
        self.block_size = min(block_size, len(stream) - 1)
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.epoch = self.start_batch = 0
        self.device = torch.device("cpu")

    def _starts(self) -> torch.Tensor:
        t = self.block_size
        if not self.shuffle:
            return torch.arange(0, len(self.stream) - t, t)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        offset = int(torch.randint(0, t, (1,), generator=g))
        starts = torch.arange(offset, len(self.stream) - t, t)
        if len(starts) == 0:
            starts = torch.zeros(1, dtype=torch.long)
        return starts[torch.randperm(len(starts), generator=g)]

    def __len__(self) -> int:
        return -(-len(self._starts()) // self.batch_size)

    @property
    def num_samples(self) -> int:
        return len(self._starts())

    @property
    def num_tokens(self) -> int:
        return len(self._starts()) * self.block_size

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def to(self, device: torch.device | str) -> LMWindowLoader:
        self.device = torch.device(device)
        self.stream = self.stream.to(device)
        return self

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        starts = self._starts().to(self.stream.device)
        ar = torch.arange(self.block_size + 1, device=self.stream.device)
        for b in range(self.start_batch, len(self)):
            s = starts[b * self.batch_size : (b + 1) * self.batch_size]
            w = self.stream[s[:, None] + ar]  # (B, T+1)
            yield {"tokens": w[:, :-1], "target": w[:, 1:]}
        self.start_batch = 0


# --- pretrained word vectors ---------------------------------------------------------------------------------------
def read_word_vectors(path: str | Path, limit: int | None = None) -> tuple[list[str], np.ndarray]:
    """Words and vectors from a word2vec text file (first line ``COUNT DIM``) or a GloVe file (no header).

    Args:
        path: the ``.txt`` (or ``.txt.gz``) file; one ``word v1 v2 ... vD`` per line.
        limit: read only the first ``limit`` vectors (files are usually sorted by frequency).
    """
    lines = read_lines(path)
    first = lines[0].split()
    start = 1 if len(first) == 2 and all(p.isdigit() for p in first) else 0
    words, rows, dim = [], [], None
    for n, line in enumerate(lines[start:], start + 1):
        parts = line.rstrip().split(" ")
        if not line.strip():
            continue
        if dim is None:
            dim = len(parts) - 1
        if len(parts) - 1 != dim:
            raise DataError(f"{path} line {n}: {len(parts) - 1} numbers after the word, expected {dim}")
        try:
            rows.append(np.asarray(parts[1:], dtype=np.float32))
        except ValueError:
            raise DataError(f"{path} line {n}: a vector value is not a number") from None
        words.append(parts[0])
        if limit is not None and len(words) >= limit:
            break
    if not words:
        raise DataError(f"{path} holds no word vectors")
    if start and int(first[1]) != dim:
        raise DataError(f"{path}: the header says {first[1]} dimensions but the vectors have {dim}")
    return words, np.stack(rows)


def embedding_from_vectors(
    tokenizer, words: list[str], vectors: np.ndarray, embed_dim: int | None = None, seed: int = 0
) -> tuple[torch.Tensor, float]:
    """An embedding matrix aligned to ``tokenizer``'s vocabulary (vocab_size, D) and the fraction of tokens found.

    Tokens missing from the file get small random vectors (scaled like the file's); ``<pad>`` is zero.
    """
    dim = vectors.shape[1]
    if embed_dim is not None and embed_dim != dim:
        raise ConfigError(f"model.embed_dim={embed_dim} but the word vectors have {dim} dimensions; set them equal")
    lookup = {w: i for i, w in enumerate(words)}
    g = torch.Generator().manual_seed(seed)
    scale = float(vectors.std()) if vectors.size else 0.1
    out = torch.randn(tokenizer.vocab_size, dim, generator=g) * scale
    found = 0
    for i in range(4, tokenizer.vocab_size):
        tok = tokenizer.id_to_token(i)
        j = lookup.get(tok, lookup.get(tok.lower()))
        if j is not None:
            out[i] = torch.from_numpy(vectors[j])
            found += 1
    out[tokenizer.pad_id] = 0
    return out, found / max(1, tokenizer.vocab_size - 4)

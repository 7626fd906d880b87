"""Sequence datasets from a recipe's ``data`` section: text classification, language modelling, time series.

Each builder returns a :class:`SequenceBundle`, which offers the Trainer the same ``loader(split)`` /
``val`` / ``test`` interface as :class:`~deepkit.data.DataBundle`. The tokenizer is trained on the training part
only and saved in the run; evaluation and prediction reuse it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepkit.data.loader import TensorLoader
from deepkit.data.preprocess import Preprocessing
from deepkit.data.series import SeriesData, build_series, read_series_csv
from deepkit.data.sources import data_root
from deepkit.data.text import LMWindowLoader, SequenceLoader, read_text, truncate
from deepkit.data.token_data import PRETRAINING, QUESTION_ANSWERING, TEXT_PAIRS, TOKEN_TAGGING
from deepkit.data.tokenizers import Tokenizer, build_tokenizer
from deepkit.errors import ConfigError, DataError, suggest

TEXT_CLASSIFICATION = {
    "sst2": "SST-2 sentiment (GLUE TSV: train.tsv, dev.tsv) from data.path or DATA_ROOT/sst2; dev is the test split",
    "text_table": "a TSV/CSV file (data.path) with a text column and a label column (data.target, default label)",
}
LANGUAGE_MODELLING = {
    "tinyshakespeare": "Tiny Shakespeare (input.txt, 1.1M characters) from data.path or DATA_ROOT/tinyshakespeare",
    "text_file": "any UTF-8 text file (data.path); the last val_split / test_split of it are held out",
    "multi30k": "Multi30k English captions, official train / val / test_2016_flickr splits (DATA_ROOT/multi30k)",
}
TIME_SERIES = {
    "airline": "airline passengers, monthly 1949-1960 (DATA_ROOT/timeseries/airline-passengers.csv)",
    "sunspots": "Zurich monthly sunspot numbers 1749-1983 (DATA_ROOT/timeseries/monthly-sunspots.csv)",
    "series_csv": "a CSV time series (data.path), one value column (data.series.column, default the last)",
}
TRANSLATION = {
    "multi30k": "Multi30k German->English (train / val / test_2016_flickr), from data.path or DATA_ROOT/multi30k",
}
LONG_RANGE = {"adding": "the adding problem (synthetic): sum of two marked values in a long sequence"}
WORD_VECTORS = {"multi30k": LANGUAGE_MODELLING["multi30k"], "text_file": LANGUAGE_MODELLING["text_file"]}
SEQUENCE_DATASETS = {**TEXT_CLASSIFICATION, **LANGUAGE_MODELLING, **TIME_SERIES, **WORD_VECTORS, **LONG_RANGE}
SEQUENCE_TASKS = {
    "text_classification": TEXT_CLASSIFICATION,
    "language_model": LANGUAGE_MODELLING,
    "forecast": TIME_SERIES,
    "word2vec": WORD_VECTORS,
    "long_range": LONG_RANGE,
    "translation": TRANSLATION,
    "masked_lm": PRETRAINING,
    "span_corruption": PRETRAINING,
    "token_classification": TOKEN_TAGGING,
    "question_answering": QUESTION_ANSWERING,
    "text_to_text": TEXT_PAIRS,
}


@dataclass
class SequenceBundle:
    """Splits as loader factories, plus what the model and the run need to know (vocabulary, classes)."""

    task: str
    make_loader: Callable[[str, bool, int], Any]  # (split, shuffle, seed) -> loader
    splits: dict[str, int]  # split name -> number of samples (sequences, windows)
    tokenizer: Tokenizer | None = None
    class_names: list[str] | None = None
    series: SeriesData | None = None
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    raw: dict[str, Any] = field(default_factory=dict)  # texts/labels per split, for baselines and samples
    notes: list[str] = field(default_factory=list)

    train = property(lambda self: self._has("train"))
    val = property(lambda self: self._has("val"))
    test = property(lambda self: self._has("test"))

    def _has(self, name: str) -> bool | None:
        return True if self.splits.get(name) else None

    def split(self, name: str):
        if name not in ("train", "val", "test"):
            raise ConfigError(f"unknown split '{name}'{suggest(name, ['train', 'val', 'test'])}")
        return self._has(name)

    def loader(self, name: str, shuffle: bool | None = None, seed: int = 0, drop_last: bool = False):
        if not self.split(name):
            raise DataError(f"this dataset has no '{name}' split")
        return self.make_loader(name, name == "train" if shuffle is None else shuffle, seed)

    def model_overrides(self) -> dict[str, Any]:
        """Model config fields that follow from the data (vocabulary size, classes, horizon)."""
        if "model_overrides" in self.raw:  # Transformer objectives and heads (token_data.py)
            return self.raw["model_overrides"]
        if self.task == "text_classification":
            return {"vocab_size": self.tokenizer.vocab_size, "num_classes": len(self.class_names)}
        if self.task in ("language_model", "word2vec"):
            return {"vocab_size": self.tokenizer.vocab_size}
        if self.task == "long_range":
            return {"in_features": 2, "num_classes": 1}
        if self.task == "translation":
            return {"src_vocab_size": self.raw["src_tokenizer"].vocab_size, "tgt_vocab_size": self.tokenizer.vocab_size}
        return {"in_features": 1, "num_classes": self.series.cfg.horizon}


def _default_path(cfg, folder: str, filename: str | None = None) -> Path:
    base = Path(cfg.path).expanduser() if cfg.path else data_root() / folder
    if filename and base.is_dir():
        base = base / filename
    if not base.exists():
        raise DataError(
            f"dataset '{cfg.name}' not found at {base}; set data.path or DEEPKIT_DATA (expected {folder}/"
            f"{filename or ''})"
        )
    return base


def build_sequence_data(
    cfg, task: str, tokenizer: Tokenizer | None = None, src_tokenizer: Tokenizer | None = None
) -> SequenceBundle:
    """Build the bundle for ``cfg.name`` (a :class:`~deepkit.data.DataConfig`) and ``task``.

    Args:
        tokenizer: reuse a saved tokenizer (evaluating or resuming a run) instead of training one.
        src_tokenizer: translation: the saved source-language tokenizer.
    """
    if task not in SEQUENCE_TASKS:
        raise ConfigError(f"unknown sequence task '{task}'{suggest(task, SEQUENCE_TASKS)}")
    if cfg.name not in SEQUENCE_TASKS[task]:
        raise ConfigError(
            f"dataset '{cfg.name}' does not fit task '{task}'; expected one of {', '.join(SEQUENCE_TASKS[task])}"
        )
    if task == "text_classification":
        return _text_classification(cfg, tokenizer)
    if task == "language_model":
        return _language_model(cfg, tokenizer)
    if task == "word2vec":
        return _word2vec(cfg, tokenizer)
    if task == "long_range":
        return _long_range(cfg)
    if task == "translation":
        return _translation(cfg, tokenizer, src_tokenizer)
    if task in TRANSFORMER_BUILDERS:
        from deepkit.data import token_data

        return getattr(token_data, TRANSFORMER_BUILDERS[task])(cfg, tokenizer)
    return _forecast(cfg)


TRANSFORMER_BUILDERS = {
    "masked_lm": "masked_lm_bundle",
    "span_corruption": "span_corruption_bundle",
    "token_classification": "token_classification_bundle",
    "question_answering": "qa_bundle",
    "text_to_text": "text_to_text_bundle",
}


# --- text classification -------------------------------------------------------------------------------------------
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


def _text_classification(cfg, tokenizer: Tokenizer | None) -> SequenceBundle:
    tc = cfg.text
    text_col = cfg.features[0] if cfg.features else None
    if cfg.name == "sst2":
        folder = _default_path(cfg, "sst2")
        train_texts, train_labels = read_text_table(folder / "train.tsv", "sentence", "label")
        test_texts, test_labels = read_text_table(folder / "dev.tsv", "sentence", "label")
        class_names = ["negative", "positive"]
        label_of = {"0": 0, "1": 1}
    else:
        if not cfg.path:
            raise ConfigError("data.name=text_table needs data.path (a .tsv or .csv file)")
        texts, labels = read_text_table(_default_path(cfg, ""), text_col, cfg.target)
        names = sorted(
            set(labels), key=lambda v: (not v.lstrip("-").isdigit(), int(v) if v.lstrip("-").isdigit() else 0, v)
        )
        class_names, label_of = names, {v: i for i, v in enumerate(names)}
        idx = np.random.default_rng(cfg.split_seed).permutation(len(texts))
        n_test = round(len(texts) * cfg.test_split)
        test_idx, train_idx = np.sort(idx[:n_test]), np.sort(idx[n_test:])
        test_texts, test_labels = [texts[i] for i in test_idx], [labels[i] for i in test_idx]
        train_texts, train_labels = [texts[i] for i in train_idx], [labels[i] for i in train_idx]
    if len(class_names) < 2:
        raise DataError(f"text classification needs at least 2 classes, got {class_names}")
    unknown = sorted(set(train_labels + test_labels) - set(label_of))
    if unknown:
        raise DataError(f"labels {unknown[:5]} are not among the classes {class_names}")
    # validation carved out of train (stratified), so the official dev set stays an untouched test set
    from sklearn.model_selection import train_test_split

    y_all = np.array([label_of[v] for v in train_labels])
    idx = np.arange(len(train_texts))
    tr, va = train_test_split(idx, test_size=cfg.val_split, random_state=cfg.split_seed, stratify=y_all)
    tr, va = np.sort(tr), np.sort(va)
    if cfg.limit:
        tr = tr[: cfg.limit]
    parts = {
        "train": ([train_texts[i] for i in tr], y_all[tr]),
        "val": ([train_texts[i] for i in va], y_all[va]),
        "test": (test_texts, np.array([label_of[v] for v in test_labels])),
    }
    if tokenizer is None:
        tokenizer = build_tokenizer(
            tc.tokenizer, parts["train"][0], vocab_size=tc.vocab_size, min_freq=tc.min_freq, lowercase=tc.lowercase
        )
    encoded = {}
    for name, (texts, y) in parts.items():
        ids = tokenizer.encode_batch(texts, add_special=tc.add_special)
        long = sum(len(s) > tc.max_len for s in ids)
        if long and tc.truncation == "error":
            truncate(next(s for s in ids if len(s) > tc.max_len), tc.max_len, "error", f"a {name} text")
        ids = [s[: tc.max_len] or [tokenizer.unk_id] for s in ids]  # an empty text becomes one <unk>
        encoded[name] = (ids, torch.as_tensor(y, dtype=torch.long), long)
    notes = [f"{n} {k} texts longer than max_len={tc.max_len} truncated" for k, (_, _, n) in encoded.items() if n]
    if notes and tc.truncation == "warn":
        import warnings

        warnings.warn("; ".join(notes), stacklevel=2)

    def make(split: str, shuffle: bool, seed: int) -> SequenceLoader:
        ids, y, _ = encoded[split]
        bs = cfg.batch_size if split == "train" else cfg.eval_batch_size
        return SequenceLoader(ids, y, bs, shuffle=shuffle, bucket=tc.bucket, seed=seed, pad_id=tokenizer.pad_id)

    return SequenceBundle(
        "text_classification",
        make,
        {k: len(v[0]) for k, v in encoded.items()},
        tokenizer=tokenizer,
        class_names=class_names,
        raw={k: v for k, v in parts.items()},
        notes=notes,
    )


# --- language modelling --------------------------------------------------------------------------------------------
def _language_model(cfg, tokenizer: Tokenizer | None) -> SequenceBundle:
    tc = cfg.text
    if cfg.name == "multi30k":
        folder = _default_path(cfg, "multi30k")
        files = {"train": "train.en.gz", "val": "val.en.gz", "test": "test_2016_flickr.en.gz"}
        parts = {k: read_text(folder / f) for k, f in files.items()}
    else:
        path = _default_path(cfg, "tinyshakespeare", "input.txt") if cfg.name == "tinyshakespeare" else None
        if cfg.name == "text_file":
            if not cfg.path:
                raise ConfigError("data.name=text_file needs data.path (a UTF-8 text file)")
            path = _default_path(cfg, "")
        text = read_text(path)
        # contiguous split: train | val | test at the end (nanoGPT holds out the last 10% of Tiny Shakespeare)
        n = len(text)
        n_test = int(n * cfg.test_split) if cfg.name == "text_file" else 0
        n_val = int(n * cfg.val_split)
        parts = {
            "train": text[: n - n_val - n_test],
            "val": text[n - n_val - n_test : n - n_test],
            "test": text[n - n_test :],
        }
    if cfg.limit:
        parts["train"] = parts["train"][: cfg.limit]
    if tokenizer is None:
        lines = parts["train"].splitlines(keepends=True) if tc.tokenizer == "char" else parts["train"].splitlines()
        tokenizer = build_tokenizer(
            tc.tokenizer, lines, vocab_size=tc.vocab_size, min_freq=tc.min_freq, lowercase=tc.lowercase
        )
    streams = {}
    for name, part in parts.items():
        if not part:
            continue
        if tc.tokenizer == "char":
            ids = tokenizer.encode(part)
        else:  # sentence by sentence, each line closed by <eos>
            ids = [i for line in part.splitlines() if line.strip() for i in tokenizer.encode(line) + [tokenizer.eos_id]]
        if len(ids) > 1:
            streams[name] = torch.tensor(ids, dtype=torch.long)
    if "train" not in streams:
        raise DataError(f"dataset '{cfg.name}': the training part is empty after the splits")

    def make(split: str, shuffle: bool, seed: int) -> LMWindowLoader:
        bs = cfg.batch_size if split == "train" else cfg.eval_batch_size
        return LMWindowLoader(streams[split], tc.block_size, bs, shuffle=shuffle, seed=seed)

    return SequenceBundle(
        "language_model",
        make,
        {k: make(k, False, 0).num_samples for k in streams},
        tokenizer=tokenizer,
        raw={k: v for k, v in parts.items() if k in streams},
    )


# --- forecasting ---------------------------------------------------------------------------------------------------
def _forecast(cfg) -> SequenceBundle:
    files = {"airline": "airline-passengers.csv", "sunspots": "monthly-sunspots.csv"}
    if cfg.name == "series_csv":
        if not cfg.path:
            raise ConfigError("data.name=series_csv needs data.path (a CSV file)")
        path = _default_path(cfg, "")
    else:
        path = _default_path(cfg, "timeseries", files[cfg.name])
    labels, values, _ = read_series_csv(path, cfg.series.column)
    series = build_series(labels, values, cfg.series)

    def make(split: str, shuffle: bool, seed: int) -> TensorLoader:
        x, y = series.splits[split]
        bs = cfg.batch_size if split == "train" else cfg.eval_batch_size
        return TensorLoader(x, y, bs, shuffle=shuffle, seed=seed)

    return SequenceBundle(
        "forecast", make, {k: len(v[0]) for k, v in series.splits.items()}, series=series, raw={"path": str(path)}
    )


# --- word2vec ------------------------------------------------------------------------------------------------------
def _word2vec(cfg, tokenizer: Tokenizer | None) -> SequenceBundle:
    from deepkit.data.text import read_lines
    from deepkit.data.word2vec import Word2VecLoader

    tc = cfg.text
    if cfg.name == "multi30k":
        folder = _default_path(cfg, "multi30k")
        parts = {"train": read_lines(folder / "train.en.gz"), "val": read_lines(folder / "val.en.gz")}
    else:
        if not cfg.path:
            raise ConfigError("data.name=text_file needs data.path (a UTF-8 text file, one sentence per line)")
        lines = [ln for ln in read_lines(_default_path(cfg, "")) if ln.strip()]
        n_val = int(len(lines) * cfg.val_split)
        parts = {"train": lines[: len(lines) - n_val], "val": lines[len(lines) - n_val :]}
    if cfg.limit:
        parts["train"] = parts["train"][: cfg.limit]
    if tokenizer is None:
        if tc.tokenizer != "word":
            raise ConfigError(f"word2vec learns vectors of words; set data.text.tokenizer=word (got {tc.tokenizer})")
        tokenizer = build_tokenizer(
            "word", parts["train"], vocab_size=tc.vocab_size, min_freq=tc.min_freq, lowercase=tc.lowercase
        )
    encoded = {k: tokenizer.encode_batch(v) for k, v in parts.items() if v}
    bundle: SequenceBundle

    def make(split: str, shuffle: bool, seed: int) -> Word2VecLoader:
        bs = cfg.batch_size if split == "train" else cfg.eval_batch_size
        return Word2VecLoader(
            encoded[split],
            tokenizer.vocab_size,
            bs,
            bundle.raw.get("mode", "skipgram"),
            tc.window,
            tc.negatives,
            tc.subsample,
            shuffle=shuffle,
            seed=seed,
        )

    bundle = SequenceBundle("word2vec", make, {k: len(v) for k, v in encoded.items()}, tokenizer=tokenizer)
    return bundle


# --- long-range synthetic tasks ------------------------------------------------------------------------------------
def _long_range(cfg) -> SequenceBundle:
    from deepkit.data.long_range import adding_problem

    lr = cfg.long_range
    sizes = {"train": lr.num_train, "val": lr.num_val, "test": lr.num_test}
    # fixed seeds per split (independent of the training seed), so every model sees the same sequences
    splits = {k: adding_problem(n, lr.length, seed=cfg.split_seed * 10 + i) for i, (k, n) in enumerate(sizes.items())}

    def make(split: str, shuffle: bool, seed: int) -> TensorLoader:
        x, y = splits[split]
        bs = cfg.batch_size if split == "train" else cfg.eval_batch_size
        return TensorLoader(x, y, bs, shuffle=shuffle, seed=seed)

    return SequenceBundle("long_range", make, {k: len(v[0]) for k, v in splits.items()}, raw={"splits": splits})


# --- translation ---------------------------------------------------------------------------------------------------
def _translation(cfg, tokenizer: Tokenizer | None, src_tokenizer: Tokenizer | None) -> SequenceBundle:
    from deepkit.data.text import read_lines
    from deepkit.data.translation import PairLoader

    tc = cfg.text
    folder = _default_path(cfg, "multi30k")
    files = {"train": "train", "val": "val", "test": "test_2016_flickr"}
    parts = {}
    for split, stem in files.items():
        src, tgt = read_lines(folder / f"{stem}.de.gz"), read_lines(folder / f"{stem}.en.gz")
        if len(src) != len(tgt):
            raise DataError(
                f"{stem}.de.gz has {len(src)} lines but {stem}.en.gz has {len(tgt)}; expected aligned files"
            )
        keep = [i for i in range(len(src)) if src[i].strip() and tgt[i].strip()]
        parts[split] = ([src[i] for i in keep], [tgt[i] for i in keep])
    if cfg.limit:
        parts["train"] = (parts["train"][0][: cfg.limit], parts["train"][1][: cfg.limit])
    opts = {"vocab_size": tc.vocab_size, "min_freq": tc.min_freq, "lowercase": tc.lowercase}
    if src_tokenizer is None:
        src_tokenizer = build_tokenizer(tc.tokenizer, parts["train"][0], **opts)
    if tokenizer is None:
        tokenizer = build_tokenizer(tc.tokenizer, parts["train"][1], **opts)
    encoded = {
        k: (
            [s[: tc.max_len] or [src_tokenizer.unk_id] for s in src_tokenizer.encode_batch(src)],
            [t[: tc.max_len] for t in tokenizer.encode_batch(tgt)],
        )
        for k, (src, tgt) in parts.items()
    }

    def make(split: str, shuffle: bool, seed: int) -> PairLoader:
        bs = cfg.batch_size if split == "train" else cfg.eval_batch_size
        src, tgt = encoded[split]
        return PairLoader(
            src,
            tgt,
            bs,
            shuffle=shuffle,
            seed=seed,
            pad_id=tokenizer.pad_id,
            bos_id=tokenizer.bos_id,
            eos_id=tokenizer.eos_id,
        )

    return SequenceBundle(
        "translation",
        make,
        {k: len(v[0]) for k, v in parts.items()},
        tokenizer=tokenizer,
        raw={"src_tokenizer": src_tokenizer, "parts": parts, "encoded": encoded},
    )

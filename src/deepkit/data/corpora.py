"""Text corpora: text classification tables, language-modelling corpora, word2vec sentences and translation pairs.

Each builder returns a :class:`~deepkit.data.text.TextData` (the Trainer's data contract). The tokenizer is trained
on the training part only (or reused: evaluation, resuming, fine-tuning) and saved in the run.
"""

from __future__ import annotations

import numpy as np
import torch

from deepkit.data.sources import dataset_path
from deepkit.data.text import LMWindowLoader, SequenceLoader, TextData, read_text, read_text_table, truncate
from deepkit.data.tokenizers import Tokenizer, build_tokenizer
from deepkit.errors import ConfigError, DataError

TEXT_CLASSIFICATION = {
    "sst2": "SST-2 sentiment (GLUE TSV: train.tsv, dev.tsv) from data.path or DATA_ROOT/sst2; dev is the test split",
    "text_table": "a TSV/CSV file (data.path) with a text column and a label column (data.target, default label)",
}
LANGUAGE_MODELLING = {
    "tinyshakespeare": "Tiny Shakespeare (input.txt, 1.1M characters) from data.path or DATA_ROOT/tinyshakespeare",
    "text_file": "any UTF-8 text file (data.path); the last val_split / test_split of it are held out",
    "multi30k": "Multi30k English captions, official train / val / test_2016_flickr splits (DATA_ROOT/multi30k)",
}
TRANSLATION = {
    "multi30k": "Multi30k German->English (train / val / test_2016_flickr), from data.path or DATA_ROOT/multi30k",
}
WORD_VECTORS = {"multi30k": LANGUAGE_MODELLING["multi30k"], "text_file": LANGUAGE_MODELLING["text_file"]}


# --- text classification -------------------------------------------------------------------------------------------
def text_classification_data(cfg, tokenizer: Tokenizer | None = None) -> TextData:
    tc = cfg.text
    text_col = cfg.features[0] if cfg.features else None
    if cfg.name == "sst2":
        folder = dataset_path(cfg, "sst2")
        train_texts, train_labels = read_text_table(folder / "train.tsv", "sentence", "label")
        test_texts, test_labels = read_text_table(folder / "dev.tsv", "sentence", "label")
        class_names = ["negative", "positive"]
        label_of = {"0": 0, "1": 1}
    else:
        if not cfg.path:
            raise ConfigError("data.name=text_table needs data.path (a .tsv or .csv file)")
        texts, labels = read_text_table(dataset_path(cfg, ""), text_col, cfg.target)
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

    return TextData(
        make,
        {k: len(v[0]) for k, v in encoded.items()},
        cfg.batch_size,
        cfg.eval_batch_size,
        notes=notes,
        tokenizer=tokenizer,
        class_names=class_names,
        model_sizes={"vocab_size": tokenizer.vocab_size, "num_classes": len(class_names)},
        parts=parts,
        counts="lengths",
    )


# --- language modelling --------------------------------------------------------------------------------------------
def language_model_data(cfg, tokenizer: Tokenizer | None = None) -> TextData:
    tc = cfg.text
    if cfg.name == "multi30k":
        folder = dataset_path(cfg, "multi30k")
        files = {"train": "train.en.gz", "val": "val.en.gz", "test": "test_2016_flickr.en.gz"}
        parts = {k: read_text(folder / f) for k, f in files.items()}
    else:
        path = dataset_path(cfg, "tinyshakespeare", "input.txt") if cfg.name == "tinyshakespeare" else None
        if cfg.name == "text_file":
            if not cfg.path:
                raise ConfigError("data.name=text_file needs data.path (a UTF-8 text file)")
            path = dataset_path(cfg, "")
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

    return TextData(
        make,
        {k: make(k, False, 0).num_samples for k in streams},
        cfg.batch_size,
        cfg.eval_batch_size,
        tokenizer=tokenizer,
        model_sizes={"vocab_size": tokenizer.vocab_size},
        parts={k: v for k, v in parts.items() if k in streams},
        counts="targets",
    )


# --- word2vec ------------------------------------------------------------------------------------------------------
def word2vec_data(cfg, mode: str = "skipgram", tokenizer: Tokenizer | None = None) -> TextData:
    from deepkit.data.text import read_lines
    from deepkit.data.word2vec import Word2VecLoader

    tc = cfg.text
    if cfg.name == "multi30k":
        folder = dataset_path(cfg, "multi30k")
        parts = {"train": read_lines(folder / "train.en.gz"), "val": read_lines(folder / "val.en.gz")}
    else:
        if not cfg.path:
            raise ConfigError("data.name=text_file needs data.path (a UTF-8 text file, one sentence per line)")
        lines = [ln for ln in read_lines(dataset_path(cfg, "")) if ln.strip()]
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

    def make(split: str, shuffle: bool, seed: int) -> Word2VecLoader:
        bs = cfg.batch_size if split == "train" else cfg.eval_batch_size
        return Word2VecLoader(
            encoded[split],
            tokenizer.vocab_size,
            bs,
            mode,  # skip-gram or CBOW samples, as the model is built
            tc.window,
            tc.negatives,
            tc.subsample,
            shuffle=shuffle,
            seed=seed,
        )

    return TextData(
        make,
        {k: len(v) for k, v in encoded.items()},
        cfg.batch_size,
        cfg.eval_batch_size,
        tokenizer=tokenizer,
        model_sizes={"vocab_size": tokenizer.vocab_size},
    )


# --- translation ---------------------------------------------------------------------------------------------------
def translation_data(cfg, tokenizer: Tokenizer | None = None, src_tokenizer: Tokenizer | None = None) -> TextData:
    from deepkit.data.text import read_lines
    from deepkit.data.translation import PairLoader

    tc = cfg.text
    folder = dataset_path(cfg, "multi30k")
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

    return TextData(
        make,
        {k: len(v[0]) for k, v in parts.items()},
        cfg.batch_size,
        cfg.eval_batch_size,
        tokenizer=tokenizer,
        src_tokenizer=src_tokenizer,
        model_sizes={"src_vocab_size": src_tokenizer.vocab_size, "tgt_vocab_size": tokenizer.vocab_size},
        parts=parts,
        encoded=encoded,
        counts="targets",
    )

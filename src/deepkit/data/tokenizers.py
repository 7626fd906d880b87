"""Tokenizers: character, word (lower-casing, vocabulary cap) and subword (BPE, WordPiece via `tokenizers`).

All share one interface, so models and the Transformers code can take any of them:

    tok = build_tokenizer("word", texts, vocab_size=20000, lowercase=True)
    ids = tok.encode("A man rides a horse.")          # list[int]
    tok.decode(ids)                                   # "a man rides a horse ."
    tok.save(run_dir / "tokenizer.json"); tok = load_tokenizer(run_dir / "tokenizer.json")

Special tokens have fixed ids in every tokenizer: ``<pad>`` 0, ``<unk>`` 1, ``<bos>`` 2, ``<eos>`` 3.
Objectives that need more (``<mask>`` for masked LM, ``<extra_id_0>``... sentinels for T5 span corruption) ask
``build_tokenizer(..., specials=[...])``: they take ids 4, 5, ... and are looked up by name (``token_to_id``).
Char and word vocabularies are a few lines of counting; BPE/WordPiece training is left to Hugging Face
``tokenizers`` (fast, standard, and its JSON is embedded in ours).
"""

from __future__ import annotations

import abc
import json
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from deepkit.errors import CheckpointError, ConfigError, DataError, suggest

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIALS = [PAD, UNK, BOS, EOS]
MASK = "<mask>"  # masked LM (BERT's [MASK])


def sentinel(i: int) -> str:
    """T5's i-th span-corruption sentinel token (``<extra_id_0>``, ...)."""
    return f"<extra_id_{i}>"


KINDS = ("char", "word", "bpe", "wordpiece")
FORMAT = "deepkit-tokenizer/1"

_WORD_RE = re.compile(r"\w+(?:'\w+)?|[^\w\s]")  # words (with inner apostrophes) and single punctuation marks


class Tokenizer(abc.ABC):
    """Base class: text <-> token ids with fixed special-token ids."""

    kind = "base"
    pad_id, unk_id, bos_id, eos_id = 0, 1, 2, 3

    @property
    @abc.abstractmethod
    def vocab_size(self) -> int: ...

    @abc.abstractmethod
    def encode(self, text: str, add_special: bool = False) -> list[int]:
        """Token ids of ``text``; with ``add_special`` wrapped in BOS ... EOS."""
        ...

    @abc.abstractmethod
    def decode(self, ids: Iterable[int], skip_special: bool = True) -> str: ...

    @abc.abstractmethod
    def id_to_token(self, i: int) -> str: ...

    @abc.abstractmethod
    def token_to_id(self, token: str) -> int | None: ...

    @abc.abstractmethod
    def to_dict(self) -> dict[str, Any]: ...

    def encode_batch(self, texts: Iterable[str], add_special: bool = False) -> list[list[int]]:
        return [self.encode(t, add_special) for t in texts]

    def tokens(self, text: str) -> list[str]:
        return [self.id_to_token(i) for i in self.encode(text)]

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Token ids and each token's ``(start, end)`` character span in ``text`` (extractive QA needs them)."""
        raise ConfigError(f"the {self.kind} tokenizer cannot report character offsets")

    def save(self, path: str | Path) -> Path:
        """Write the tokenizer (vocabulary and settings) as JSON; ``load_tokenizer`` reads it back."""
        from deepkit.weights import atomic_write_text

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps({"format": FORMAT, "kind": self.kind, **self.to_dict()}, ensure_ascii=False))
        return path

    @staticmethod
    def load(path: str | Path) -> Tokenizer:
        return load_tokenizer(path)

    def fingerprint(self) -> str:
        """A short hash of the vocabulary: a model trained with one tokenizer refuses ids from another."""
        import hashlib

        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def _wrap(self, ids: list[int], add_special: bool) -> list[int]:
        return [self.bos_id, *ids, self.eos_id] if add_special else ids


class _VocabTokenizer(Tokenizer):
    """A token list in id order; the first four are the specials."""

    def __init__(self, vocab: list[str]):
        if vocab[:4] != SPECIALS:
            raise CheckpointError(f"tokenizer vocabulary must start with {SPECIALS}, got {vocab[:4]}")
        self.vocab = list(vocab)
        self.index = {t: i for i, t in enumerate(self.vocab)}

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def id_to_token(self, i: int) -> str:
        return self.vocab[i]

    def token_to_id(self, token: str) -> int | None:
        return self.index.get(token)

    @abc.abstractmethod
    def split(self, text: str) -> list[str]: ...

    def encode(self, text: str, add_special: bool = False) -> list[int]:
        unk, index = self.unk_id, self.index
        return self._wrap([index.get(t, unk) for t in self.split(text)], add_special)

    def _tokens_of(self, ids: Iterable[int], skip_special: bool) -> list[str]:
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self.vocab):
                raise DataError(f"token id {i} is outside this tokenizer's vocabulary of {len(self.vocab)}")
            if skip_special and i in (self.pad_id, self.bos_id, self.eos_id):
                continue
            out.append(self.vocab[i])
        return out


def _count_vocab(counts: Counter, vocab_size: int | None, min_freq: int, extra: list[str] = ()) -> list[str]:
    """Most frequent first (ties alphabetical, so the vocabulary is reproducible), capped at ``vocab_size``;
    ``extra`` special tokens follow the four fixed ones."""
    specials = SPECIALS + [t for t in extra if t not in SPECIALS]
    items = sorted((t for t, c in counts.items() if c >= min_freq and t not in specials), key=lambda t: (-counts[t], t))
    if vocab_size is not None:
        items = items[: max(0, vocab_size - len(specials))]
    return specials + items


class CharTokenizer(_VocabTokenizer):
    """One token per Unicode character; characters not seen in training map to ``<unk>``."""

    kind = "char"

    def split(self, text: str) -> list[str]:
        return list(text)

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        return self.encode(text), [(i, i + 1) for i in range(len(text))]

    def decode(self, ids: Iterable[int], skip_special: bool = True) -> str:
        return "".join(self._tokens_of(ids, skip_special))

    def to_dict(self) -> dict[str, Any]:
        return {"vocab": self.vocab}

    @classmethod
    def train(
        cls, texts: Iterable[str], vocab_size: int | None = None, min_freq: int = 1, specials: list[str] = ()
    ) -> CharTokenizer:
        counts: Counter = Counter()
        for t in texts:
            counts.update(t)
        return cls(_count_vocab(counts, vocab_size, min_freq, specials))


class WordTokenizer(_VocabTokenizer):
    """Words and punctuation marks (regex split), optionally lower-cased; rare words beyond the cap -> ``<unk>``."""

    kind = "word"

    def __init__(self, vocab: list[str], lowercase: bool = True):
        super().__init__(vocab)
        self.lowercase = lowercase

    def split(self, text: str) -> list[str]:
        return _WORD_RE.findall(text.lower() if self.lowercase else text)

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        # case-folding keeps the words' positions except for rare characters whose lower case is longer (İ)
        matches = list(_WORD_RE.finditer(text.lower() if self.lowercase else text))
        ids = [self.index.get(m.group(), self.unk_id) for m in matches]
        return ids, [m.span() for m in matches]

    def decode(self, ids: Iterable[int], skip_special: bool = True) -> str:
        return " ".join(self._tokens_of(ids, skip_special))

    def to_dict(self) -> dict[str, Any]:
        return {"vocab": self.vocab, "lowercase": self.lowercase}

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int | None = 20000,
        min_freq: int = 1,
        lowercase: bool = True,
        specials: list[str] = (),
    ) -> WordTokenizer:
        counts: Counter = Counter()
        for t in texts:
            counts.update(_WORD_RE.findall(t.lower() if lowercase else t))
        return cls(_count_vocab(counts, vocab_size, min_freq, specials), lowercase)


class SubwordTokenizer(Tokenizer):
    """BPE (byte-level, lossless) or WordPiece trained with Hugging Face ``tokenizers`` on the user's corpus."""

    def __init__(self, hf_tokenizer, kind: str):
        self.hf = hf_tokenizer
        self.kind = kind
        for i, tok in enumerate(SPECIALS):
            if self.hf.token_to_id(tok) != i:
                raise CheckpointError(f"subword tokenizer: special token {tok} must have id {i}")

    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size()

    def encode(self, text: str, add_special: bool = False) -> list[int]:
        return self._wrap(self.hf.encode(text, add_special_tokens=False).ids, add_special)

    def encode_batch(self, texts: Iterable[str], add_special: bool = False) -> list[list[int]]:
        return [self._wrap(e.ids, add_special) for e in self.hf.encode_batch(list(texts), add_special_tokens=False)]

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        enc = self.hf.encode(text, add_special_tokens=False)
        return list(enc.ids), [tuple(o) for o in enc.offsets]

    def decode(self, ids: Iterable[int], skip_special: bool = True) -> str:
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise DataError(f"token id {bad[0]} is outside this tokenizer's vocabulary of {self.vocab_size}")
        return self.hf.decode(ids, skip_special_tokens=skip_special)

    def id_to_token(self, i: int) -> str:
        return self.hf.id_to_token(i)

    def token_to_id(self, token: str) -> int | None:
        return self.hf.token_to_id(token)

    def to_dict(self) -> dict[str, Any]:
        return {"hf": json.loads(self.hf.to_str())}

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        kind: str,
        vocab_size: int = 8000,
        min_freq: int = 2,
        lowercase: bool = False,
        specials: list[str] = (),
    ) -> SubwordTokenizer:
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import decoders, models, normalizers, pre_tokenizers, trainers

        all_specials = SPECIALS + [t for t in specials if t not in SPECIALS]
        if kind == "bpe":
            hf = HFTokenizer(models.BPE(unk_token=UNK))
            hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            hf.decoder = decoders.ByteLevel()
            trainer = trainers.BpeTrainer(
                vocab_size=vocab_size,
                min_frequency=min_freq,
                special_tokens=all_specials,
                initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                show_progress=False,
            )
        else:
            hf = HFTokenizer(models.WordPiece(unk_token=UNK))
            hf.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
            hf.decoder = decoders.WordPiece()
            trainer = trainers.WordPieceTrainer(
                vocab_size=vocab_size, min_frequency=min_freq, special_tokens=all_specials, show_progress=False
            )
        norm = [normalizers.NFC()] + ([normalizers.Lowercase()] if lowercase else [])
        hf.normalizer = normalizers.Sequence(norm)
        hf.train_from_iterator(texts, trainer=trainer)
        return cls(hf, kind)


def build_tokenizer(kind: str, texts: Iterable[str], **cfg: Any) -> Tokenizer:
    """Train a tokenizer of ``kind`` (char, word, bpe, wordpiece) on ``texts``.

    Args:
        kind: ``char``, ``word``, ``bpe`` or ``wordpiece``.
        texts: the training corpus (strings).
        **cfg: ``vocab_size`` (cap, specials included), ``min_freq``, ``lowercase`` (word, subword),
            ``specials`` (extra special tokens such as ``"<mask>"``; ids 4, 5, ... in the given order).

    Example:
        >>> tok = build_tokenizer("word", ["A dog runs.", "a cat sits"], vocab_size=100)
        >>> tok.decode(tok.encode("A cat runs!"))
        'a cat runs <unk>'
    """
    texts = [t for t in texts if t and t.strip()]
    if not texts:
        raise DataError(f"cannot build a {kind} tokenizer from empty text; expected at least one non-empty line")
    vocab_size = cfg.get("vocab_size")
    extra = list(cfg.get("specials") or [])
    if vocab_size is not None and vocab_size <= len(SPECIALS) + len(extra):
        raise ConfigError(
            f"tokenizer vocab_size must be > {len(SPECIALS) + len(extra)} (the special tokens), got {vocab_size}"
        )
    if kind == "char":
        return CharTokenizer.train(texts, vocab_size, cfg.get("min_freq", 1), extra)
    if kind == "word":
        return WordTokenizer.train(texts, vocab_size, cfg.get("min_freq", 1), cfg.get("lowercase", True), extra)
    if kind in ("bpe", "wordpiece"):
        return SubwordTokenizer.train(
            texts, kind, vocab_size or 8000, cfg.get("min_freq", 2), cfg.get("lowercase", kind == "wordpiece"), extra
        )
    raise ConfigError(f"unknown tokenizer '{kind}'{suggest(kind, KINDS)}")


def tokenizer_from_dict(d: dict[str, Any], source: str = "tokenizer") -> Tokenizer:
    kind = d.get("kind")
    try:
        if kind == "char":
            return CharTokenizer(d["vocab"])
        if kind == "word":
            return WordTokenizer(d["vocab"], d.get("lowercase", True))
        if kind in ("bpe", "wordpiece"):
            from tokenizers import Tokenizer as HFTokenizer

            return SubwordTokenizer(HFTokenizer.from_str(json.dumps(d["hf"])), kind)
    except (KeyError, TypeError, ValueError, Exception) as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(f"{source} is not a valid {kind} tokenizer: {type(e).__name__}: {e}") from None
    raise CheckpointError(f"{source}: unknown tokenizer kind {kind!r}; expected one of {', '.join(KINDS)}")


def hf_tokenizer(tok: Tokenizer, add_special: bool = False):
    """The same tokenizer as a Hugging Face ``tokenizers.Tokenizer`` (for ``tokenizer.json`` in a
    ``save_pretrained``-style folder): subword tokenizers are one already; character and word tokenizers become a
    ``WordLevel`` vocabulary behind pre-tokenizers that split as they split. ``add_special``: wrap in BOS ... EOS
    as the run encoded its texts."""
    from tokenizers import Regex, normalizers, pre_tokenizers, processors
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers.models import WordLevel

    if isinstance(tok, SubwordTokenizer):
        hf = HFTokenizer.from_str(tok.hf.to_str())
    elif isinstance(tok, _VocabTokenizer):
        hf = HFTokenizer(WordLevel({t: i for i, t in enumerate(tok.vocab)}, unk_token=tok.vocab[tok.unk_id]))
        if isinstance(tok, CharTokenizer):
            hf.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
        else:
            if getattr(tok, "lowercase", False):
                hf.normalizer = normalizers.Lowercase()
            hf.pre_tokenizer = pre_tokenizers.Sequence(
                [
                    pre_tokenizers.Split(Regex(r"\s+"), behavior="removed"),
                    pre_tokenizers.Split(Regex(_WORD_RE.pattern), behavior="isolated"),
                ]
            )
    else:
        raise ConfigError(f"a {tok.kind} tokenizer has no Hugging Face equivalent")
    if add_special:
        bos, eos = tok.id_to_token(tok.bos_id), tok.id_to_token(tok.eos_id)
        hf.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A {eos}", special_tokens=[(bos, tok.bos_id), (eos, tok.eos_id)]
        )
    else:
        hf.post_processor = None
    return hf


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Read a tokenizer written by :meth:`Tokenizer.save` (e.g. ``RUN_DIR/tokenizer.json``)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"tokenizer file not found: {path}")
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not a tokenizer JSON file: {e}") from None
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a deepkit tokenizer (expected format {FORMAT!r})")
    return tokenizer_from_dict(d, str(path))

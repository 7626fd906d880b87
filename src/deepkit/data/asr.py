"""Data for CTC speech recognition: vocabularies (blank = 0), spoken digit strings assembled from single-digit
recordings, transcribed utterances (LibriSpeech layout), and their padded batches.

* :class:`Vocabulary`: ``tokens[0]`` is the CTC blank; ``unit="word"`` (tokens separated by spaces in the text:
  digit strings ``"4 1 7"``) or ``"char"`` (every character a token: LibriSpeech). A transcript with a token outside
  the vocabulary is a one-line error naming the token(s) and the utterance.
* :class:`DigitStrings`: strings of ``min_digits``-``max_digits`` digits, each digit one recording of a pool of
  FSDD clips (one speaker per string), with random silences before, between and after the digits, a random gain
  per digit and optional white noise at a signal-to-noise ratio. A string is a small recipe (which clips, gains,
  silences) drawn from a generator seeded by ``(seed, epoch)``, assembled in memory when its batch is built: the
  same seed gives the same strings, nothing is written to disk, and training sets can draw new strings every epoch.
  Train, validation and test strings draw from disjoint pools of recordings (``deepkit.data.audio.fsdd_split``).
* :class:`Utterances`: recordings with transcripts, read into memory.
* :class:`ASRLoader` / :class:`ASRData`: batches ``{"audio", "lengths", "targets", "target_lengths", "index"}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from deepkit.data.audio import AudioLoader
from deepkit.data.module import SetsData
from deepkit.errors import ConfigError, DataError

if TYPE_CHECKING:
    import torch

    from deepkit.data.audio import AudioSet

BLANK = "<blank>"
DIGITS = [str(d) for d in range(10)]


@dataclass
class Vocabulary:
    """CTC output symbols: ``tokens[0]`` is the blank; ``unit`` says how a text splits into tokens.

    ``hf``: the settings of a Hugging Face CTC tokenizer (``pad_token``, ``word_delimiter_token``, ``unk_token``,
    ``replace_word_delimiter_char``, ``do_lower_case``, ``clean_up_tokenization_spaces``) when the vocabulary is a
    checkpoint's ``vocab.json``: texts then encode and decode as that tokenizer does (a space is the word delimiter
    ``|``), and ``tokens[0]`` stands for its pad token."""

    tokens: list[str]
    unit: str = "char"  # "word": space-separated tokens; "char": one token per character
    hf: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not self.tokens or self.tokens[0] != BLANK:
            raise ConfigError(f"a CTC vocabulary starts with the blank {BLANK!r}, got {self.tokens[:3]}")
        if self.unit not in ("word", "char"):
            raise ConfigError(f"vocabulary unit must be 'word' or 'char', got {self.unit!r}")
        self.index = {t: i for i, t in enumerate(self.tokens)}
        self._ctc = None

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def is_digits(self) -> bool:
        return self.unit == "word" and self.tokens[1:] == DIGITS

    def split(self, text: str) -> list[str]:
        if self.hf is not None:
            ctc = self.ctc()
            text = text.upper() if ctc.do_lower_case else text
            return text.split() if self.unit == "word" else [ctc.word_delimiter_token if c == " " else c for c in text]
        return text.split() if self.unit == "word" else list(text)

    def encode(self, text: str, name: str = "transcript") -> list[int]:
        """Token ids of ``text``; tokens outside the vocabulary are a one-line error naming them and ``name``."""
        parts = self.split(text)
        bad = sorted({p for p in parts if p not in self.index or p == BLANK})
        if bad:
            shown = ", ".join(repr(b) for b in bad[:8])
            raise DataError(f"{name}: transcript {text[:60]!r} has {len(bad)} token(s) outside the vocabulary "
                            f"({shown}); the vocabulary is {self.describe()}")  # fmt: skip
        return [self.index[p] for p in parts]

    def decode(self, ids: list[int]) -> str:
        if self.hf is not None:
            return self.ctc().labels_to_text([i for i in ids if i != 0])
        sep = " " if self.unit == "word" else ""
        return sep.join(self.tokens[i] for i in ids if i != 0)

    def describe(self) -> str:
        if self.hf is not None:
            shown = "".join(self.tokens[1:])[:80]
            return f"{len(self.tokens) - 1} tokens of a checkpoint's vocab.json + blank: {shown!r}"
        shown = "".join(self.tokens[1:]) if self.unit == "char" else " ".join(self.tokens[1:])
        return f"{len(self.tokens) - 1} {self.unit}s + blank: {shown[:80]!r}"

    def ctc(self) -> Any:
        """The vocabulary as a Hugging Face CTC tokenizer's (:class:`deepkit.interop.wav2vec2.CTCVocab`: the blank is
        its pad token, id 0): for ``vocab.json`` when a run is exported. A character vocabulary's space becomes the
        word delimiter ``|``; a word vocabulary (digit strings) is marked so that deepkit reads it back as words."""
        if self._ctc is None:
            from deepkit.interop.wav2vec2 import CTCVocab

            if self.hf is not None:
                tokens = dict(enumerate(self.tokens))
                tokens[0] = self.hf["pad_token"]
                self._ctc = CTCVocab(tokens, **self.hf, unit=self.unit)
            else:
                delim = "|"
                tokens = {i: (delim if t == " " and self.unit == "char" else t) for i, t in enumerate(self.tokens)}
                tokens[0] = "<pad>"
                self._ctc = CTCVocab(tokens, word_delimiter_token=delim, unit=self.unit)
        return self._ctc

    @classmethod
    def from_ctc(cls, ctc: Any, size: int) -> tuple[Vocabulary, list[int]]:
        """A checkpoint's :class:`~deepkit.interop.wav2vec2.CTCVocab` for a CTC head of ``size`` outputs -> (the
        vocabulary, blank first; the head's output order that puts the pad token first: rows of ``lm_head``)."""
        order = [ctc.blank_id, *(i for i in range(size) if i != ctc.blank_id)]
        tokens = [BLANK, *(ctc.tokens.get(i, f"<unused-{i}>") for i in order[1:])]
        keys = ("pad_token", "word_delimiter_token", "unk_token", "replace_word_delimiter_char", "do_lower_case",
                "clean_up_tokenization_spaces")  # fmt: skip
        return cls(tokens, ctc.unit, {k: getattr(ctc, k) for k in keys}), order


def digit_vocabulary() -> Vocabulary:
    return Vocabulary([BLANK, *DIGITS], "word")


def char_vocabulary(texts: list[str]) -> Vocabulary:
    """Every character of the (training) transcripts, sorted, after the blank."""
    return Vocabulary([BLANK, *sorted({ch for t in texts for ch in t})], "char")


# --- spoken digit strings ---------------------------------------------------------------------------------------------
@dataclass
class StringSettings:
    """How digit strings are assembled (see :class:`DigitStrings`)."""

    min_digits: int = 3
    max_digits: int = 7
    gap_seconds: tuple[float, float] = (0.05, 0.4)  # silence between two digits, uniform
    edge_seconds: tuple[float, float] = (0.0, 0.3)  # silence before the first and after the last digit, uniform
    gain_db: float = 6.0  # every digit scaled by a random gain in [-gain_db, gain_db] dB
    snr_db: float | None = None  # white noise at this signal-to-noise ratio (None: none)

    def check(self) -> None:
        if not 1 <= self.min_digits <= self.max_digits:
            raise ConfigError(f"data.min_digits and data.max_digits must satisfy 1 <= min <= max, got "
                              f"{self.min_digits}, {self.max_digits}")  # fmt: skip
        for name, (lo, hi) in (("gap_seconds", self.gap_seconds), ("edge_seconds", self.edge_seconds)):
            if not 0 <= lo <= hi:
                raise ConfigError(f"data.{name} must be [low, high] with 0 <= low <= high, got [{lo}, {hi}]")
        if self.gain_db < 0:
            raise ConfigError(f"data.gain_db must be >= 0, got {self.gain_db}")


@dataclass
class StringPlan:
    """One digit string: pool indices of its recordings, their gains, the silences (samples) around them."""

    clips: list[int]
    gains: list[float]
    silences: list[int]  # len(clips) + 1: before, between, after
    noise_seed: int

    def samples(self, pool_lengths: list[int]) -> int:
        return sum(pool_lengths[i] for i in self.clips) + sum(self.silences)


class DigitStrings:
    """Spoken digit strings drawn from ``pool`` (an :class:`AudioSet` of single-digit recordings, labels = digits).

    ``count`` strings per epoch; ``fresh``: new strings every epoch (training), else the same strings always
    (validation, test). ``texts``/``ids``/``wave`` give the current epoch's strings."""

    def __init__(self, pool: AudioSet, count: int, settings: StringSettings, sample_rate: int, seed: int,
                 fresh: bool = False, name: str = "strings"):  # fmt: skip
        if count < 1:
            raise ConfigError(f"{name}: the number of strings must be >= 1, got {count}")
        if not len(pool):
            raise DataError(f"{name}: no recordings to assemble digit strings from")
        self.pool, self.count, self.settings, self.rate = pool, count, settings, sample_rate
        self.seed, self.fresh, self.name = seed, fresh, name
        self.pool_lengths = [len(w) for w in pool.waves]
        by: dict[tuple[str, str], list[int]] = {}
        for i, c in enumerate(pool.clips):
            by.setdefault((c.speaker or "", c.label or ""), []).append(i)
        self.by_speaker_digit = by
        self.speakers = sorted({s for s, _ in by})
        self.by_digit = {d: [i for (s, dd), v in by.items() if dd == d for i in v] for d in DIGITS}
        missing = [d for d in DIGITS if not self.by_digit[d]]
        if missing:
            raise DataError(f"{name}: the recordings hold no clip of digit(s) {', '.join(missing)}")
        self.epoch = -1
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        e = epoch if self.fresh else 0
        if e != self.epoch:
            self.epoch, self.plans = e, self._draw(e)

    def _draw(self, epoch: int) -> list[StringPlan]:
        import numpy as np

        st, r = self.settings, self.rate
        rng = np.random.default_rng([self.seed, epoch])
        plans = []
        for _ in range(self.count):
            n = int(rng.integers(st.min_digits, st.max_digits + 1))
            speaker = self.speakers[int(rng.integers(len(self.speakers)))]
            clips = []
            for d in rng.integers(0, 10, n).tolist():
                choices = self.by_speaker_digit.get((speaker, str(d))) or self.by_digit[str(d)]
                clips.append(choices[int(rng.integers(len(choices)))])
            gains = (10 ** (rng.uniform(-st.gain_db, st.gain_db, n) / 20)).tolist()
            edges = rng.uniform(*st.edge_seconds, 2)
            gaps = rng.uniform(*st.gap_seconds, n - 1)
            silences = [int(edges[0] * r), *(int(g * r) for g in gaps), int(edges[1] * r)]
            plans.append(StringPlan(clips, gains, silences, int(rng.integers(2**31))))
        return plans

    def __len__(self) -> int:
        return self.count

    @property
    def lengths(self) -> torch.Tensor:
        import torch

        return torch.tensor([p.samples(self.pool_lengths) for p in self.plans], dtype=torch.long)

    def text(self, i: int) -> str:
        return " ".join(self.pool.clips[c].label or "" for c in self.plans[i].clips)

    @property
    def texts(self) -> list[str]:
        return [self.text(i) for i in range(self.count)]

    def id(self, i: int) -> str:
        return f"{self.name}-{i:05d}[" + "+".join(self.pool.clips[c].id for c in self.plans[i].clips) + "]"

    def recordings(self) -> set[str]:
        """The ids of every recording the current strings use."""
        return {self.pool.clips[c].id for p in self.plans for c in p.clips}

    def wave(self, i: int) -> torch.Tensor:
        import torch

        p = self.plans[i]
        parts = [torch.zeros(p.silences[0])]
        for k, (c, g) in enumerate(zip(p.clips, p.gains, strict=True)):
            parts += [self.pool.waves[c] * g, torch.zeros(p.silences[k + 1])]
        x = torch.cat(parts)
        if self.settings.snr_db is not None:
            g = torch.Generator().manual_seed(p.noise_seed)
            power = x.pow(2).mean().clamp(min=1e-10)
            x = x + torch.randn(len(x), generator=g) * (power / 10 ** (self.settings.snr_db / 10)).sqrt()
        return x


@dataclass
class Utterances:
    """Transcribed recordings in memory (mono float32 at one rate)."""

    waves: list[Any]
    texts: list[str]
    ids: list[str]
    name: str = "utterances"

    def __len__(self) -> int:
        return len(self.waves)

    def set_epoch(self, epoch: int) -> None:
        return None

    @property
    def lengths(self) -> torch.Tensor:
        import torch

        return torch.tensor([len(w) for w in self.waves], dtype=torch.long)

    def text(self, i: int) -> str:
        return self.texts[i]

    def id(self, i: int) -> str:
        return self.ids[i]

    def wave(self, i: int) -> torch.Tensor:
        return self.waves[i]


# --- batches ---------------------------------------------------------------------------------------------------------
class ASRLoader(AudioLoader):
    """Batches of zero-padded clips and their token ids: ``{"audio" (B, T), "lengths" (B,), "targets" (B, L) (0 as
    padding), "target_lengths" (B,), "index" (B,)}``. Training order buckets similar lengths
    (:class:`deepkit.data.loader.BucketedLoader`), a pure function of (seed, epoch); sets that draw new strings
    every epoch are redrawn in :meth:`set_epoch`."""

    def __init__(self, data: DigitStrings | Utterances, vocab: Vocabulary, batch_size: int, shuffle: bool,
                 seed: int = 0):  # fmt: skip
        from deepkit.data.loader import BucketedLoader

        self.data, self.vocab, self.augment = data, vocab, None
        data.set_epoch(0)
        self.order = BucketedLoader(data.lengths, batch_size, shuffle, bucket=True, seed=seed)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.data.set_epoch(epoch)
        self.order.lengths = self.data.lengths
        self.order.set_epoch(epoch, start_batch)

    def __iter__(self):
        import torch

        from deepkit.data.audio import pad_batch

        device = self.order.device
        batches = self.order.batches()
        for b in range(self.order.start_batch, len(batches)):
            idx = batches[b].tolist()
            audio, lengths = pad_batch([self.data.wave(i) for i in idx])
            labels = [self.vocab.encode(self.data.text(i), self.data.id(i)) for i in idx]
            targets = torch.zeros(len(idx), max(1, max(len(t) for t in labels)), dtype=torch.long)
            for r, t in enumerate(labels):
                targets[r, : len(t)] = torch.tensor(t, dtype=torch.long)
            yield {"audio": audio.to(device), "lengths": lengths.to(device), "targets": targets.to(device),
                   "target_lengths": torch.tensor([len(t) for t in labels]).to(device),
                   "index": torch.tensor(idx).to(device)}  # fmt: skip
        self.order.start_batch = 0


@dataclass
class ASRData(SetsData):
    """Splits of transcribed audio (:class:`DigitStrings` or :class:`Utterances`) at ``sample_rate``."""

    sets: dict[str, Any]
    vocab: Vocabulary
    sample_rate: int
    batch_size: int = 16
    eval_batch_size: int = 32
    notes: list[str] = field(default_factory=list)
    preprocessing: Any = None
    split_rule: str = ""
    checkpoint: Any = None  # the asr family's model.weights (a checkpoint directory being fine-tuned), or None

    def loader(self, name: str, shuffle: bool | None = None, seed: int = 0, drop_last: bool = False) -> ASRLoader:
        if not self.has(name):
            raise DataError(f"this dataset has no '{name}' split")
        train = name == "train"
        return ASRLoader(self.sets[name], self.vocab, self.batch_size if train else self.eval_batch_size,
                         train if shuffle is None else shuffle, seed)  # fmt: skip

"""Audio data: reading WAV/FLAC (soundfile), down-mixing and resampling with a note, padded batches with lengths,
and readers for the usual speech corpus layouts.

* :func:`read_audio` / :class:`AudioReader`: a file as a mono float32 tensor at the wanted rate. A file that is not
  audio, is empty or is shorter than a minimum is a one-line :class:`~deepkit.errors.DataError` naming it; stereo
  input is averaged to mono and other rates are resampled (:class:`deepkit.nn.audio.Resample`), each kind of
  conversion noted once (``reader.notes`` and the ``deepkit.audio`` logger).
* :func:`pad_batch`: waveforms of any lengths -> ``(B, T)`` zero-padded + ``lengths``.
* Readers, each returning :class:`Clip` records (the audio is read later): :func:`read_labelled_folder` (class =
  sub-folder), :func:`read_fsdd` + :func:`fsdd_split` (Free Spoken Digit Dataset, its official split, a
  deterministic validation split, leave-one-speaker-out), :func:`read_librispeech` (``SPK/CHAP/*.flac`` +
  ``SPK-CHAP.trans.txt``), :func:`read_ljspeech` (``metadata.csv`` + ``wavs/``).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepkit.data.module import SetsData
from deepkit.errors import ConfigError, DataError

if TYPE_CHECKING:
    import numpy as np
    import torch

log = logging.getLogger("deepkit.audio")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".au")
FSDD_NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)$")


# --- reading ----------------------------------------------------------------------------------------------------------
def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """``(samples (frames, channels) float32, sample_rate)`` of an audio file; a missing file, or one soundfile cannot
    decode (not audio, truncated), is a one-line :class:`DataError` naming it."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise DataError(f"audio file not found: {path}")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"{path} is not a readable audio file (WAV, FLAC, OGG, MP3, AIFF expected): {reason}") from None
    return data, int(rate)


@dataclass
class AudioReader:
    """Reads files as mono float32 tensors at ``sample_rate`` Hz; the resamplers are built once per source rate.

    Args:
        sample_rate: the rate every clip is brought to.
        min_seconds: a clip shorter than this (after conversion) is an error naming the file and both durations.
        max_seconds: longer clips are cut to this many seconds (None: kept whole); noted once.
        notes: conversions done so far, one line per kind (stereo, each source rate, cuts); also logged.
    """

    sample_rate: int
    min_seconds: float = 0.0
    max_seconds: float | None = None
    notes: list[str] = field(default_factory=list)
    _resamplers: dict[int, Any] = field(default_factory=dict, repr=False)
    _seen: dict[str, int] = field(default_factory=dict, repr=False)

    def _note(self, kind: str, line: str) -> None:
        self._seen[kind] = self._seen.get(kind, 0) + 1
        if self._seen[kind] == 1:
            self.notes.append(line)
            log.info(line)

    def counts(self) -> dict[str, int]:
        """How many clips each kind of conversion touched."""
        return dict(self._seen)

    def __call__(self, path: str | Path) -> torch.Tensor:
        data, rate = read_audio(path)
        return self.convert(data, rate, str(path))

    def convert(self, data: Any, rate: int, name: str = "audio") -> torch.Tensor:
        """``(frames,)`` or ``(frames, channels)`` samples at ``rate`` -> mono ``(T,)`` float32 at ``sample_rate``."""
        import numpy as np
        import torch

        from deepkit.nn.audio import Resample

        x = torch.as_tensor(np.asarray(data, dtype=np.float32))
        if x.ndim == 2 and x.shape[1] == 0 or x.numel() == 0:
            raise DataError(f"{name} is empty (0 samples); expected at least {self.min_seconds:g} s of audio")
        if x.ndim == 2:
            if x.shape[1] > 1:
                self._note("downmix", f"audio: {x.shape[1]}-channel input averaged to mono (first: {name})")
            x = x.mean(1)
        if x.ndim != 1:
            raise DataError(f"{name}: expected (frames,) or (frames, channels) samples, got shape {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise DataError(f"{name} holds NaN or infinite samples")
        if rate != self.sample_rate:
            self._note(f"rate{rate}", f"audio: resampled {rate} Hz -> {self.sample_rate} Hz (windowed sinc; first: "
                                      f"{name})")  # fmt: skip
            if rate not in self._resamplers:
                self._resamplers[rate] = Resample(rate, self.sample_rate)
            with torch.no_grad():
                x = self._resamplers[rate](x)
        seconds = len(x) / self.sample_rate
        if seconds < self.min_seconds:
            raise DataError(f"{name} is too short: {seconds:.3f} s ({len(x)} samples at {self.sample_rate} Hz); "
                            f"expected at least {self.min_seconds:g} s")  # fmt: skip
        if self.max_seconds is not None and seconds > self.max_seconds:
            self._note("cut", f"audio: clips longer than {self.max_seconds:g} s cut to that (first: {name}, "
                              f"{seconds:.2f} s)")  # fmt: skip
            x = x[: int(self.max_seconds * self.sample_rate)]
        return x.contiguous()


def pad_batch(waves: list[torch.Tensor], multiple: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Waveforms (or any ``(T, ...)`` tensors) -> ``(B, T_max, ...)`` zero-padded and ``lengths`` (B,) int64;
    ``T_max`` rounded up to ``multiple``."""
    import torch

    if not waves:
        raise DataError("no clips to batch")
    lengths = torch.tensor([len(w) for w in waves], dtype=torch.long)
    t = int(lengths.max())
    t = -(-t // multiple) * multiple
    out = waves[0].new_zeros((len(waves), t, *waves[0].shape[1:]))
    for i, w in enumerate(waves):
        out[i, : len(w)] = w
    return out, lengths


# --- corpus readers ---------------------------------------------------------------------------------------------------
@dataclass
class Clip:
    """One recording: its file and what is known about it (a class label, a transcript, a speaker)."""

    path: Path
    label: str | None = None
    text: str | None = None
    speaker: str | None = None
    id: str = ""
    index: int | None = None  # FSDD: the take number in the file name


def _folder(root: str | Path, what: str) -> Path:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{what} folder not found: {root} (set DEEPKIT_DATA or data.path)")
    return root


def read_labelled_folder(root: str | Path) -> list[Clip]:
    """Clips under ``root/CLASS/**`` with an audio suffix; the class is the first sub-folder's name."""
    root = _folder(root, "audio")
    clips = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for f in sorted(sub.rglob("*")):
            if f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES:
                clips.append(Clip(f, label=sub.name, id=str(f.relative_to(root))))
    if not clips:
        raise DataError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) in class sub-folders of {root}; expected "
                        "ROOT/CLASS/clip.wav")  # fmt: skip
    if len({c.label for c in clips}) < 2:
        raise DataError(f"{root} has audio in only one class folder ({clips[0].label}); expected at least two")
    return clips


def read_fsdd(root: str | Path) -> list[Clip]:
    """The Free Spoken Digit Dataset's ``{digit}_{speaker}_{index}.wav`` files (label = the digit), in a sorted
    order; a WAV not named that way is an error naming it."""
    root = _folder(root, "FSDD recordings")
    clips = []
    for f in sorted(root.glob("*.wav")):
        m = FSDD_NAME.match(f.stem)
        if not m:
            raise DataError(f"{f} does not follow FSDD's naming {{digit}}_{{speaker}}_{{index}}.wav")
        clips.append(Clip(f, label=m.group(1), speaker=m.group(2), id=f.stem, index=int(m.group(3))))
    if not clips:
        raise DataError(f"no FSDD recordings (*.wav) in {root}")
    return clips


def fsdd_split(
    clips: list[Clip], holdout_speaker: str | None = None, val_per_group: int = 2, seed: int = 0
) -> dict[str, list[Clip]]:
    """FSDD's splits.

    * Official (``holdout_speaker=None``): takes 0-4 of every digit and speaker are the test set, 5-49 the training
      set. Validation: from the training takes, ``val_per_group`` per (speaker, digit), drawn with a generator
      seeded by ``seed`` (2 of 45 per group by default: 120 clips; every speaker and digit equally represented).
    * Leave one speaker out: all of ``holdout_speaker``'s clips are the test set; the other speakers' clips are
      train, with ``val_per_group`` per (speaker, digit) drawn the same way for validation.
    """
    import numpy as np

    speakers = sorted({c.speaker for c in clips if c.speaker})
    if holdout_speaker is not None and holdout_speaker not in speakers:
        raise ConfigError(f"data.holdout_speaker={holdout_speaker!r} is not an FSDD speaker; expected one of "
                          f"{', '.join(speakers)}")  # fmt: skip
    if holdout_speaker is None:
        test = [c for c in clips if c.index is not None and c.index < 5]
        pool = [c for c in clips if c.index is not None and c.index >= 5]
    else:
        test = [c for c in clips if c.speaker == holdout_speaker]
        pool = [c for c in clips if c.speaker != holdout_speaker]
    groups: dict[tuple[str, str], list[int]] = {}
    for i, c in enumerate(pool):
        groups.setdefault((c.speaker or "", c.label or ""), []).append(i)
    rng = np.random.default_rng(seed)
    val_idx: set[int] = set()
    for key in sorted(groups):
        members = groups[key]
        k = min(val_per_group, max(len(members) - 1, 0))
        val_idx.update(members[j] for j in rng.permutation(len(members))[:k].tolist())
    train = [c for i, c in enumerate(pool) if i not in val_idx]
    val = [c for i, c in enumerate(pool) if i in val_idx]
    return {"train": train, "val": val, "test": test}


def read_librispeech(root: str | Path) -> list[Clip]:
    """LibriSpeech's layout under ``root`` (any depth: ``train-clean-5/SPK/CHAP/``): every ``SPK-CHAP.trans.txt``
    line ``ID TRANSCRIPT`` with its ``ID.flac``; a transcript line without its FLAC is an error naming both."""
    root = _folder(root, "LibriSpeech")
    clips = []
    for trans in sorted(root.rglob("*.trans.txt")):
        for n, line in enumerate(trans.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            uid, _, text = line.strip().partition(" ")
            audio = trans.parent / f"{uid}.flac"
            if not audio.is_file():
                raise DataError(f"{trans}:{n}: utterance {uid} has no {audio.name} next to it")
            clips.append(Clip(audio, text=text.strip(), speaker=uid.split("-")[0], id=uid))
    if not clips:
        raise DataError(f"no LibriSpeech transcripts (SPK-CHAP.trans.txt) under {root}")
    return clips


def read_ljspeech(root: str | Path, normalized: bool = True) -> list[Clip]:
    """LJ Speech: ``root/metadata.csv`` lines ``ID|text|normalized text`` and ``root/wavs/ID.wav`` (one speaker,
    ``ljspeech``); ``normalized``: the third column (numbers spelled out), else the second."""
    root = _folder(root, "LJ Speech")
    meta = root / "metadata.csv"
    if not meta.is_file():
        raise DataError(f"LJ Speech metadata not found: {meta}")
    clips = []
    for n, line in enumerate(meta.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.rstrip("\r").split("|")
        if len(parts) < 2:
            raise DataError(f"{meta}:{n}: expected ID|text|normalized text, got {line[:60]!r}")
        text = parts[2] if normalized and len(parts) > 2 and parts[2] else parts[1]
        audio = root / "wavs" / f"{parts[0]}.wav"
        if not audio.is_file():
            raise DataError(f"{meta}:{n}: {parts[0]} has no {audio}")
        clips.append(Clip(audio, text=text, speaker="ljspeech", id=parts[0]))
    if not clips:
        raise DataError(f"{meta} lists no clips")
    return clips


# --- in-memory clips, their loader and the DataModule ----------------------------------------------------------------
@dataclass
class AudioSet:
    """Clips read into memory (mono float32 at one rate) with their integer labels (None: unlabelled)."""

    waves: list[Any]
    labels: Any = None  # (N,) int64 tensor
    clips: list[Clip] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.waves)

    @property
    def lengths(self) -> Any:
        import torch

        return torch.tensor([len(w) for w in self.waves], dtype=torch.long)


@dataclass
class WaveAugment:
    """Waveform augmentation of training batches: a random gain in ``[-gain_db, gain_db]`` dB and a random delay of
    up to ``shift_ms`` ms (zeros put in front), drawn per clip from a generator seeded by (seed, epoch, batch)."""

    gain_db: float = 0.0
    shift_ms: float = 0.0

    def check(self) -> None:
        if self.gain_db < 0 or self.shift_ms < 0:
            raise ConfigError(f"data.augment gain_db and shift_ms must be >= 0, got {self.gain_db}, {self.shift_ms}")

    @property
    def active(self) -> bool:
        return self.gain_db > 0 or self.shift_ms > 0


class AudioLoader:
    """Batches ``{"audio": (B, T), "lengths": (B,), "label": (B,)}`` of zero-padded clips. Training order buckets
    similar lengths together (:class:`deepkit.data.loader.BucketedLoader`); evaluation keeps the set's order."""

    def __init__(
        self, data: AudioSet, batch_size: int, shuffle: bool, seed: int, sample_rate: int,
        augment: WaveAugment | None = None,
    ):  # fmt: skip
        from deepkit.data.loader import BucketedLoader

        self.data, self.sample_rate, self.augment = data, sample_rate, augment
        self.order = BucketedLoader(data.lengths, batch_size, shuffle, bucket=True, seed=seed)

    def __len__(self) -> int:
        return len(self.order)

    @property
    def num_samples(self) -> int:
        return self.order.num_samples

    @property
    def batch_size(self) -> int:
        return self.order.batch_size

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.order.set_epoch(epoch, start_batch)

    def to(self, device: Any) -> AudioLoader:
        self.order.to(device)
        return self

    def _augment(self, waves: list[Any], b: int) -> list[Any]:
        import torch

        a = self.augment
        g = torch.Generator().manual_seed((self.order.seed * 1_000_003 + self.order.epoch) * 100_003 + b)
        out = []
        for w in waves:
            gain = 10 ** ((torch.rand((), generator=g) * 2 - 1) * a.gain_db / 20)
            shift = int(torch.randint(0, int(a.shift_ms * self.sample_rate / 1000) + 1, (), generator=g))
            out.append(torch.cat([w.new_zeros(shift), w * gain]))
        return out

    def __iter__(self):
        batches = self.order.batches()
        device = self.order.device
        for b in range(self.order.start_batch, len(batches)):
            idx = batches[b].tolist()
            waves = [self.data.waves[i] for i in idx]
            if self.augment is not None and self.augment.active:
                waves = self._augment(waves, b)
            audio, lengths = pad_batch(waves)
            batch = {"audio": audio.to(device), "lengths": lengths.to(device)}
            if self.data.labels is not None:
                batch["label"] = self.data.labels[idx].to(device)
            yield batch
        self.order.start_batch = 0


def read_set(clips: list[Clip], reader: AudioReader, class_names: list[str] | None = None) -> AudioSet:
    """Read ``clips`` with ``reader``; labels as indices into ``class_names`` (a label outside them is an error)."""
    import torch

    waves = [reader(c.path) for c in clips]
    labels = None
    if class_names is not None:
        index = {n: i for i, n in enumerate(class_names)}
        missing = sorted({c.label for c in clips if c.label not in index}, key=str)
        if missing:
            raise DataError(f"labels {missing[:5]} are not among the run's classes {class_names}")
        labels = torch.tensor([index[c.label] for c in clips], dtype=torch.long)
    return AudioSet(waves, labels, list(clips))


@dataclass
class AudioData(SetsData):
    """Labelled audio splits (each an :class:`AudioSet` at ``sample_rate``) for classification."""

    sets: dict[str, AudioSet]
    class_names: list[str]
    sample_rate: int
    batch_size: int = 32
    eval_batch_size: int = 64
    augment: WaveAugment | None = None
    notes: list[str] = field(default_factory=list)
    preprocessing: Any = None
    split_rule: str = ""  # how the splits were made, in words

    def loader(self, name: str, shuffle: bool | None = None, seed: int = 0, drop_last: bool = False) -> AudioLoader:
        if not self.has(name):
            raise DataError(f"this dataset has no '{name}' split")
        train = name == "train"
        return AudioLoader(self.sets[name], self.batch_size if train else self.eval_batch_size,
                           train if shuffle is None else shuffle, seed, self.sample_rate,
                           self.augment if train else None)  # fmt: skip

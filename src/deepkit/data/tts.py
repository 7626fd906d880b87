"""Data for spoken-digit synthesis: FSDD clips as (word phonemes, speaker, log-mel frames of the spoken part).

Each FSDD clip is one digit word, so the word's duration is known without an aligner: the clip's frames after
trimming the silence around it (:func:`trim_frames`: frames whose energy is within ``trim_db`` of the loudest).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from deepkit.data.audio import AudioLoader
from deepkit.data.digit_text import phoneme_ids
from deepkit.data.module import SetsData
from deepkit.errors import DataError


def trim_frames(mel_power: torch.Tensor, top_db: float = 30.0, margin: int = 1) -> tuple[int, int]:
    """``(start, stop)`` frames of ``(n_mels, T)`` mel power holding the sound: from the first to the last frame whose
    energy is within ``top_db`` dB of the loudest, widened by ``margin`` frames."""
    energy = 10 * torch.log10(mel_power.sum(0) + 1e-10)
    loud = (energy > energy.max() - top_db).nonzero().flatten()
    start, stop = int(loud[0]) - margin, int(loud[-1]) + 1 + margin
    return max(start, 0), min(stop, mel_power.shape[1])


@dataclass
class WordSet:
    """Spoken words: phoneme ids (lists), speaker ids, digits, log-mel ``(T, n_mels)`` per word, their clips."""

    phonemes: list[list[int]]
    speakers: torch.Tensor
    digits: torch.Tensor
    mels: list[torch.Tensor]
    clips: list[Any] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.mels)

    @property
    def frames(self) -> torch.Tensor:
        return torch.tensor([len(m) for m in self.mels], dtype=torch.long)


def read_words(clips: list[Any], reader: Any, mel: Any, speakers: list[str], trim_db: float, eps: float) -> WordSet:
    """Read FSDD clips into a :class:`WordSet`: log-mel ``log(mel + eps)`` of the trimmed clip."""
    index = {s: i for i, s in enumerate(speakers)}
    phon, spk, dig, mels = [], [], [], []
    with torch.no_grad():
        for c in clips:
            if c.speaker not in index:
                raise DataError(f"{c.path.name}: speaker '{c.speaker}' is not among the run's {', '.join(speakers)}")
            power = mel(reader(c.path)[None])[0]
            a, b = trim_frames(power, trim_db)
            mels.append(torch.log(power[:, a:b] + eps).T.contiguous())
            phon.append(phoneme_ids(int(c.label)))
            spk.append(index[c.speaker])
            dig.append(int(c.label))
    return WordSet(phon, torch.tensor(spk, dtype=torch.long), torch.tensor(dig, dtype=torch.long), mels, list(clips))


class WordLoader(AudioLoader):
    """Batches ``{"phonemes": (B, P) 0-padded, "speaker": (B,), "frames": (B,), "mel": (B, T, n_mels)}``; training
    order buckets similar lengths (:class:`deepkit.data.loader.BucketedLoader`), as the audio clips' loader."""

    def __init__(self, data: WordSet, batch_size: int, shuffle: bool, seed: int):
        from deepkit.data.loader import BucketedLoader

        self.data, self.augment = data, None
        self.order = BucketedLoader(data.frames, batch_size, shuffle, bucket=True, seed=seed)

    def __iter__(self):
        from deepkit.data.audio import pad_batch

        batches, device = self.order.batches(), self.order.device
        for b in range(self.order.start_batch, len(batches)):
            idx = batches[b].tolist()
            phon, _ = pad_batch([torch.tensor(self.data.phonemes[i]) for i in idx])
            mel, frames = pad_batch([self.data.mels[i] for i in idx])
            yield {"phonemes": phon.to(device), "speaker": self.data.speakers[idx].to(device),
                   "frames": frames.to(device), "mel": mel.to(device)}  # fmt: skip
        self.order.start_batch = 0


@dataclass
class WordData(SetsData):
    """Train/val/test :class:`WordSet` splits and what the features were."""

    sets: dict[str, WordSet]
    speakers: list[str]
    sample_rate: int
    features: dict[str, Any]  # n_fft, hop_length, n_mels, f_min, f_max, eps
    batch_size: int = 32
    eval_batch_size: int = 64
    notes: list[str] = field(default_factory=list)
    split_rule: str = ""
    preprocessing: Any = None

    def loader(self, name: str, shuffle: bool | None = None, seed: int = 0, drop_last: bool = False) -> WordLoader:
        if not self.has(name):
            raise DataError(f"this dataset has no '{name}' split")
        train = name == "train"
        return WordLoader(self.sets[name], self.batch_size if train else self.eval_batch_size,
                          train if shuffle is None else shuffle, seed)  # fmt: skip

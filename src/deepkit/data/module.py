"""The one data contract of the Trainer, whatever the family (Lightning's ``LightningDataModule``, reduced).

A :class:`DataModule` offers loaders per split (``loader(split, shuffle, seed)``), says which splits exist and how
many samples they hold, its batch sizes, and the input preprocessing a run saves with its weights. The Trainer,
``deepkit bench`` and the distributed helpers use nothing else. Families build their own subclass and add typed
fields (a tokenizer, class names, series statistics), never a free-form dict:

* :class:`~deepkit.data.build.DataBundle`: in-memory tensors per split (tables, images).
* :class:`LoaderData`: a loader factory per split (token sequences, LM windows, series windows, pairs).

A loader yields batches (a tuple, list or dict of tensors) and has ``__len__``, ``num_samples``,
``set_epoch(epoch, start_batch)`` and ``to(device)``; its order is a pure function of (seed, epoch), so a resumed
run sees the same batches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from deepkit.data.preprocess import Preprocessing
from deepkit.errors import ConfigError, DataError, suggest

SPLITS = ("train", "val", "test")


def check_split(name: str) -> str:
    if name not in SPLITS:
        raise ConfigError(f"unknown split '{name}'{suggest(name, SPLITS)}")
    return name


class DataModule:
    """Base class: subclasses implement :meth:`sizes` and :meth:`loader`.

    ``val`` / ``test`` are truthy when the split exists (the tensor subclass returns the split itself).
    """

    batch_size: int = 64
    eval_batch_size: int = 1024
    preprocessing: Preprocessing
    channels_last: bool = False  # the data asks for NHWC conv weights (data.channels_last): the speed plan honours it
    notes: list[str]  # lines for the run's log (vocabulary coverage, truncated texts, ...)

    def sizes(self) -> dict[str, int]:  # pragma: no cover - abstract
        """Samples (sequences, windows, examples) per existing split."""
        raise NotImplementedError

    def loader(self, name: str, shuffle: bool | None = None, seed: int = 0, drop_last: bool = False) -> Any:
        raise NotImplementedError  # pragma: no cover - abstract

    def has(self, name: str) -> bool:
        return bool(self.sizes().get(check_split(name)))

    def first_split(self, *names: str) -> str:
        """The first of ``names`` that exists (e.g. test, then val, then train)."""
        for name in names:
            if self.has(name):
                return name
        raise DataError(f"the data has none of the splits {', '.join(names)}")

    @property
    def counts_tokens(self) -> bool:
        """Whether :meth:`count_tokens` counts anything (text data)."""
        return False

    def count_tokens(self, batch: Any) -> Any:
        """Real (non-padding) tokens of a batch for tokens/s figures; None for data that is not text."""
        return None


class SetsData(DataModule):
    """A DataModule whose splits are sized collections in ``self.sets`` (split name -> a set of samples), each
    served by ``loader`` (detection, segmentation). Subclasses are dataclasses with a ``sets`` field."""

    train = property(lambda self: True if self.sets.get("train") else None)
    val = property(lambda self: True if self.sets.get("val") else None)
    test = property(lambda self: True if self.sets.get("test") else None)

    def sizes(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.sets.items() if len(v)}

    def without(self, name: str) -> SetsData:
        """A copy without split ``name`` (a benchmark does not validate)."""
        import dataclasses

        return dataclasses.replace(self, sets={k: v for k, v in self.sets.items() if k != name})


class IndexedLoader:
    """Base of loaders over samples ``0 .. num_samples - 1``: batches per epoch, the position to resume from, the
    device, and an order that is a pure function of (seed, epoch). Subclasses call :meth:`start` in ``__init__``,
    define ``num_samples`` and iterate ``order()[start_batch * batch_size:]`` in ``__iter__``."""

    batch_size: int
    shuffle: bool
    seed: int

    def start(self, batch_size: int, shuffle: bool, seed: int) -> None:
        import torch

        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.epoch = self.start_batch = 0
        self.device = torch.device("cpu")

    @property
    def num_samples(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def __len__(self) -> int:
        return -(-self.num_samples // self.batch_size)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def to(self, device: Any) -> IndexedLoader:
        import torch

        self.device = torch.device(device)
        return self

    def order(self) -> list[int]:
        import torch

        n = self.num_samples
        if not self.shuffle:
            return list(range(n))
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(n, generator=g).tolist()


@dataclass
class LoaderData(DataModule):
    """Splits as loader factories: ``make_loader(split, shuffle, seed)`` builds the loader of one split."""

    make_loader: Callable[[str, bool, int], Any]
    splits: dict[str, int]  # split name -> number of samples
    batch_size: int = 64
    eval_batch_size: int = 1024
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    notes: list[str] = field(default_factory=list)

    train = property(lambda self: True if self.splits.get("train") else None)
    val = property(lambda self: True if self.splits.get("val") else None)
    test = property(lambda self: True if self.splits.get("test") else None)

    def sizes(self) -> dict[str, int]:
        return {k: v for k, v in self.splits.items() if v}

    def split(self, name: str) -> bool | None:
        return True if self.has(name) else None

    def loader(self, name: str, shuffle: bool | None = None, seed: int = 0, drop_last: bool = False) -> Any:
        if not self.has(name):
            raise DataError(f"this dataset has no '{name}' split")
        return self.make_loader(name, name == "train" if shuffle is None else shuffle, seed)

    def without(self, name: str) -> LoaderData:
        """A copy without split ``name`` (a benchmark does not validate)."""
        import dataclasses

        return dataclasses.replace(self, splits={k: v for k, v in self.splits.items() if k != name})

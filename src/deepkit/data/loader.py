"""In-memory batching by index: no per-sample Python, no worker processes, exact resume mid-epoch.

For datasets that fit in memory (digits, MNIST, tables) this is several times faster than a DataLoader over a
TensorDataset, which collates samples one by one. The shuffle order is a pure function of (seed, epoch), so a
resumed run sees exactly the batches the interrupted run would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch


class TensorLoader:
    """Yield ``(x[idx], y[idx])`` batches from tensors held on one device.

    Args:
        x, y: tensors with the same first dimension.
        batch_size: samples per batch.
        shuffle: reshuffle every epoch (order from ``seed`` and the epoch number).
        drop_last: drop a final incomplete batch.
        seed: base seed of the shuffle order.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
    ):
        assert len(x) == len(y), "x and y must have the same length"
        self.x, self.y = x, y
        self.batch_size, self.shuffle, self.drop_last, self.seed = batch_size, shuffle, drop_last, seed
        self.epoch = 0
        self.start_batch = 0

    def __len__(self) -> int:
        n = len(self.x)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def num_samples(self) -> int:
        return len(self.x)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch's shuffle order and the batch to start from (for resuming mid-epoch)."""
        self.epoch, self.start_batch = epoch, start_batch

    def to(self, device: torch.device | str) -> TensorLoader:
        self.x, self.y = self.x.to(device), self.y.to(device)
        return self

    def _order(self) -> torch.Tensor | None:
        if not self.shuffle:
            return None
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(len(self.x), generator=g).to(self.x.device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self._order()
        bs = self.batch_size
        for b in range(self.start_batch, len(self)):
            if order is None:
                yield self.x[b * bs : (b + 1) * bs], self.y[b * bs : (b + 1) * bs]
            else:
                idx = order[b * bs : (b + 1) * bs]
                yield self.x[idx], self.y[idx]
        self.start_batch = 0


class BucketedLoader:
    """Base of the loaders of variable-length examples (token sequences, sentence pairs, QA/tagging examples).

    Holds each example's ``lengths`` and decides the batches; subclasses turn a batch of indices into tensors in
    ``__iter__``. The order is a pure function of (seed, epoch), so a resumed run sees the same batches. Training
    order with ``bucket``: shuffle, sort within chunks of ``50 * batch_size`` by length, cut into batches, shuffle
    the batches, so each batch holds similar lengths (little padding) while the epoch stays random.
    """

    def __init__(
        self, lengths: torch.Tensor, batch_size: int, shuffle: bool = False, bucket: bool = True, seed: int = 0
    ):
        self.lengths = lengths.long()
        self.batch_size, self.shuffle, self.bucket, self.seed = batch_size, shuffle, bucket, seed
        self.epoch = self.start_batch = 0
        self.device = torch.device("cpu")

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    @property
    def num_samples(self) -> int:
        return len(self.lengths)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch's order and the batch to start from (for resuming mid-epoch)."""
        self.epoch, self.start_batch = epoch, start_batch

    def to(self, device: torch.device | str):
        """Batches are built on the CPU and moved to ``device`` as they are yielded."""
        self.device = torch.device(device)
        return self

    def batches(self) -> list[torch.Tensor]:
        """Sample indices of every batch of the current epoch, in order."""
        n, bs = len(self.lengths), self.batch_size
        if not self.shuffle:
            return list(torch.arange(n).split(bs))
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(n, generator=g)
        if not self.bucket:
            return list(order.split(bs))
        chunks = []
        for chunk in order.split(bs * 50):
            chunks += list(chunk[torch.argsort(self.lengths[chunk], stable=True)].split(bs))
        return [chunks[i] for i in torch.randperm(len(chunks), generator=g).tolist()]

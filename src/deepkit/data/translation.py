"""Parallel text for sequence-to-sequence models: sentence pairs -> padded source / target batches.

Targets are wrapped as ``<bos> y <eos>``; the decoder reads ``tgt_in = <bos> y`` and predicts ``target = y <eos>``
(padding positions of ``target`` are -100, which the loss skips). Batches are bucketed by source length.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from deepkit.data.loader import BucketedLoader
from deepkit.errors import DataError

IGNORE = -100


class PairLoader(BucketedLoader):
    """Yields ``{"src": (B, S), "src_lengths": (B,), "tgt_in": (B, T), "target": (B, T)}``.

    The order is a pure function of (seed, epoch), as in :class:`~deepkit.data.text.SequenceLoader`.
    """

    def __init__(
        self,
        src: Sequence[Sequence[int]],
        tgt: Sequence[Sequence[int]],
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        pad_id: int = 0,
        bos_id: int = 2,
        eos_id: int = 3,
    ):
        if len(src) != len(tgt):
            raise DataError(f"{len(src)} source sentences but {len(tgt)} targets; the files must be line-aligned")
        if any(len(s) == 0 for s in src):
            raise DataError("a source sentence is empty; drop empty lines from both sides")
        self.src, self.tgt = [list(s) for s in src], [list(t) for t in tgt]
        super().__init__(torch.tensor([len(s) for s in src]), batch_size, shuffle, bucket=True, seed=seed)
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id

    def collate(self, idx: list[int]) -> dict[str, torch.Tensor]:
        srcs = [self.src[i] for i in idx]
        tgts = [self.tgt[i] for i in idx]
        s_len = torch.tensor([len(s) for s in srcs])
        src = torch.full((len(idx), int(s_len.max())), self.pad_id, dtype=torch.long)
        t_max = max(len(t) for t in tgts) + 1
        tgt_in = torch.full((len(idx), t_max), self.pad_id, dtype=torch.long)
        target = torch.full((len(idx), t_max), IGNORE, dtype=torch.long)
        for r, (s, t) in enumerate(zip(srcs, tgts, strict=True)):
            src[r, : len(s)] = torch.tensor(s)
            tgt_in[r, : len(t) + 1] = torch.tensor([self.bos_id, *t])
            target[r, : len(t) + 1] = torch.tensor([*t, self.eos_id])
        return {
            "src": src.to(self.device),
            "src_lengths": s_len,
            "tgt_in": tgt_in.to(self.device),
            "target": target.to(self.device),
        }

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for idx in self.batches()[self.start_batch :]:
            yield self.collate(idx.tolist())
        self.start_batch = 0

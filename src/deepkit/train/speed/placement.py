"""Where the data lives: whole splits on the device (batched by index there), or host batches copied through
pinned memory one batch ahead (:class:`DeviceCopyLoader`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from deepkit.train.speed.plan import SpeedPlan


def unwrap_loader(loader: Any) -> Any:
    """The loader under any wrappers that keep it as ``.loader``."""
    while "loader" in vars(loader):  # DeviceCopyLoader, bench's token counter
        loader = loader.loader
    return loader


def loader_bytes(loader: Any) -> int:
    """Bytes of the tensors a loader holds (its attributes, and lists of tensors), e.g. TensorLoader's x and y."""
    loader = unwrap_loader(loader)
    total, seen = 0, set()
    for value in vars(loader).values():
        items = value if isinstance(value, list | tuple) else [value]
        for t in items:
            if isinstance(t, torch.Tensor) and id(t) not in seen:
                seen.add(id(t))
                total += t.numel() * t.element_size()
    return total


def holds_data_on_device(loader: Any) -> bool:
    """Loaders whose ``to(device)`` moves the whole split and gather batches by index there (no host collation)."""
    from deepkit.data.loader import TensorLoader
    from deepkit.data.text import LMWindowLoader

    return isinstance(unwrap_loader(loader), TensorLoader | LMWindowLoader)


def place_loader(loader: Any, device: torch.device, plan: SpeedPlan) -> Any:
    """Move a loader to the device (whole split), or wrap it to copy batches there through pinned memory."""
    if device.type != "cuda" or plan.on("device_data"):
        return loader.to(device)
    return DeviceCopyLoader(loader, device, pin=plan.on("pin_memory"))


HOST_KEYS = ("lengths", "src_lengths")  # pack_padded_sequence wants sequence lengths on the CPU


class DeviceCopyLoader:
    """Wrap a host-side loader: each batch is pinned, copied with ``non_blocking=True`` one batch ahead.

    The copy of batch ``i + 1`` is queued before batch ``i`` is handed to the step, so it overlaps the compute.
    Pinned blocks come from torch's caching host allocator, which keeps a block until its copy has finished.
    """

    def __init__(self, loader: Any, device: torch.device, pin: bool = True):
        self.loader, self.device, self.pin = loader, torch.device(device), pin

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str) -> Any:  # num_samples, set_epoch, batch_size, ... of the wrapped loader
        if name == "loader":  # not set yet (copy/pickle): no endless recursion
            raise AttributeError(name)
        return getattr(self.loader, name)

    def to(self, device: torch.device | str) -> DeviceCopyLoader:
        self.device = torch.device(device)
        return self

    def _copy(self, t: Any, key: str | None = None) -> Any:
        if not isinstance(t, torch.Tensor) or key in HOST_KEYS or t.device == self.device:
            return t
        if self.pin and t.device.type == "cpu":
            t = t.pin_memory()
        return t.to(self.device, non_blocking=self.pin)

    def copy(self, batch: Any) -> Any:
        if isinstance(batch, dict):
            return {k: self._copy(v, k) for k, v in batch.items()}
        return type(batch)(self._copy(v) for v in batch)

    def __iter__(self) -> Iterator[Any]:
        it = iter(self.loader)
        nxt = next(it, None)
        ahead = self.copy(nxt) if nxt is not None else None
        while ahead is not None:
            current = ahead
            nxt = next(it, None)
            ahead = self.copy(nxt) if nxt is not None else None
            yield current

"""Dynamic batching: requests that arrive within ``max_wait_ms`` of each other run as one batch of up to
``max_batch`` samples (LitServe's and Triton's dynamic batcher; TorchServe's ``batch_size``/``max_batch_delay``).

One asyncio task collects the queue; the model runs in a worker thread so the event loop keeps accepting requests
while a batch computes. A request with more samples than ``max_batch`` runs as its own batch.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import numpy as np

from deepkit.serve.backends import Backend


@dataclass
class _Item:
    inputs: dict[str, np.ndarray]
    n: int
    future: asyncio.Future = field(repr=False)


@dataclass
class BatchStats:
    """Counts since start: requests, samples, model calls (batches), the largest batch."""

    requests: int = 0
    samples: int = 0
    batches: int = 0
    largest: int = 0


class Batcher:
    """``await batcher.submit(inputs)`` -> the outputs of those samples, computed with whatever else is waiting."""

    def __init__(self, backend: Backend, max_batch: int = 32, max_wait_ms: float = 5.0):
        self.backend, self.max_batch, self.max_wait = backend, max(1, max_batch), max(0.0, max_wait_ms) / 1000
        self.stats = BatchStats()
        self._queue: asyncio.Queue[_Item] | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None

    async def submit(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._queue is None:
            raise RuntimeError("the batcher is not started (the app's lifespan starts it)")
        n = len(next(iter(inputs.values())))
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Item(inputs, n, future))
        return await future

    async def _loop(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        pending: _Item | None = None
        while True:
            first = pending or await self._queue.get()
            pending = None
            items, n = [first], first.n
            deadline = loop.time() + self.max_wait
            while n < self.max_batch:
                left = deadline - loop.time()
                try:
                    item = self._queue.get_nowait() if left <= 0 else await asyncio.wait_for(self._queue.get(), left)
                except (asyncio.QueueEmpty, asyncio.TimeoutError):
                    break
                if n + item.n > self.max_batch:
                    pending = item  # starts the next batch
                    break
                items.append(item)
                n += item.n
            await self._run(items, n)

    async def _run(self, items: list[_Item], n: int) -> None:
        names = list(items[0].inputs)
        batch = {k: np.concatenate([it.inputs[k] for it in items]) for k in names}
        try:
            out = await asyncio.to_thread(run_in_chunks, self.backend, batch)
        except Exception as e:  # noqa: BLE001 - every waiting request gets the model's failure
            for it in items:
                if not it.future.done():
                    it.future.set_exception(e)
            return
        s = self.stats
        s.requests, s.samples, s.batches, s.largest = (
            s.requests + len(items),
            s.samples + n,
            s.batches + 1,
            max(s.largest, n),
        )
        start = 0
        for it in items:
            if not it.future.done():
                it.future.set_result({k: v[start : start + it.n] for k, v in out.items()})
            start += it.n


def run_in_chunks(backend: Backend, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run ``batch``; a model exported for one batch size B gets chunks of B (the last padded by repeating its
    final sample, the padding's outputs dropped)."""
    b = backend.fixed_batch
    n = len(next(iter(batch.values())))
    if b is None or n == b:
        return backend.run(batch)
    outs: list[dict[str, np.ndarray]] = []
    for i in range(0, n, b):
        chunk = {k: v[i : i + b] for k, v in batch.items()}
        m = len(next(iter(chunk.values())))
        if m < b:
            chunk = {k: np.concatenate([v, np.repeat(v[-1:], b - m, axis=0)]) for k, v in chunk.items()}
        outs.append({k: v[:m] for k, v in backend.run(chunk).items()})
    return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}

"""Distributed training helpers the Trainer calls: process group, sharded batches, DDP / FSDP2, reductions.

Launch N processes with ``deepkit train RECIPE --nproc N`` (torch's elastic launcher, :func:`launch`) or with
``torchrun --nproc_per_node N -m deepkit train RECIPE``; every process runs the same command and joins the process
group that the ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``MASTER_ADDR``/``MASTER_PORT`` variables describe
(gloo on CPU, NCCL on CUDA).

How N processes reproduce one process with the same (global) batch:

- ``data.batch_size`` is the GLOBAL batch. Every rank builds the same global batch (the shuffle order is a pure
  function of (seed, epoch)) and keeps its contiguous share, ``batch_size / world_size`` samples
  (:class:`ShardedLoader`).
- DDP averages gradients over ranks; each rank scales its loss by ``local_n * world / global_n`` so the average is
  the gradient of the global-batch mean even for a short last batch (a rank with no sample of it runs one sample
  with weight 0, which keeps the collectives in step).
- Logged sums and sample counts are all-reduced at log intervals and epoch ends; validation is sharded the same way
  and its torchmetrics states are synchronized by torchmetrics itself (``Metric.compute`` all-gathers whenever a
  process group exists).
- Only rank 0 prints, writes ``metrics.csv``/``log.txt``/plots and checkpoints; checkpoints hold plain (unwrapped,
  unsharded) weights and optimizer state, so a checkpoint written by N processes loads in one and vice versa.

Exactness holds for losses that are means over samples; BatchNorm statistics are per rank (as in any DDP run) and
buffers are taken from rank 0.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import nn

from deepkit.errors import ConfigError

FSDP_MIN_PARAMS = 1_000_000  # sub-modules with at least this many parameters become their own FSDP2 unit


def check_global_batch(batch_size: int | None, world_size: int) -> None:
    """``data.batch_size`` is the global batch: it must split evenly over the processes."""
    if batch_size is not None and world_size > 1 and batch_size % world_size:
        raise ConfigError(
            f"data.batch_size={batch_size} is the global batch and must divide evenly over {world_size} processes "
            f"({batch_size} % {world_size} = {batch_size % world_size}); use a multiple of {world_size}"
        )


def env_world_size() -> int:
    """Processes in the job as torchrun describes it (1 when not launched by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def env_rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    """True on rank 0 (and in a plain single-process run)."""
    return (dist.get_rank() if dist.is_available() and dist.is_initialized() else env_rank()) == 0


@dataclass
class DistributedContext:
    """This process's place in the job and the helpers that depend on it."""

    rank: int
    world_size: int
    local_rank: int
    strategy: Literal["ddp", "fsdp"]
    device: torch.device
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # --- data ----------------------------------------------------------------------------------------------------
    def shard(self, loader: Any, pad: bool) -> ShardedLoader:
        """This rank's share of each global batch; ``pad``: an empty share becomes one weight-0 sample (training)."""
        if pad:
            check_global_batch(getattr(loader, "batch_size", None), self.world_size)
        return ShardedLoader(loader, self.rank, self.world_size, pad)

    # --- model ---------------------------------------------------------------------------------------------------
    def prepare(self, model: nn.Module) -> nn.Module:
        """DDP: a wrapper around ``model``; FSDP2: ``model`` sharded in place (build the optimizer afterwards)."""
        if self.strategy == "fsdp":
            from torch.distributed.fsdp import fully_shard

            for t in [*model.parameters(), *model.buffers()]:  # fully_shard keeps each rank's own values: align them
                dist.broadcast(t.data, src=0)
            taken: set[int] = set()  # ids of parameters already inside a unit
            for m in reversed(list(model.modules())):  # children before parents
                own = [p for p in m.parameters() if id(p) not in taken]
                if m is not model and sum(p.numel() for p in own) >= FSDP_MIN_PARAMS:
                    fully_shard(m)
                    taken.update(id(p) for p in m.parameters())  # fully_shard swapped in new (DTensor) parameters
            fully_shard(model)
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        # forward_sync_buffers=False: no collective in forward (rank-0-only callbacks may run the model); buffers are
        # broadcast from rank 0 before each evaluation instead (eval_mode).
        return DistributedDataParallel(model, device_ids=ids, forward_sync_buffers=False)

    def set_grad_sync(self, model: nn.Module, enabled: bool) -> None:
        """Turn the gradient all-reduce off for micro-batches that only accumulate (trainer.accumulate > 1).

        Set before the forward: DDP decides in forward whether the backward reduces, FSDP2 in the backward.
        """
        model = getattr(model, "_orig_mod", model)  # under torch.compile
        if self.strategy == "ddp":
            model.require_backward_grad_sync = enabled  # what DistributedDataParallel.no_sync() toggles
        else:
            for u in _fsdp_units(model):
                u.set_requires_gradient_sync(enabled)

    @contextlib.contextmanager
    def eval_mode(self, task: Any) -> Iterator[None]:
        """Evaluation and epoch-end callbacks without per-forward collectives, so ranks may run different batches.

        DDP: rank 0's buffers (BatchNorm statistics) are broadcast, and ``task.model`` is the plain module meanwhile.
        FSDP2: every unit gathers its full parameters once and keeps them until the end of the block.
        """
        model = task.model
        if self.strategy == "ddp":
            inner = getattr(model, "module", model)
            for b in inner.buffers():
                dist.broadcast(b.data, src=0)
            task.model = inner
            try:
                yield
            finally:
                task.model = model
            return
        units = _fsdp_units(model)
        for u in units:
            u.set_reshard_after_forward(False)
            u.unshard()
        try:
            yield
        finally:
            for u in units:
                u.reshard()
                u.set_reshard_after_forward(True)

    # --- reductions ----------------------------------------------------------------------------------------------
    def reduce_sums(self, sums: dict[str, torch.Tensor], count: int) -> tuple[dict[str, torch.Tensor], int]:
        """Sum per-rank running sums and sample counts over ranks: one all-reduce of one packed tensor."""
        keys = list(sums)  # same order on every rank: the same task logs the same keys
        head = torch.tensor(float(count), dtype=torch.float64, device=self.device)
        packed = torch.stack([head] + [sums[k].double() for k in keys])  # float64: exact counts
        dist.all_reduce(packed)
        return {k: packed[i + 1] for i, k in enumerate(keys)}, int(round(float(packed[0])))

    def all_sum(self, *values: float) -> list[float]:
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def barrier(self) -> None:
        dist.barrier()

    # --- checkpoints ---------------------------------------------------------------------------------------------
    def full_state(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, Any]:
        """Plain weights and an optimizer whose ``state_dict()`` is the one-process layout (collective with FSDP2).

        Non-zero ranks of an FSDP2 job get empty dicts (only rank 0 writes).
        """
        model = getattr(model, "_orig_mod", model)  # under torch.compile
        if self.strategy == "ddp":
            return getattr(model, "module", model).state_dict(), optimizer
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_model_state_dict,
            get_optimizer_state_dict,
        )

        opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
        weights = get_model_state_dict(model, options=opts)
        optim = get_optimizer_state_dict(model, optimizer, options=opts)
        return weights, _StateView(_fqn_to_ids(optim, _param_names(model, optimizer)) if self.is_main else {})

    def load_full_state(self, model: nn.Module, optimizer: torch.optim.Optimizer | None, weights: dict, optim: dict):
        """FSDP2: load plain weights / one-process optimizer state into the sharded model and its optimizer."""
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
            set_optimizer_state_dict,
        )

        opts = StateDictOptions(full_state_dict=True)
        set_model_state_dict(model, weights, options=opts)
        if optimizer is not None:
            for group, saved in zip(optimizer.param_groups, optim["param_groups"], strict=True):
                # keys the schedule added (initial_lr): torch's loader maps only keys the live groups already have
                group.update({k: v for k, v in saved.items() if k not in group and k != "params"})
            fqn = _ids_to_fqn(optim, _param_names(model, optimizer))
            set_optimizer_state_dict(model, optimizer, fqn, options=opts)


class ShardedLoader:
    """This rank's contiguous share of every global batch of ``loader`` (any loader of tuple/list/dict batches).

    After each batch, ``local_n`` (samples of this rank that count), ``global_n`` and ``weight``
    (``local_n * world / global_n``: the loss scale that makes the DDP gradient average the global-batch mean) say
    what was yielded.
    """

    def __init__(self, loader: Any, rank: int, world_size: int, pad: bool):
        self.loader, self.rank, self.world_size, self.pad = loader, rank, world_size, pad
        self.local_n, self.global_n, self.weight = 0, 0, 1.0

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str) -> Any:  # batch_size, num_samples, set_epoch, ... of the wrapped loader
        if name == "loader":
            raise AttributeError(name)
        return getattr(self.loader, name)

    def to(self, device: torch.device | str) -> ShardedLoader:
        self.loader = self.loader.to(device)
        return self

    def __iter__(self) -> Iterator[Any]:
        for batch in self.loader:
            n = _batch_len(batch)
            # same split as torch.tensor_split: the first n % world ranks get one sample more
            base, extra = divmod(n, self.world_size)
            lo = self.rank * base + min(self.rank, extra)
            hi = lo + base + (self.rank < extra)
            self.global_n, self.local_n = n, hi - lo
            if hi == lo:
                if not self.pad:
                    continue  # evaluation: nothing to do on this rank (no per-forward collectives there)
                lo, hi = 0, 1  # one stand-in sample with weight 0 keeps DDP/FSDP collectives in step
            self.weight = self.local_n * self.world_size / n
            yield _slice_batch(batch, lo, hi, n)


def _batch_len(batch: Any) -> int:
    first = next(iter(batch.values())) if isinstance(batch, dict) else batch[0]
    return len(first)


def _slice_batch(batch: Any, lo: int, hi: int, n: int) -> Any:
    def cut(v):
        return v[lo:hi] if isinstance(v, torch.Tensor) and v.ndim and v.shape[0] == n else v

    if isinstance(batch, dict):
        return {k: cut(v) for k, v in batch.items()}
    return type(batch)(cut(v) for v in batch)


class _StateView:
    """Stands in for an optimizer in ``checkpoint.save_checkpoint`` (which calls ``state_dict()``)."""

    def __init__(self, state: dict):
        self.state = state

    def state_dict(self) -> dict:
        return self.state


def _param_names(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """Parameter names in the optimizer's order (the integer ids of ``optimizer.state_dict()``)."""
    names = {id(p): n for n, p in model.named_parameters()}
    return [names[id(p)] for g in optimizer.param_groups for p in g["params"]]


def _fqn_to_ids(sd: dict, names: list[str]) -> dict:
    index = {n: i for i, n in enumerate(names)}
    groups = [{**g, "params": [index[p] for p in g["params"]]} for g in sd["param_groups"]]
    return {"state": {index[k]: v for k, v in sd["state"].items()}, "param_groups": groups}


def _ids_to_fqn(sd: dict, names: list[str]) -> dict:
    groups = [{**g, "params": [names[i] for i in g["params"]]} for g in sd["param_groups"]]
    return {"state": {names[int(i)]: v for i, v in sd["state"].items()}, "param_groups": groups}


def _fsdp_units(model: nn.Module) -> list[nn.Module]:
    from torch.distributed.fsdp import FSDPModule

    return [m for m in model.modules() if isinstance(m, FSDPModule)]


def plain(t: torch.Tensor) -> torch.Tensor:
    """A reduction over FSDP2-sharded parameters (a DTensor, e.g. an L2 penalty) as an ordinary tensor."""
    from torch.distributed.tensor import DTensor

    return t.full_tensor() if isinstance(t, DTensor) else t


# --- process group -------------------------------------------------------------------------------------------------
def setup(strategy: str, device: torch.device) -> DistributedContext | None:
    """Join (or reuse) the process group described by torchrun's environment; None for a single process.

    Args:
        strategy: ``auto`` (DDP when launched with several processes), ``none``, ``ddp`` or ``fsdp``.
        device: the resolved device; on CUDA each process takes ``cuda:LOCAL_RANK`` and the NCCL backend.
    """
    if strategy not in ("auto", "none", "ddp", "fsdp"):
        raise ConfigError(f"trainer.strategy: unknown strategy '{strategy}' (expected auto, none, ddp or fsdp)")
    world = dist.get_world_size() if dist.is_initialized() else env_world_size()
    if world <= 1:
        return None
    if strategy == "none":
        raise ConfigError(
            f"trainer.strategy=none, but {world} processes were launched (WORLD_SIZE={world}); "
            "use strategy auto, ddp or fsdp, or launch one process"
        )
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
    return DistributedContext(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=local_rank,
        strategy="fsdp" if strategy == "fsdp" else "ddp",
        device=device,
        backend=dist.get_backend(),
    )


def teardown() -> None:
    """Leave the process group (safe to call when there is none)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (identity without a process group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# --- launcher ------------------------------------------------------------------------------------------------------
def default_threads(nproc: int) -> int:
    """Intra-op threads per process when N processes share this machine: max(1, cores // N)."""
    return max(1, (os.cpu_count() or 1) // nproc)


def launch(nproc: int, args: list[str]) -> None:
    """Run ``python -m deepkit ARGS`` in ``nproc`` local processes with torch's elastic launcher (like torchrun).

    Each process gets ``OMP_NUM_THREADS=max(1, cores // nproc)`` unless the variable is already set. Raises
    ``SystemExit`` with the failing process's exit code (that process has printed its one-line error).
    """
    import sys

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if nproc < 1:
        raise ConfigError(f"--nproc must be >= 1, got {nproc}")
    # the failing process has printed its one-line error; the agent's own report of it would only repeat it
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    os.environ.setdefault("OMP_NUM_THREADS", str(default_threads(nproc)))
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=str(uuid.uuid4()),
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",  # a free port on this machine, like torchrun --standalone
        max_restarts=0,
        monitor_interval=0.1,
        start_method="spawn",
    )
    try:
        elastic_launch(config, sys.executable)("-m", "deepkit", *args)
    except ChildFailedError as e:
        raise SystemExit(_exit_code(e.failures)) from None


def _exit_code(failures: dict) -> int:
    """The launcher's exit code: rank 0's (the process that printed the error), else the first positive one, else 1.

    A rank killed by a signal reports a negative code; it must not hide rank 0's user-error code 2.
    """
    codes = [failures[rank].exitcode for rank in sorted(failures)]
    positive = [c for c in codes if c is not None and c > 0]
    return positive[0] if positive else 1

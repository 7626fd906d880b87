"""The fast path: which speed switches a run uses, decided once per ``fit``, each with its reason.

``plan_speed`` turns the recipe's ``trainer.speed`` section (plus ``trainer.precision`` and ``trainer.compile``)
into a :class:`SpeedPlan`: a list of decisions ``(name, applied, reason)``. Every switch defaults to ``auto``,
resolved by the rules below from the device, the model, the data loader and the planned number of steps, so the
decision logic is a pure function that tests can drive with a mocked :class:`DeviceInfo` (an H100) on a CPU.
``deepkit train RECIPE --explain-speed`` prints the plan; every run writes it into ``log.txt``.

CPU figures behind the ``auto`` rules (this repository's 2-core AMD EPYC machine with avx512_bf16, torch 2.13,
measured with ``benchmarks/fastpath_cpu.py`` and ``deepkit bench``; benchmarks/RESULTS.md, 2026-11-21) are in
``CPU_MEASURED``: channels_last and the fused Adam/AdamW/SGD pay; torch.compile does not; bf16 autocast is faster
but stays opt-in on CPUs because it changes the numbers every recipe was validated with.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import resource
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from deepkit.errors import ConfigError

# Measured on the 2-core CPU (see the module docstring): what each switch did to mnist_cnn's training step.
CPU_MEASURED = {
    "bf16": "measured 1.47x faster on mnist_cnn on this 2-core CPU (avx512_bf16), but off on CPUs: bf16 rounding "
    "would change every recipe's validated figures (trainer.precision=bf16 opts in)",
    "channels_last": "measured on this 2-core CPU (oneDNN NHWC kernels): steps 1.39x faster for mnist_cnn, "
    "1.16x resnet20, 1.13x lenet5, 1.07x digits_cnn",
    "compile": "measured on this 2-core CPU: 12 s to compile mnist_cnn for a 1.06x faster step, repaid only "
    "after ~6,100 steps (trainer.compile=true opts in)",
    "fused": "measured on this 2-core CPU: one AdamW step over 818k parameters (char GPT) takes 0.87 ms fused vs "
    "5.2 ms with torch's CPU default (a loop over tensors) and 4.4 ms foreach; same weights to fp tolerance",
}

# Dense bf16 / TF32 / fp32 peak TFLOP/s of common accelerators (vendor data sheets, SXM unless named), for MFU.
PEAK_TFLOPS: dict[str, dict[str, float]] = {
    "H200": {"bf16": 989.0, "tf32": 494.0, "fp32": 67.0},
    "H100 PCIe": {"bf16": 756.0, "tf32": 378.0, "fp32": 51.0},
    "H100 NVL": {"bf16": 835.0, "tf32": 418.0, "fp32": 60.0},
    "H100": {"bf16": 989.0, "tf32": 494.0, "fp32": 67.0},
    "A100": {"bf16": 312.0, "tf32": 156.0, "fp32": 19.5},
    "L4": {"bf16": 121.0, "tf32": 60.0, "fp32": 30.3},
    "A10G": {"bf16": 70.0, "tf32": 35.0, "fp32": 31.2},
}

AutoBool = bool | Literal["auto"]


@dataclass
class SpeedConfig:
    """``trainer.speed``: the fast-path switches. ``auto`` = decided per run by :func:`plan_speed` (with a reason)."""

    fast: bool = True  # false: every `auto` resolves to off (a plain fp32 eager loop, for comparisons)
    device_data: AutoBool = "auto"  # hold whole in-memory splits on the GPU and batch by index (if they fit)
    device_data_fraction: float = 0.25  # ... when train + val take at most this fraction of the GPU's memory
    pin_memory: AutoBool = "auto"  # data kept on the host: pinned buffers + non-blocking copies, one batch ahead
    channels_last: AutoBool = "auto"  # conv nets: NHWC weights (tensor-core GPUs); data.channels_last=true forces it
    fused_optimizer: AutoBool = "auto"  # adam/adamw/sgd: one fused kernel per step (CUDA)
    tf32: AutoBool = "auto"  # fp32 matmuls/convolutions on TF32 tensor cores (Ampere and newer)
    # compile: auto compiles on CUDA when the run plans at least this many steps. Not measured here (no GPU): from
    # typical compile times of small models (~30-60 s) and step gains of 1.2-1.5x on steps of tens of ms
    compile_min_steps: int = 2000
    cuda_graphs: bool = False  # capture the step in CUDA graphs (torch.compile mode="reduce-overhead"); static shapes
    activation_checkpointing: bool = False  # recompute each block's activations in backward: less memory, ~30% slower
    explain: bool = False  # print the plan before training (`deepkit train --explain-speed`)


@dataclass(frozen=True)
class DeviceInfo:
    """What the rules need to know about the device; tests build one by hand to stand for a GPU."""

    type: str  # cpu, cuda, mps
    name: str = ""
    capability: tuple[int, int] | None = None  # CUDA compute capability, e.g. (9, 0) for H100
    total_memory: int = 0  # bytes of device memory (GPUs)

    @property
    def bf16(self) -> bool:
        return self.type == "cuda" and self.capability is not None and self.capability >= (8, 0)

    @property
    def tensor_cores(self) -> bool:
        return self.type == "cuda" and self.capability is not None and self.capability >= (7, 0)


def device_info(device: torch.device) -> DeviceInfo:
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        return DeviceInfo("cuda", p.name, (p.major, p.minor), int(p.total_memory))
    return DeviceInfo(device.type, device.type)


@dataclass
class Decision:
    name: str
    applied: bool
    reason: str


@dataclass
class SpeedPlan:
    """The decisions of one run, in the order they are printed, plus the values the Trainer acts on."""

    device: DeviceInfo
    decisions: list[Decision] = field(default_factory=list)
    precision: str = "fp32"  # fp32 | bf16
    compile_mode: str | None = None  # None: eager; "default" or "reduce-overhead" (CUDA graphs)

    def add(self, name: str, applied: bool, reason: str) -> bool:
        self.decisions.append(Decision(name, bool(applied), reason))
        return bool(applied)

    def on(self, name: str) -> bool:
        return any(d.applied for d in self.decisions if d.name == name)

    def get(self, name: str) -> Decision:
        return next(d for d in self.decisions if d.name == name)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {d.name: {"applied": d.applied, "reason": d.reason} for d in self.decisions}

    def table(self) -> str:
        """One line per decision: ``[x] name  reason``."""
        width = max(len(d.name) for d in self.decisions)
        title = f"speed plan ({self.device.name or self.device.type}):"
        return "\n".join(
            [title] + [f"  [{'x' if d.applied else ' '}] {d.name:<{width}}  {d.reason}" for d in self.decisions]
        )


# --- the rules ------------------------------------------------------------------------------------------------------
def _switch(value: Any, fast: bool) -> bool | None:
    """True/False when the user set the switch, None for auto (False for auto when the fast path is off)."""
    if value == "auto":
        return None if fast else False
    return bool(value)


def _why(name: str, sp: SpeedConfig) -> str:
    """Reason for a switch the user decided: set explicitly, or `auto` turned off by ``speed.fast=false``."""
    value = getattr(sp, name)
    return "off (trainer.speed.fast=false)" if value == "auto" else f"trainer.speed.{name}={str(value).lower()}"


def _has(model: nn.Module, kind: type) -> bool:
    return any(isinstance(m, kind) for m in model.modules())


def _unwrap(loader: Any) -> Any:
    while "loader" in vars(loader):  # DeviceCopyLoader, bench's token counter
        loader = loader.loader
    return loader


def loader_bytes(loader: Any) -> int:
    """Bytes of the tensors a loader holds (its attributes, and lists of tensors), e.g. TensorLoader's x and y."""
    loader = _unwrap(loader)
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

    return isinstance(_unwrap(loader), TensorLoader | LMWindowLoader)


def plan_speed(
    cfg: Any,
    device: DeviceInfo,
    model: nn.Module,
    loaders: list[Any],
    planned_steps: int,
    manual: bool = False,
    augment: bool = False,
    data_channels_last: bool = False,
) -> SpeedPlan:
    """Decide every switch of the fast path for one run.

    Args:
        cfg: the :class:`~deepkit.train.TrainerConfig` (its ``speed`` section, ``precision``, ``compile``, ...).
        device: where the run trains (:func:`device_info`, or a hand-made one in tests).
        model: the model to train (looked at, not changed).
        loaders: the train loader (and the val loader, if any), not yet moved to the device.
        planned_steps: optimizer steps the run will take (``max_steps`` or ``epochs * steps_per_epoch``).
        manual: the task steps its own optimizers (GANs).
        augment: the task has a training-batch transform (``data.augment``).
        data_channels_last: the recipe's ``data.channels_last`` (forces channels_last on).
    """
    sp: SpeedConfig = cfg.speed
    fast, cuda, cpu = sp.fast, device.type == "cuda", device.type == "cpu"
    plan = SpeedPlan(device)
    where = "CPU" if cpu else device.type.upper()

    # data placement: whole splits on the GPU when they fit, else pinned host batches copied asynchronously
    nbytes = sum(loader_bytes(ld) for ld in loaders)
    resident = all(holds_data_on_device(ld) for ld in loaders)
    want = _switch(sp.device_data, fast)
    if not cuda:
        plan.add(
            "device_data",
            resident,
            f"{where}: splits stay in host memory, batched by index"
            if resident
            else f"{type(_unwrap(loaders[0])).__name__} builds each batch on the host (padding)",
        )
    elif want is False:
        plan.add("device_data", False, "off (trainer.speed.device_data=false or speed.fast=false)")
    elif not resident:
        plan.add("device_data", False, f"{type(_unwrap(loaders[0])).__name__} builds each batch on the host (padding)")
    else:
        budget = sp.device_data_fraction * device.total_memory
        fits = want is True or nbytes <= budget
        plan.add(
            "device_data",
            fits,
            f"train+val {nbytes / 2**20:,.0f} MiB {'<=' if fits else '>'} "
            f"{sp.device_data_fraction:.0%} of {device.total_memory / 2**30:.0f} GiB: "
            + ("whole splits copied once, batches gathered on the GPU" if fits else "batches copied per step"),
        )
    want = _switch(sp.pin_memory, fast)
    if not cuda:
        plan.add("pin_memory", False, f"{where}: no host-to-device copies")
    elif plan.on("device_data"):
        plan.add("pin_memory", False, "data already on the GPU")
    else:
        plan.add(
            "pin_memory",
            want is not False,
            "pinned host batches, non_blocking copies one batch ahead"
            if want is not False
            else "off: plain blocking copies (trainer.speed.pin_memory=false)",
        )

    plan.add(
        "augment_on_device",
        augment,
        f"data.augment runs batched on the {where} (kornia), no per-sample Python"
        if augment
        else "no data.augment in this recipe",
    )

    # channels_last: cuDNN's NHWC kernels feed tensor cores without layout transposes
    want = _switch(sp.channels_last, fast)
    conv = _has(model, nn.Conv2d)
    if data_channels_last:
        plan.add("channels_last", True, "data.channels_last=true")
    elif not conv:
        plan.add("channels_last", False, "no Conv2d layers")
    elif want is not None:
        plan.add("channels_last", want, _why("channels_last", sp))
    elif device.tensor_cores:
        plan.add("channels_last", True, "conv net on a tensor-core GPU: NHWC convolutions without transposes")
    elif cpu:
        plan.add("channels_last", True, CPU_MEASURED["channels_last"])
    else:
        plan.add("channels_last", False, f"{where}: no tensor cores")

    # precision: bf16 autocast keeps fp32 weights/optimizer state; tensor-core matmuls on Ampere and newer
    if cfg.precision in ("fp32", "bf16"):
        plan.precision = cfg.precision
        plan.add("bf16_autocast", cfg.precision == "bf16", f"trainer.precision={cfg.precision}")
    elif not fast:
        plan.add("bf16_autocast", False, "off (trainer.speed.fast=false)")
    elif device.bf16:
        plan.precision = "bf16"
        plan.add(
            "bf16_autocast",
            True,
            f"GPU supports bf16 (compute capability {device.capability}): "
            "tensor-core matmuls, fp32 weights and optimizer state",
        )
    else:
        plan.add("bf16_autocast", False, CPU_MEASURED["bf16"] if cpu else f"{where}: no native bf16 here")

    want = _switch(sp.tf32, fast)
    if not cuda:
        plan.add("tf32", False, f"{where}: TF32 is a CUDA tensor-core format")
    elif want is not None:
        plan.add("tf32", want, _why("tf32", sp))
    else:
        ok = device.capability is not None and device.capability >= (8, 0)
        plan.add("tf32", ok, "fp32 matmuls/convolutions on TF32 tensor cores" if ok else "needs compute capability 8.0")

    # fused optimizer: one kernel for the whole update instead of one per parameter group op
    want = _switch(sp.fused_optimizer, fast)
    name = cfg.optimizer.name
    if manual:
        plan.add("fused_optimizer", False, "the task builds and steps its own optimizers")
    elif name not in ("adam", "adamw", "sgd"):
        plan.add("fused_optimizer", False, f"torch has no fused {name}")
    elif want is not None:
        plan.add("fused_optimizer", want, _why("fused_optimizer", sp))
    elif cuda:
        plan.add("fused_optimizer", True, f"fused {name} on CUDA: one kernel launch for all parameters")
    elif cpu:
        plan.add("fused_optimizer", True, f"fused {name}: " + CPU_MEASURED["fused"])
    else:
        plan.add("fused_optimizer", False, f"{where}: not measured here, left off")

    # torch.compile: worth its one-off compile time only on long runs; CUDA graphs go through it
    graphs = sp.cuda_graphs and cuda and not manual
    if cfg.compile is True or cfg.compile is False:
        compiled = cfg.compile or graphs
        plan.add(
            "compile",
            compiled,
            f"trainer.compile={str(cfg.compile).lower()}"
            + (" (cuda_graphs needs it)" if graphs and not cfg.compile else ""),
        )
    elif not fast:
        compiled = plan.add("compile", False, "off (trainer.speed.fast=false)")
    elif manual:
        compiled = plan.add("compile", False, "the task calls its sub-models directly (compiling would not reach them)")
    elif graphs:
        compiled = plan.add("compile", True, "trainer.speed.cuda_graphs=true captures the compiled step")
    elif cuda and planned_steps >= sp.compile_min_steps:
        compiled = plan.add(
            "compile",
            True,
            f"{planned_steps:,} planned steps >= compile_min_steps "
            f"{sp.compile_min_steps:,}: the compile time is repaid",
        )
    elif cuda:
        compiled = plan.add(
            "compile",
            False,
            f"{planned_steps:,} planned steps < compile_min_steps "
            f"{sp.compile_min_steps:,}: compiling would cost more than it saves",
        )
    else:
        compiled = plan.add("compile", False, CPU_MEASURED["compile"] if cpu else f"{where}: eager")
    if sp.cuda_graphs and not cuda:
        plan.add("cuda_graphs", False, f"trainer.speed.cuda_graphs=true, but {where} has no CUDA graphs")
    elif sp.cuda_graphs and manual:
        plan.add("cuda_graphs", False, "the task steps its own sub-models; there is no single step to capture")
    else:
        plan.add(
            "cuda_graphs",
            graphs,
            "step captured as CUDA graphs (static shapes; a new shape re-captures)"
            if graphs
            else "off (trainer.speed.cuda_graphs=true: for small models bound by kernel launches)",
        )
    plan.compile_mode = ("reduce-overhead" if graphs else "default") if compiled else None

    plan.add("log_sync", True, f"per-step logs summed on the {where}; read every log_every={cfg.log_every} steps")
    ckpt = sp.activation_checkpointing
    plan.add(
        "activation_checkpointing",
        ckpt,
        "blocks recompute activations in backward (less memory, slower)"
        if ckpt
        else "off (trainer.speed.activation_checkpointing=true trades ~30% speed for memory)",
    )
    return plan


def plan_for(trainer: Any, task: Any, data: Any, loaders: list[Any], planned_steps: int) -> SpeedPlan:
    """The plan of a Trainer's fit: :func:`plan_speed` with what the trainer, task and data know."""
    return plan_speed(
        trainer.config,
        device_info(trainer.device),
        task.model,
        [ld for ld in loaders if ld is not None],
        planned_steps,
        manual=task.manual_optimization,
        augment=getattr(task, "train_transform", None) is not None,
        data_channels_last=bool(getattr(getattr(data, "config", None), "channels_last", False)),
    )


# --- acting on the plan -------------------------------------------------------------------------------------------
def prepare_model(model: nn.Module, plan: SpeedPlan) -> None:
    """Apply the plan's model changes in place: NHWC weights, activation checkpointing of the blocks."""
    if plan.on("channels_last"):
        model.to(memory_format=torch.channels_last)
    if plan.on("activation_checkpointing"):
        n = checkpoint_blocks(model)
        plan.get("activation_checkpointing").reason += f": {n} blocks"


def set_backend_flags(plan: SpeedPlan) -> Callable[[], None]:
    """TF32 for the duration of a fit: sets torch's global flags and returns the function that restores them."""
    if not plan.on("tf32"):
        return lambda: None
    old = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("high")
    torch.backends.cudnn.allow_tf32 = True

    def restore() -> None:
        torch.set_float32_matmul_precision(old[0])
        torch.backends.cudnn.allow_tf32 = old[1]

    return restore


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


def compile_model(model: nn.Module, plan: SpeedPlan) -> nn.Module:
    return torch.compile(model, mode=plan.compile_mode) if plan.compile_mode else model


def autocast(precision: str, device: torch.device):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


# --- activation checkpointing ---------------------------------------------------------------------------------------
def find_blocks(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks of a model: what activation checkpointing wraps.

    A model may name them with a ``checkpoint_blocks()`` method. Otherwise the blocks are the elements of every
    ``nn.ModuleList`` / ``nn.Sequential`` that are themselves modules with sub-modules and parameters but not
    containers (GPT-2's ``h.0``, BERT's ``encoder.layer.0``, T5's ``encoder.block.0``, ResNet's ``layer1.0``);
    a block inside a block is not wrapped twice.
    """
    if hasattr(model, "checkpoint_blocks"):
        return list(model.checkpoint_blocks())
    blocks: list[nn.Module] = []
    inside: set[int] = set()
    for m in model.modules():  # pre-order: outer blocks are seen before the blocks inside them
        if id(m) in inside or not isinstance(m, nn.ModuleList | nn.Sequential):
            continue
        for child in m.children():
            if isinstance(child, nn.ModuleList | nn.Sequential) or id(child) in inside:
                continue
            if next(child.children(), None) is not None and next(child.parameters(), None) is not None:
                blocks.append(child)
                inside.update(id(d) for d in child.modules())
    return blocks


def checkpoint_blocks(model: nn.Module) -> int:
    """Recompute each block's activations in backward (torch.utils.checkpoint, non-reentrant). Returns the count.

    Parameter names do not change (the block's ``forward`` is wrapped in place), so checkpoints load as before.
    BatchNorm running statistics are restored after the recomputation, so they are updated once per step, as
    without checkpointing.

    Raises:
        ConfigError: the model has no repeated blocks to checkpoint.
    """
    blocks = find_blocks(model)
    if not blocks:
        name = getattr(model, "model_name", type(model).__name__)
        raise ConfigError(
            f"trainer.speed.activation_checkpointing=true, but model '{name}' has no repeated blocks "
            "(modules in an nn.ModuleList/nn.Sequential) to checkpoint; expected a ResNet or a Transformer"
        )
    for block in blocks:
        if not getattr(block, "_deepkit_checkpointed", False):
            block.forward = functools.partial(_checkpointed_forward, block, block.forward)
            block._deepkit_checkpointed = True
    return len(blocks)


def _checkpointed_forward(block: nn.Module, forward, *args, **kwargs):
    from torch.utils.checkpoint import checkpoint

    if not (block.training and torch.is_grad_enabled()):
        return forward(*args, **kwargs)
    norms = [m for m in block.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    calls = [0]

    def run(*a, **k):
        calls[0] += 1
        if calls[0] == 1 or not norms:
            return forward(*a, **k)
        saved = [(b, b.clone()) for m in norms for b in m.buffers()]  # recomputation: keep the stats of pass one
        try:
            return forward(*a, **k)
        finally:
            with torch.no_grad():
                for b, old in saved:
                    b.copy_(old)

    return checkpoint(run, *args, use_reentrant=False, **kwargs)


# --- peak memory ----------------------------------------------------------------------------------------------------
def reset_peak_memory(device: torch.device) -> None:
    """Start a fresh peak: CUDA's allocator statistics, and Linux's peak RSS (``/proc/self/clear_refs``)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # 5: reset the peak resident set size (VmHWM) to the current RSS (Linux >= 4.0)


def peak_memory(device: torch.device) -> dict[str, float]:
    """``peak_rss_mb``: the process's peak resident memory (MiB) since the last reset; ``peak_gpu_mb``: CUDA's
    peak allocated memory on the device (MiB), on GPUs."""
    out = {"peak_rss_mb": _peak_rss_bytes() / 2**20}
    if device.type == "cuda":
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def _peak_rss_bytes() -> int:
    with contextlib.suppress(OSError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # since process start: kB on Linux, bytes on macOS
    return rss if os.uname().sysname == "Darwin" else rss * 1024


def format_memory(mem: dict[str, float]) -> str:
    parts = [f"{mem['peak_rss_mb']:,.0f} MiB host RSS"] if "peak_rss_mb" in mem else []
    if "peak_gpu_mb" in mem:
        parts.append(f"{mem['peak_gpu_mb']:,.0f} MiB GPU allocated")
    return ", ".join(parts)


# --- FLOPs and MFU --------------------------------------------------------------------------------------------------
def peak_tflops(device: DeviceInfo, precision: str, tf32: bool = False) -> float | None:
    """Dense peak TFLOP/s of the device for the precision (``DEEPKIT_PEAK_TFLOPS`` overrides), None if unknown."""
    env = os.environ.get("DEEPKIT_PEAK_TFLOPS")
    if env:
        try:
            return float(env)
        except ValueError:
            raise ConfigError(f"DEEPKIT_PEAK_TFLOPS must be a number (TFLOP/s), got {env!r}") from None
    if device.type != "cuda":
        return None
    for key, peaks in PEAK_TFLOPS.items():  # specific names (H100 PCIe) come before general ones (H100)
        if key in device.name:
            return peaks["bf16" if precision == "bf16" else ("tf32" if tf32 else "fp32")]
    return None


def mfu(flops_per_step: float | None, steps_per_s: float, peak: float | None) -> float | None:
    """Model FLOPs utilization: achieved FLOP/s over the device's peak (None if either is unknown)."""
    if not flops_per_step or not peak or not math.isfinite(steps_per_s):
        return None
    return flops_per_step * steps_per_s / (peak * 1e12)

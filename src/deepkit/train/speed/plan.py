"""The plan's types: the switches (:class:`SpeedConfig`), the device they are decided for (:class:`DeviceInfo`)
and the decisions (:class:`SpeedPlan`), each with its reason."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch

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
    if device.type == "cpu":
        return DeviceInfo("cpu", cpu_description())
    return DeviceInfo(device.type, device.type)


def cpu_description() -> str:
    """This machine's CPU as the speed plan describes it: threads torch uses, vector ISA, bf16 support."""
    isa = torch.backends.cpu.get_cpu_capability()  # e.g. AVX512, AVX2, DEFAULT (no x86 vector unit)
    bf16 = bool(getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)())
    n = torch.get_num_threads()
    return f"{n} thread{'s' if n != 1 else ''}, {isa}, {'native' if bf16 else 'no native'} bf16"


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
        d = self.device
        title = f"speed plan ({d.type}{': ' + d.name if d.name and d.name != d.type else ''}):"
        return "\n".join(
            [title] + [f"  [{'x' if d.applied else ' '}] {d.name:<{width}}  {d.reason}" for d in self.decisions]
        )

"""The ``auto`` rules: :func:`plan_speed` decides every switch of a run from the device, the model, the data loaders
and the planned number of steps. A pure function: tests drive it with a mocked :class:`DeviceInfo` on a CPU.

On CPUs the rules follow what was measured on x86 machines with oneDNN (benchmarks/fastpath_cpu.py; figures and
machines in benchmarks/RESULTS.md): channels_last and the fused Adam/AdamW/SGD pay; torch.compile does not repay
its compile time; bf16 autocast is faster where the CPU has bf16 instructions but stays opt-in, because it changes
the numbers every recipe was validated with. The reasons a plan prints describe the user's machine and run, not
our figures.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from deepkit.train.speed.placement import holds_data_on_device, loader_bytes, unwrap_loader
from deepkit.train.speed.plan import DeviceInfo, SpeedConfig, SpeedPlan


def _switch(value: Any, fast: bool) -> bool | None:
    """True/False when the user set the switch, None for auto (False for auto when the fast path is off)."""
    if value == "auto":
        return None if fast else False
    return bool(value)


def _why(name: str, sp: SpeedConfig) -> str:
    """Reason for a switch the user decided: set explicitly, or `auto` turned off by ``speed.fast=false``."""
    value = getattr(sp, name)
    return "off (trainer.speed.fast=false)" if value == "auto" else f"trainer.speed.{name}={str(value).lower()}"


def _cpu_bf16_reason(device: DeviceInfo) -> str:
    if "no native bf16" in device.name:
        return "off: this CPU has no bf16 instructions (it would be emulated, slower); trainer.precision=bf16 forces it"
    return (
        "off: this CPU has bf16 instructions and would run faster, but bf16 rounding changes the figures every "
        "recipe was validated with (trainer.precision=bf16 opts in)"
    )


def _has(model: nn.Module, kind: type) -> bool:
    return any(isinstance(m, kind) for m in model.modules())


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
            else f"{type(unwrap_loader(loaders[0])).__name__} builds each batch on the host (padding)",
        )
    elif want is False:
        plan.add("device_data", False, "off (trainer.speed.device_data=false or speed.fast=false)")
    elif not resident:
        plan.add(
            "device_data", False, f"{type(unwrap_loader(loaders[0])).__name__} builds each batch on the host (padding)"
        )
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
        plan.add(
            "channels_last",
            True,
            "conv net on this CPU: oneDNN's NHWC convolutions run without layout reorders",
        )
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
        plan.add("bf16_autocast", False, _cpu_bf16_reason(device) if cpu else f"{where}: no native bf16 here")

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
        tensors = sum(1 for p in model.parameters() if p.requires_grad)
        plan.add(
            "fused_optimizer",
            True,
            f"fused {name}: one multi-tensor kernel per step on this CPU instead of a loop over {tensors} "
            "parameter tensors",
        )
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
    elif cpu:
        compiled = plan.add(
            "compile",
            False,
            f"this run's {planned_steps:,} steps on a CPU: compiling takes seconds to minutes and gains little "
            "per step on CPUs (trainer.compile=true opts in)",
        )
    else:
        compiled = plan.add("compile", False, f"{where}: eager")
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

"""The fast path: which speed switches a run uses, decided once per ``fit``, each with its reason.

``plan_speed`` turns the recipe's ``trainer.speed`` section (plus ``trainer.precision`` and ``trainer.compile``)
into a :class:`SpeedPlan`: a list of decisions ``(name, applied, reason)``. Every switch defaults to ``auto``,
resolved by the rules from the device, the model, the data loader and the planned number of steps, so the
decision logic is a pure function that tests can drive with a mocked :class:`DeviceInfo` (an H100) on a CPU.
``deepkit train RECIPE --explain-speed`` prints the plan; every run writes it into ``log.txt``.

One module per concern:

- ``plan``: the switches, the device and the decisions (:class:`SpeedConfig`, :class:`DeviceInfo`,
  :class:`SpeedPlan`);
- ``rules``: the ``auto`` rules (:func:`plan_speed`, with the CPU measurements behind them);
- ``placement``: where the data lives (:func:`place_loader`, :class:`DeviceCopyLoader`);
- ``model``: NHWC weights, activation checkpointing, torch.compile (:func:`prepare_model`, :func:`compile_model`);
- ``precision``: bf16 autocast and the TF32 flags (:func:`autocast`, :func:`set_backend_flags`);
- ``memory``: peak host and GPU memory of a fit;
- ``throughput``: peak TFLOP/s of common accelerators and MFU.
"""

from __future__ import annotations

from typing import Any

from deepkit.train.speed.memory import format_memory, peak_memory, reset_peak_memory
from deepkit.train.speed.model import checkpoint_blocks, compile_model, find_blocks, prepare_model
from deepkit.train.speed.placement import HOST_KEYS, DeviceCopyLoader, holds_data_on_device, loader_bytes, place_loader
from deepkit.train.speed.plan import AutoBool, Decision, DeviceInfo, SpeedConfig, SpeedPlan, device_info
from deepkit.train.speed.precision import autocast, set_backend_flags
from deepkit.train.speed.rules import plan_speed
from deepkit.train.speed.throughput import PEAK_TFLOPS, mfu, peak_tflops


def plan_for(trainer: Any, task: Any, data: Any, loaders: list[Any], planned_steps: int) -> SpeedPlan:
    """The plan of a Trainer's fit: :func:`plan_speed` with what the trainer, task and data know.

    Here rather than in ``rules``: it reads ``device_info`` from this package, where a test can stand a GPU in.
    """
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


__all__ = [
    "HOST_KEYS",
    "PEAK_TFLOPS",
    "AutoBool",
    "Decision",
    "DeviceCopyLoader",
    "DeviceInfo",
    "SpeedConfig",
    "SpeedPlan",
    "autocast",
    "checkpoint_blocks",
    "compile_model",
    "device_info",
    "find_blocks",
    "format_memory",
    "holds_data_on_device",
    "loader_bytes",
    "mfu",
    "peak_memory",
    "peak_tflops",
    "place_loader",
    "plan_for",
    "plan_speed",
    "prepare_model",
    "reset_peak_memory",
    "set_backend_flags",
]

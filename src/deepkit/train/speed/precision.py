"""Numerics of the fit: bf16 autocast, and torch's TF32 flags for the duration of a fit."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

from deepkit.train.speed.plan import SpeedPlan


def autocast(precision: str, device: torch.device):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


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

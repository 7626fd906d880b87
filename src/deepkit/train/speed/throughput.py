"""Model FLOPs utilization: the peak TFLOP/s of common accelerators and achieved over peak."""

from __future__ import annotations

import math
import os

from deepkit.errors import ConfigError
from deepkit.train.speed.plan import DeviceInfo

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

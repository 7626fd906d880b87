"""Peak memory of a fit: the process's peak RSS and, on GPUs, CUDA's peak allocated memory."""

from __future__ import annotations

import contextlib
import os
import resource

import torch


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

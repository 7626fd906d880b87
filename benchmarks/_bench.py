"""What the one-thread quality benchmarks (segmentation.py, speech.py) share: the report's header."""

from __future__ import annotations

import platform
import subprocess


def one_thread_report(overrides: list[str]) -> dict:
    """Set torch to one thread; the report's header: machine, commit, overrides, and an empty ``results``."""
    import torch

    torch.set_num_threads(1)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    machine = f"{platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread"
    return {"machine": machine, "commit": commit, "overrides": overrides, "results": {}}

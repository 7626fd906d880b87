"""The GPU bar of issue 7: deepkit's default fast path against a plain fp32 eager loop, on a CNN and on GPT.

Both sides are ``deepkit bench`` runs of the same recipe (same data, model, task, Trainer); the baseline sets
``trainer.speed.fast=false`` (every ``auto`` off: fp32, eager, no fused optimizer, NCHW, no TF32) but keeps the
data on the device, as a careful hand-written loop would (``benchmarks/overhead.py`` measures the Trainer itself
against such a loop). The variants alternate round by round. Data are synthetic and written to a temporary folder,
so this runs offline anywhere:

    python benchmarks/fastpath_gpu.py [--rounds 2 --steps 100 --warmup 30] [--small]   # --small: a CPU smoke test

Bar: default / baseline >= 1.3x on both. ``--warmup`` must cover torch.compile's first steps when the plan compiles
(compile is decided for the recipe's full length: ``epochs`` below is long enough to compile on CUDA).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch

from deepkit.bench import bench


def recipes(folder: Path, small: bool) -> dict[str, dict]:
    rng = np.random.default_rng(0)
    n, size = (512, 16) if small else (20_000, 32)
    np.savez(folder / "images.npz", x=rng.integers(0, 256, (n, 3, size, size), dtype=np.uint8), y=np.arange(n) % 10)
    text = "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz .,\n"), size=200_000 if small else 2_000_000))
    (folder / "text.txt").write_text(text)
    gpt = {"n_layer": 2, "n_embd": 64, "n_head": 2} if small else {"n_layer": 12, "n_embd": 768, "n_head": 12}
    block = 64 if small else 512
    return {
        "resnet18 CIFAR-size": {
            "name": "bench_cnn",
            "task": {"name": "classification"},
            "model": {"name": "resnet18", "stem": "cifar"},
            "data": {"name": "npz", "path": str(folder / "images.npz"), "batch_size": 32 if small else 256},
            "trainer": {"epochs": 100, "optimizer": {"name": "adamw", "lr": 1e-3}},
        },
        "GPT-2 (char LM)": {
            "name": "bench_gpt",
            "task": {"name": "language_model"},
            "model": {"name": "gpt2", "n_positions": block, **gpt},
            "data": {
                "name": "text_file",
                "path": str(folder / "text.txt"),
                "batch_size": 8 if small else 16,
                "text": {"tokenizer": "char", "vocab_size": None, "lowercase": False, "block_size": block},
            },
            "trainer": {"epochs": 100, "optimizer": {"name": "adamw", "lr": 3e-4}},
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--small", action="store_true", help="tiny models and data (a smoke test on a CPU)")
    args = ap.parse_args()
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU (the bar is for GPUs)"
    print(f"device: {device}; torch {torch.__version__}", flush=True)
    baseline = ["trainer.speed.fast=false", "trainer.speed.device_data=true"]
    summary = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, rec in recipes(Path(tmp), args.small).items():
            rates: dict[str, list[float]] = {"default": [], "plain fp32 eager": []}
            for r in range(args.rounds):
                for variant, ov in (("default", []), ("plain fp32 eager", baseline)):
                    res = bench(rec, *ov, steps=args.steps, warmup=args.warmup)
                    rates[variant].append(res["samples_per_s"])
                    used = ", ".join(k for k, d in res["speed_plan"].items() if d["applied"])
                    mfu = "n/a" if res["mfu"] is None else f"{res['mfu']:.1%}"
                    peak = res.get("peak_gpu_mb", res["peak_rss_mb"])
                    print(
                        f"{name:<22} round {r + 1} {variant:<17} {res['samples_per_s']:10,.0f} samples/s  "
                        f"peak {peak:,.0f} MiB  MFU {mfu}  [{used}]",
                        flush=True,
                    )
            fast, plain = statistics.median(rates["default"]), statistics.median(rates["plain fp32 eager"])
            summary[name] = {"default": fast, "plain": plain, "speedup": fast / plain, "bar_1.3x": fast / plain >= 1.3}
            print(
                f"{name:<22} default / plain fp32 eager = {fast / plain:.2f}x (bar >= 1.3x: "
                f"{'met' if fast / plain >= 1.3 else 'NOT met'})",
                flush=True,
            )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

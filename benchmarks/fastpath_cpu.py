"""What each fast-path switch does on this CPU: the measurements behind the ``auto`` rules of train/speed/rules.py.

Runs ``deepkit bench RECIPE`` (same data, model, task and Trainer as ``deepkit train``) with each switch forced on,
alternating the variants round by round so that load from other processes hits them alike, and reports the
median steps/s of each relative to the plain fp32 eager baseline. torch.compile is measured once more for its
compile time (the warm-up steps' wall time minus that of eager warm-up steps).

    python benchmarks/fastpath_cpu.py [--recipe mnist_cnn --rounds 3 --steps 60 --warmup 10]
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch

from deepkit.bench import bench

VARIANTS = {
    "baseline (fp32 eager, foreach AdamW)": [],
    "bf16 autocast": ["trainer.precision=bf16"],
    "channels_last": ["trainer.speed.channels_last=true"],
    "fused AdamW": ["trainer.speed.fused_optimizer=true"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="mnist_cnn")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile measurement")
    args = ap.parse_args()
    print(f"recipe {args.recipe}; torch {torch.__version__}; threads {torch.get_num_threads()}", flush=True)
    rates: dict[str, list[float]] = {k: [] for k in VARIANTS}
    warm: dict[str, list[float]] = {k: [] for k in VARIANTS}
    for r in range(args.rounds):
        for name, ov in VARIANTS.items():
            res = bench(args.recipe, "trainer.speed.fast=false", *ov, steps=args.steps, warmup=args.warmup)
            rates[name].append(res["steps_per_s"])
            warm[name].append(res["warmup_s"])
            print(f"round {r + 1}  {name:<38} {res['steps_per_s']:7.2f} steps/s", flush=True)
    base = statistics.median(rates["baseline (fp32 eager, foreach AdamW)"])
    out = {}
    for name, v in rates.items():
        med = statistics.median(v)
        out[name] = {"steps_per_s": med, "speedup": med / base}
        print(f"{name:<38} median {med:7.2f} steps/s  x{med / base:.2f} vs baseline")
    if not args.no_compile:
        res = bench(args.recipe, "trainer.speed.fast=false", "trainer.compile=true", steps=args.steps, warmup=3)
        eager_step = 1 / base
        compile_s = res["warmup_s"] - 3 * eager_step
        gain = 1 / base - 1 / res["steps_per_s"]  # seconds saved per step once compiled
        out["compile"] = {
            "steps_per_s": res["steps_per_s"],
            "speedup": res["steps_per_s"] / base,
            "compile_s": compile_s,
            "break_even_steps": compile_s / gain if gain > 0 else None,
        }
        be = f"{compile_s / gain:,.0f} steps" if gain > 0 else "never (no faster per step)"
        print(
            f"torch.compile: {res['steps_per_s']:.2f} steps/s (x{res['steps_per_s'] / base:.2f}); compile "
            f"{compile_s:.1f} s; repaid after {be}"
        )
    print(json.dumps(out))


if __name__ == "__main__":
    main()

"""The demo's promise over seeds: `digits_cnn` test accuracy for trainer.seed 0-4 (bar: mean ≥ 98.5%, min ≥ 98%).

    python benchmarks/demo_seeds.py [--seeds 0,1,2,3,4] [--recipe digits_cnn] [override ...]

Trains the demo recipe once per seed (in-process, into a temporary directory), varying only ``trainer.seed``:
the data split (``data.split_seed``) stays the recipe's, so every run is tested on the same 360 images. Prints
each seed's test accuracy and wall time, then the mean and the minimum; exits 1 when the bar is missed.
Extra arguments are recipe overrides, to try variants (e.g. ``task.label_smoothing=0 trainer.epochs=40``);
``--recipe`` takes another recipe name or a YAML path (e.g. an older digits_cnn.yaml, to compare).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import deepkit

RECIPE = "digits_cnn"
MEAN_BAR, MIN_BAR = 0.985, 0.98


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated trainer.seed values (default 0,1,2,3,4)")
    ap.add_argument("--recipe", default=RECIPE, help="recipe name or YAML path (default digits_cnn)")
    ap.add_argument("overrides", nargs="*", help="extra recipe overrides, e.g. trainer.epochs=40")
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    extra = f", overrides {' '.join(args.overrides)}" if args.overrides else ""
    print(f"recipe {args.recipe}, seeds {seeds}{extra}", flush=True)
    accs, times = [], []
    with tempfile.TemporaryDirectory(prefix="demo_seeds_") as tmp:
        for s in seeds:
            t0 = time.perf_counter()
            res = deepkit.train(
                args.recipe, *args.overrides, f"trainer.seed={s}", "trainer.progress=none", out=Path(tmp) / f"seed{s}"
            )
            dt = time.perf_counter() - t0
            acc = float(res.metrics["accuracy"])
            accs.append(acc)
            times.append(dt)
            print(f"seed {s}: test accuracy {acc:.4f}  ({dt:.1f} s)", flush=True)
    mean, low = statistics.fmean(accs), min(accs)
    ok = mean >= MEAN_BAR and low >= MIN_BAR
    print(
        f"mean {mean:.4f}  min {low:.4f}  ({statistics.fmean(times):.1f} s per run)  "
        f"bar mean >= {MEAN_BAR}, min >= {MIN_BAR}: {'met' if ok else 'NOT met'}",
        flush=True,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Distributed overhead on one machine: 1 process × 2 threads versus 2 processes × 1 thread (DDP, gloo).

Both arms are the real command line on the same recipe (default ``mnist_resnet20``: a CIFAR-style ResNet-20 on real
MNIST, 0.27 M parameters but ~40 MFLOPs per 28×28 image, so compute dominates the gradient all-reduce), with the
same global batch, the same training subset (``data.limit``; 2% of MNIST's training set held out for validation)
and the same number of steps:

    A: deepkit train RECIPE trainer.threads=2 ...            (OMP_NUM_THREADS=2)
    B: deepkit train RECIPE --nproc 2 ...                     (each process: OMP_NUM_THREADS=1, gloo all-reduce)

Throughput is deepkit's own ``samples_per_s`` (global samples / seconds in training steps, validation excluded) of
the epochs after the first (warm-up). Rounds alternate A, B so a load change on a shared machine hits both.

    python benchmarks/distributed.py [--rounds 3 --limit 3072 --epochs 3 --recipe mnist_resnet20]

Last line: ``2-process / 1-process throughput ratio: X.XX`` (bar >= 0.9). Writes benchmarks/out/distributed.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OUT = Path(__file__).parent / "out"


def run_arm(nproc: int, args: argparse.Namespace, out: Path) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(2 // nproc), MKL_NUM_THREADS=str(2 // nproc))
    cmd = [sys.executable, "-m", "deepkit", "train", args.recipe, f"data.limit={args.limit}", "data.val_split=0.02"]
    cmd += [f"trainer.epochs={args.epochs}", "trainer.progress=plain", "--out", str(out), "--overwrite"]
    cmd += ["--nproc", "2"] if nproc == 2 else ["trainer.threads=2"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    rates = [float(r["samples_per_s"]) for r in rows[1:]] or [float(rows[0]["samples_per_s"])]
    test = json.loads((out / "results.json").read_text())["metrics"]
    return {
        "samples_per_s": statistics.mean(rates),
        "train_loss": float(rows[-1]["train_loss"]),
        "val_loss": float(rows[-1]["val_loss"]),
        "val_accuracy": float(rows[-1]["val_accuracy"]),
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "wall_s": wall,
        "command": " ".join(cmd[1:]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="mnist_resnet20")
    ap.add_argument("--limit", type=int, default=3072, help="training samples (data.limit)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"commit {commit}, started {time.strftime('%H:%M:%S')}", flush=True)
    one, two = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            one.append(run_arm(1, args, Path(tmp) / f"one{r}"))
            two.append(run_arm(2, args, Path(tmp) / f"two{r}"))
            print(
                f"round {r + 1}: 1 proc × 2 threads {one[-1]['samples_per_s']:.1f} samples/s, "
                f"2 procs × 1 thread {two[-1]['samples_per_s']:.1f} samples/s",
                flush=True,
            )
    med1 = statistics.median(x["samples_per_s"] for x in one)
    med2 = statistics.median(x["samples_per_s"] for x in two)
    report = {"commit": commit, "args": vars(args), "one_process_two_threads": one, "two_processes": two}
    report["ratio"] = med2 / med1
    OUT.mkdir(exist_ok=True)
    (OUT / "distributed.json").write_text(json.dumps(report, indent=1))
    for name, arm in (("1 process × 2 threads", one[-1]), ("2 processes × 1 thread", two[-1])):
        print(
            f"{name}: final train_loss {arm['train_loss']:.4f}  val_loss {arm['val_loss']:.4f}  "
            f"val_accuracy {arm['val_accuracy']:.4f}  test_accuracy {arm['test_accuracy']:.4f}"
        )
    print(f"median samples/s: 1 process × 2 threads {med1:.1f}, 2 processes × 1 thread {med2:.1f}")
    print(f"2-process / 1-process throughput ratio: {med2 / med1:.2f}")


if __name__ == "__main__":
    main()

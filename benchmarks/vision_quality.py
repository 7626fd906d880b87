"""MNIST quality of the vision recipes, with wall times: LeNet-5 (bar 99.0%) and ResNet-20 (bar 99.4%).

    DEEPKIT_DATA=../shared/datasets python benchmarks/vision_quality.py [--only mnist_lenet5,mnist_resnet20]

Writes benchmarks/out/vision_quality.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
from pathlib import Path

import torch

import deepkit

OUT = Path(__file__).parent / "out"
BARS = {"mnist_lenet5": 0.990, "mnist_resnet20": 0.994}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(BARS))
    ap.add_argument("overrides", nargs="*", help="extra recipe overrides, e.g. trainer.threads=2")
    args = ap.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    env = {
        "commit": commit,
        "machine": platform.machine(),
        "torch": str(torch.__version__),
        "date": time.strftime("%F"),
    }
    rows = []
    for name in args.only.split(","):
        t0 = time.perf_counter()
        res = deepkit.train(name, "trainer.progress=plain", *args.overrides, out=OUT / "runs" / name, overwrite=True)
        row = {
            "recipe": name,
            "test_accuracy": round(res.metrics["accuracy"], 4),
            "bar": BARS[name],
            "pass": res.metrics["accuracy"] >= BARS[name],
            "wall_s": round(time.perf_counter() - t0, 1),
            "train_s": round(res.history[-1]["time"], 1),
            "epochs": len(res.history),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    OUT.mkdir(exist_ok=True)
    (OUT / "vision_quality.json").write_text(json.dumps({"env": env, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()

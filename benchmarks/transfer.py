"""Transfer learning on real data: pretrain a CNN on MNIST digits 0-4, then fine-tune it on digits 5-9 with
N labelled images per class, versus the same model and recipe trained from scratch on the same N images.

    DEEPKIT_DATA=../shared/datasets python benchmarks/transfer.py [--per-class 100,10] [--reuse]

Both arms use the bundled ``mnist59_finetune`` recipe (identical data subset, split, model, optimizer, epochs);
the scratch arm only drops the ``finetune`` section. Accuracy is measured on all 4,861 MNIST test images of
digits 5-9. Bar (issue 3): fine-tuned at least 5 points above scratch at 100 images per class.
Writes benchmarks/out/transfer.json.
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


def run(recipe: str, *overrides: str, out: Path) -> tuple[dict, float]:
    t0 = time.perf_counter()
    res = deepkit.train(recipe, "trainer.progress=none", *overrides, out=out, overwrite=True)
    return res.metrics, round(time.perf_counter() - t0, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-class", default="100,10", help="labelled images per class of digits 5-9")
    ap.add_argument("--reuse", action="store_true", help="reuse an existing pretrained run")
    args = ap.parse_args()
    runs = OUT / "transfer"
    pre = runs / "mnist04_pretrain"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    env = {
        "commit": commit,
        "machine": platform.machine(),
        "torch": str(torch.__version__),
        "date": time.strftime("%F"),
    }
    result: dict = {"env": env, "rows": []}
    if not (args.reuse and (pre / "results.json").is_file()):
        m, t = run("mnist04_pretrain", out=pre)
        result["pretrain"] = {"test_accuracy_0_4": m["accuracy"], "train_s": t}
        print(f"pretrain on digits 0-4: test accuracy {m['accuracy']:.4f} ({t} s)")
    for n in [int(v) for v in args.per_class.split(",")]:
        ft, t_ft = run("mnist59_finetune", f"data.per_class={n}", f"finetune.weights={pre}", out=runs / f"ft_{n}")
        sc, t_sc = run("mnist59_finetune", f"data.per_class={n}", "finetune=null", out=runs / f"scratch_{n}")
        row = {
            "per_class": n,
            "finetuned_accuracy": round(ft["accuracy"], 4),
            "scratch_accuracy": round(sc["accuracy"], 4),
            "gain_points": round(100 * (ft["accuracy"] - sc["accuracy"]), 2),
            "finetune_s": t_ft,
            "scratch_s": t_sc,
        }
        if n == 100:
            row["bar"] = "fine-tuned >= scratch + 5 points"
            row["pass"] = row["gain_points"] >= 5
        result["rows"].append(row)
        print(json.dumps(row))
    OUT.mkdir(exist_ok=True)
    (OUT / "transfer.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

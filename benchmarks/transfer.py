"""Transfer learning on real data: pretrain a CNN on MNIST digits 0-4, then fine-tune it on digits 5-9 with
N labelled images per class, versus the same model and recipe trained from scratch on the same N images.

    DEEPKIT_DATA=../shared/datasets python benchmarks/transfer.py [--models resnet20] [--per-class 100,10] [--reuse]

Both arms use the bundled ``mnist59_finetune`` recipe (identical data subset, split, model, optimizer, epochs);
the scratch arm only drops the ``finetune`` section. Two models: the recipes' ResNet-20, and the small
``simple_cnn`` of ``mnist_cnn`` (its hidden FC layer is retrained with the head: ``finetune.reset=[fc.*]``).
Accuracy is measured on all 4,861 MNIST test images of digits 5-9.
Bar (issue 3): fine-tuned at least 5 points above scratch at 100 images per class.
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
MODELS = {
    "resnet20": [],
    "simple_cnn": [
        "model.name=simple_cnn",
        "model.channels=[32,64]",
        "model.convs_per_stage=1",
        "model.global_pool=flatten",
        "model.hidden=128",
        "model.dropout=0.25",
    ],
}


def run(recipe: str, *overrides: str, out: Path) -> tuple[dict, float]:
    t0 = time.perf_counter()
    res = deepkit.train(recipe, "trainer.progress=none", *overrides, out=out, overwrite=True)
    return res.metrics, round(time.perf_counter() - t0, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-class", default="100,10", help="labelled images per class of digits 5-9")
    ap.add_argument("--models", default="resnet20,simple_cnn", help=f"any of {', '.join(MODELS)}")
    ap.add_argument("--reuse", action="store_true", help="reuse an existing pretrained run")
    args = ap.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    env = {
        "commit": commit,
        "machine": platform.machine(),
        "torch": str(torch.__version__),
        "date": time.strftime("%F"),
    }
    result: dict = {"env": env, "pretrain": {}, "rows": []}
    for model in args.models.split(","):
        runs = OUT / "transfer" / model
        pre = runs / "mnist04_pretrain"
        if not (args.reuse and (pre / "results.json").is_file()):
            m, t = run("mnist04_pretrain", *MODELS[model], out=pre)
            result["pretrain"][model] = {"test_accuracy_0_4": round(m["accuracy"], 4), "train_s": t}
            print(f"{model}: pretrain on digits 0-4: test accuracy {m['accuracy']:.4f} ({t} s)", flush=True)
        extra = ["finetune.reset=[fc.*]"] if model == "simple_cnn" else []
        for n in [int(v) for v in args.per_class.split(",")]:
            common = [*MODELS[model], f"data.per_class={n}"]
            ft, t_ft = run("mnist59_finetune", *common, f"finetune.weights={pre}", *extra, out=runs / f"ft_{n}")
            sc, t_sc = run("mnist59_finetune", *common, "finetune=null", out=runs / f"scratch_{n}")
            row = {
                "model": model,
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
            print(json.dumps(row), flush=True)
    OUT.mkdir(exist_ok=True)
    (OUT / "transfer.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

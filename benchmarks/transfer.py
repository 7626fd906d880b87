"""Transfer learning on real data: pretrain a CNN on MNIST digits 0-4, then fine-tune it on digits 5-9 with
N labelled images per class, versus the same model and recipe trained from scratch on the same N images.

    DEEPKIT_DATA=../shared/datasets python benchmarks/transfer.py [--models resnet20] [--per-class 100,10]
        [--seeds 0,1,2] [--grid base,lr3e-3] [--reuse]

Both arms use the bundled ``mnist59_finetune`` recipe (identical data subset, split, model, optimizer, epochs,
augmentation); the scratch arm only drops the ``finetune`` section. Each seed ``s`` draws a different labelled
subset (``data.split_seed=s``) and initialization (``trainer.seed=s``); both arms see the same subsets.
With several grid points (recipe variants, below) every arm runs every point, and each arm's point is chosen by
its own mean validation accuracy (never by test accuracy), so both get the same tuning effort.
Accuracy is measured on all 4,861 MNIST test images of digits 5-9; reported as mean ± std over seeds.
Bar (issue 3): fine-tuned at least 5 points above scratch at 100 images per class.
Writes benchmarks/out/transfer.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
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
# recipe variants applied to BOTH arms; "base" is the recipe as bundled
GRID = {
    "base": [],
    "lr3e-3": ["trainer.optimizer.lr=0.003"],
    "noaug": ["data.augment=null"],
}


def run(recipe: str, *overrides: str, out: Path) -> tuple[dict, float, float]:
    """Test metrics, best validation accuracy, wall seconds."""
    t0 = time.perf_counter()
    res = deepkit.train(recipe, "trainer.progress=none", *overrides, out=out, overwrite=True)
    best_val = max((h.get("val_accuracy", float("nan")) for h in res.history), default=float("nan"))
    return res.metrics, best_val, round(time.perf_counter() - t0, 1)


def summary(values: list[float]) -> dict:
    return {
        "mean": round(statistics.mean(values), 4),
        "std": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
        "runs": [round(v, 4) for v in values],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-class", default="100", help="labelled images per class of digits 5-9")
    ap.add_argument("--models", default="resnet20", help=f"any of {', '.join(MODELS)}")
    ap.add_argument("--seeds", default="0,1,2", help="labelled-subset / initialization seeds")
    ap.add_argument("--grid", default="base", help=f"recipe variants tried by both arms: {', '.join(GRID)}")
    ap.add_argument("--reuse", action="store_true", help="reuse an existing pretrained run")
    ap.add_argument("overrides", nargs="*", help="overrides for every run, e.g. trainer.threads=2")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    grid = args.grid.split(",")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    env = {
        "commit": commit,
        "machine": platform.machine(),
        "torch": str(torch.__version__),
        "date": time.strftime("%F"),
    }
    result: dict = {"env": env, "seeds": seeds, "grid": {g: GRID[g] for g in grid}, "pretrain": {}, "rows": []}
    for model in args.models.split(","):
        runs = OUT / "transfer" / model
        pre = runs / "mnist04_pretrain"
        if not (args.reuse and (pre / "results.json").is_file()):
            m, _, t = run("mnist04_pretrain", *MODELS[model], *args.overrides, out=pre)
            result["pretrain"][model] = {"test_accuracy_0_4": round(m["accuracy"], 4), "train_s": t}
            print(f"{model}: pretrain on digits 0-4: test accuracy {m['accuracy']:.4f} ({t} s)", flush=True)
        extra = ["finetune.reset=[fc.*]"] if model == "simple_cnn" else []
        for n in [int(v) for v in args.per_class.split(",")]:
            arms: dict = {"finetuned": {}, "scratch": {}}
            for g in grid:
                for arm in arms:
                    arms[arm][g] = {"test": [], "val": [], "s": []}
                for s in seeds:
                    common = [*MODELS[model], *GRID[g], *args.overrides]
                    common += [f"data.per_class={n}", f"data.split_seed={s}", f"trainer.seed={s}"]
                    for arm, ov in (("finetuned", [f"finetune.weights={pre}", *extra]), ("scratch", ["finetune=null"])):
                        m, v, t = run("mnist59_finetune", *common, *ov, out=runs / f"{arm}_{n}_{g}_{s}")
                        cell = arms[arm][g]
                        cell["test"].append(m["accuracy"])
                        cell["val"].append(v)
                        cell["s"].append(t)
                        print(
                            f"{model} {n}/class {g} seed {s} {arm}: test {m['accuracy']:.4f} val {v:.4f} ({t} s)",
                            flush=True,
                        )
            row: dict = {"model": model, "per_class": n}
            for arm, cells in arms.items():
                best = max(cells, key=lambda g, cells=cells: statistics.mean(cells[g]["val"]))  # by validation only
                row[arm] = {
                    "chosen": best,
                    "test_accuracy": summary(cells[best]["test"]),
                    "mean_s": round(statistics.mean(cells[best]["s"]), 1),
                    "grid": {g: {"val": summary(c["val"]), "test": summary(c["test"])} for g, c in cells.items()},
                }
            row["gain_points"] = round(
                100 * (row["finetuned"]["test_accuracy"]["mean"] - row["scratch"]["test_accuracy"]["mean"]), 2
            )
            if n == 100:
                row["bar"] = "fine-tuned >= scratch + 5 points"
                row["pass"] = row["gain_points"] >= 5
            result["rows"].append(row)
            ft, sc = row["finetuned"], row["scratch"]
            print(
                f"{model} {n}/class: fine-tuned ({ft['chosen']}) {ft['test_accuracy']['mean']:.4f} ± "
                f"{ft['test_accuracy']['std']:.4f} vs scratch ({sc['chosen']}) {sc['test_accuracy']['mean']:.4f} ± "
                f"{sc['test_accuracy']['std']:.4f}: {row['gain_points']:+.2f} points",
                flush=True,
            )
            print(json.dumps(row), flush=True)
    OUT.mkdir(exist_ok=True)
    (OUT / "transfer.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

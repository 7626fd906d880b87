"""Quality of the bundled recipes on real data, with wall times. ``make bench`` runs it.

    python benchmarks/quality.py [--only digits_cnn,mnist_cnn]

Reports: digits CNN / MLP test accuracy, diabetes R² (with a least-squares linear baseline on the same split),
and MNIST CNN test accuracy with the wall time until test accuracy first reached 99% (time counted from the
start of training, data already loaded; the per-epoch test evaluation used to detect it is excluded).
Writes benchmarks/out/quality.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

import deepkit
from deepkit.data import DataConfig, build_data
from deepkit.recipe import resolve_recipe
from deepkit.train import Callback

OUT = Path(__file__).parent / "out"
BARS = {
    "digits_cnn": ("accuracy", 0.98),
    "digits_mlp": ("accuracy", 0.96),
    "diabetes_regression": ("r2", 0.40),
    "mnist_cnn": ("accuracy", 0.99),
}


class TimeToAccuracy(Callback):
    """Evaluates the test split after every epoch; records training wall time when accuracy first hits target."""

    def __init__(self, data, target: float):
        self.data, self.target = data, target
        self.t_start = self.excluded = 0.0
        self.reached: float | None = None
        self.curve: list[tuple[int, float, float]] = []

    def on_fit_start(self, trainer):
        self.t_start = time.perf_counter()

    def on_epoch_end(self, trainer, logs):
        t0 = time.perf_counter()
        acc = trainer.evaluate(trainer.task, self.data, "test")["accuracy"]
        trainer.task.model.train()
        elapsed = t0 - self.t_start - self.excluded
        self.excluded += time.perf_counter() - t0
        self.curve.append((int(logs["epoch"]), elapsed, acc))
        if self.reached is None and acc >= self.target:
            self.reached = elapsed


def run_recipe(name: str) -> dict:
    rec = resolve_recipe(name)
    t0 = time.perf_counter()
    data = build_data(rec.data, rec.task.name)
    t_data = time.perf_counter() - t0
    cbs = [TimeToAccuracy(data, 0.99)] if name == "mnist_cnn" else []
    t0 = time.perf_counter()
    res = deepkit.train(
        name, "trainer.progress=none", data=data, out=OUT / "runs" / name, overwrite=True, callbacks=cbs
    )
    row = {
        "recipe": name,
        "metrics": res.metrics,
        "train_s": round(time.perf_counter() - t0, 1),
        "data_s": round(t_data, 1),
        "epochs": len(res.history),
    }
    if cbs:
        row["time_to_99_s"] = None if cbs[0].reached is None else round(cbs[0].reached, 1)
        row["test_acc_by_epoch"] = [(e, round(t, 1), round(a, 4)) for e, t, a in cbs[0].curve]
    if name == "diabetes_regression":
        from sklearn.linear_model import LinearRegression
        from sklearn.metrics import r2_score

        (xtr, ytr), (xte, yte) = data.train, data.test
        lin = LinearRegression().fit(xtr.numpy(), ytr.numpy().ravel())
        row["linear_baseline_r2"] = round(float(r2_score(yte.numpy().ravel(), lin.predict(xte.numpy()))), 4)
        seeds = []
        for s in range(5):
            d = build_data(DataConfig(**{**rec.data.__dict__, "split_seed": s}), "regression")
            r = deepkit.train(name, "trainer.progress=none", data=d, out=OUT / "runs" / f"{name}_s{s}", overwrite=True)
            seeds.append(r.metrics["r2"])
        row["r2_over_5_splits"] = {"mean": round(float(np.mean(seeds)), 4), "std": round(float(np.std(seeds)), 4)}
    key, bar = BARS[name]
    row["bar"] = f"{key} >= {bar}"
    row["pass"] = bool(res.metrics[key] >= bar)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(BARS))
    args = ap.parse_args()
    OUT.mkdir(exist_ok=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    env = {
        "commit": commit,
        "machine": f"{platform.machine()} {torch.get_num_threads()} threads",
        "torch": str(torch.__version__),
        "date": time.strftime("%Y-%m-%d"),
    }
    rows = []
    for name in args.only.split(","):
        try:
            rows.append(run_recipe(name))
        except deepkit.DeepkitError as e:  # e.g. MNIST not present
            rows.append({"recipe": name, "skipped": str(e)})
        print(json.dumps(rows[-1]))
    (OUT / "quality.json").write_text(json.dumps({"env": env, "rows": rows}, indent=1))
    print(f"\n{env}")
    for r in rows:
        if "skipped" in r:
            print(f"{r['recipe']:<22} skipped: {r['skipped']}")
            continue
        m = "  ".join(f"{k} {v:.4f}" for k, v in r["metrics"].items())
        extra = f"  time to 99%: {r.get('time_to_99_s')} s" if "time_to_99_s" in r else ""
        print(f"{r['recipe']:<22} {'PASS' if r['pass'] else 'FAIL'} ({r['bar']})  {m}  train {r['train_s']} s{extra}")


if __name__ == "__main__":
    main()

"""Recommenders on MovieLens 100k (issue 17): every model and baseline on the same splits, by the same code.

* ``explicit``: rating prediction on MovieLens' canonical folds u1..u5 (train on ``uN.base`` less a 5% validation
  share that picks the epoch, test on ``uN.test``): RMSE, MAE (predictions clipped to 1..5), training time, for each
  model and the global-mean and user+item-bias baselines (the runs' own reports, computed on the same split).
* ``implicit``: leave-one-out (each user's latest rating is the test item, the one before validation), every rating
  an interaction; full-ranking HR@10 and NDCG@10 over every item the user has not interacted with before, and the
  sampled protocol's HR@10 / NDCG@10 (1 held-out item + 99 negatives drawn once per seed and saved in each run: the
  models of a seed are scored on the same candidates), for most popular, GMF, NeuMF (from the seed's trained GMF and
  NCF-MLP runs, as in He et al. 2017) and SASRec, over three seeds (``data.seed`` = ``trainer.seed``).

Every run is a plain ``deepkit.train`` of a bundled recipe; results land in ``benchmarks/out/recommenders/`` (a run
already finished there is reused, so an interrupted benchmark continues), ``summary.json`` collects them, and
``table`` prints the Markdown for RESULTS.md. Heavy: run it under the shared lock, e.g.

    export DEEPKIT_DATA=/path/to/datasets OMP_NUM_THREADS=1
    taskset -c 1 flock /tmp/deepkit-core1.lock python benchmarks/recommenders.py explicit
    taskset -c 1 flock /tmp/deepkit-core1.lock python benchmarks/recommenders.py implicit
    python benchmarks/recommenders.py table
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import time
from pathlib import Path

OUT = Path(__file__).parent / "out" / "recommenders"
FOLDS = ["u1", "u2", "u3", "u4", "u5"]
SEEDS = [0, 1, 2]
THREADS = ["trainer.threads=1", "trainer.progress=none"]

# explicit ratings: (recipe, overrides); the NCF models predict the offset from the training mean with MSE (with
# the biased-MF recipe's data and loss, but larger batches, a higher learning rate and fewer epochs: untuned)
NCF_RATING = ["data.batch_size=512", "trainer.optimizer.lr=0.003", "task.reg=0.05", "trainer.epochs=30"]
EXPLICIT = {
    "biased_mf": ("movielens_mf", []),
    "i_autorec": ("movielens_autorec", []),
    "two_tower": ("movielens_two_tower", []),
    # GC-MC (Berg et al. 2017): graph auto-encoder, cross-entropy over the rating levels; the recipe's side features
    # (age/gender/occupation, year/genres) on or off
    "gcmc": ("movielens_gcmc", ["model.side_features=false"]),
    "gcmc_features": ("movielens_gcmc", ["model.side_features=true"]),
    "gmf": ("movielens_mf", ["model.name=gmf", "model.dim=64", *NCF_RATING]),
    "ncf_mlp": ("movielens_mf", ["model.name=ncf_mlp", "model.layers=[128,64,32]", *NCF_RATING]),
    "neumf": ("movielens_mf", ["model.name=neumf", "model.dim=64", "model.layers=[128,64,32]", *NCF_RATING]),
}
IMPLICIT = {
    "gmf": ("movielens_gmf", []),
    "ncf_mlp": ("movielens_ncf_mlp", []),
    "neumf": ("movielens_neumf", []),  # + the seed's GMF and MLP runs as pretraining
    "sasrec": ("movielens_sasrec", ["trainer.epochs=50"]),  # the recipe's 100 capped at 50 for the 2-core budget
}
RATING_KEYS = ("rmse", "mae")
RANKING_KEYS = ("ndcg@10", "hr@10", "sampled_ndcg@10", "sampled_hr@10", "recall@10", "map@10", "coverage@10")


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"


def train(recipe: str, overrides: list[str], out: Path) -> dict:
    """One run (or the finished one already in ``out``): its test metrics, training seconds and best epoch."""
    import deepkit

    if not (out / "results.json").is_file():
        t0 = time.perf_counter()
        deepkit.train(recipe, *overrides, *THREADS, out=out, overwrite=True)
        (out / "wall_seconds.txt").write_text(f"{time.perf_counter() - t0:.1f}\n")
    metrics = json.loads((out / "results.json").read_text())["metrics"]
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    wall = out / "wall_seconds.txt"
    return {
        "metrics": metrics,
        "train_seconds": float(rows[-1]["time"]),
        "wall_seconds": float(wall.read_text()) if wall.is_file() else None,
        "epochs": len(rows),
    }


def explicit(models: list[str], folds: list[str]) -> dict:
    out: dict = {}
    for name in models:
        recipe, ov = EXPLICIT[name]
        for fold in folds:
            r = train(recipe, [*ov, f"data.split={fold}"], OUT / "explicit" / name / fold)
            out.setdefault(name, {})[fold] = r
            m = r["metrics"]
            secs = r["train_seconds"]
            print(f"{name:<10} {fold}: rmse {m['rmse']:.4f}  mae {m['mae']:.4f}  ({secs:.0f} s)", flush=True)
            for base in ("global_mean", "biases"):
                out.setdefault(f"baseline_{base}", {})[fold] = {
                    "metrics": {k: m[f"baseline_{base}_{k}"] for k in RATING_KEYS}
                }
    return out


def implicit(models: list[str], seeds: list[int]) -> dict:
    out: dict = {}
    for seed in seeds:
        seed_ov = [f"data.seed={seed}", f"trainer.seed={seed}"]
        for name in models:
            recipe, ov = IMPLICIT[name]
            if name == "neumf":
                base = OUT / "implicit"
                for needed in ("gmf", "ncf_mlp"):
                    if needed not in out or seed not in out[needed]:
                        rec, o = IMPLICIT[needed]
                        out.setdefault(needed, {})[seed] = train(rec, [*o, *seed_ov], base / needed / f"seed{seed}")
                ov = [*ov, f"model.pretrained_gmf={base / 'gmf' / f'seed{seed}'}",
                      f"model.pretrained_mlp={base / 'ncf_mlp' / f'seed{seed}'}"]  # fmt: skip
            r = train(recipe, [*ov, *seed_ov], OUT / "implicit" / name / f"seed{seed}")
            out.setdefault(name, {})[seed] = r
            m = r["metrics"]
            print(
                f"{name:<8} seed {seed}: ndcg@10 {m['ndcg@10']:.4f}  hr@10 {m['hr@10']:.4f}  sampled hr@10 "
                f"{m['sampled_hr@10']:.4f}  ({r['train_seconds']:.0f} s)",
                flush=True,
            )
            out.setdefault("most_popular", {})[seed] = {
                "metrics": {k: m[f"baseline_most_popular_{k}"] for k in RANKING_KEYS}
            }
    return out


def spread(values: list[float]) -> str:
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.4f} ± {sd:.4f}"


def mean_seconds(runs) -> str:
    """The runs' mean training seconds ("-" for baselines, which have none)."""
    secs = [r["train_seconds"] for r in runs if "train_seconds" in r]
    return f"{statistics.fmean(secs):.0f}" if secs else "-"


def table(summary: dict) -> str:
    lines = []
    ex = summary.get("explicit")
    if ex:
        lines += [
            "| model | RMSE (mean ± sd over folds) | MAE | RMSE per fold u1..u5 | train s / fold |",
            "|---|---|---|---|---|",
        ]
        for name, folds in ex.items():
            rmse = [f["metrics"]["rmse"] for f in folds.values()]
            mae = [f["metrics"]["mae"] for f in folds.values()]
            t = mean_seconds(folds.values())
            per = " / ".join(f"{v:.3f}" for v in rmse)
            lines.append(f"| {name} | {spread(rmse)} | {spread(mae)} | {per} | {t} |")
        lines.append("")
    im = summary.get("implicit")
    if im:
        lines += [
            "| model | NDCG@10 full | HR@10 full | NDCG@10 sampled | HR@10 sampled | coverage@10 | train s / seed |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, seeds in im.items():
            m = [s["metrics"] for s in seeds.values()]
            t = mean_seconds(seeds.values())
            cols = [spread([x[k] for x in m]) for k in ("ndcg@10", "hr@10", "sampled_ndcg@10", "sampled_hr@10")]
            cov = spread([x["coverage@10"] for x in m])
            lines.append(f"| {name} | {' | '.join(cols)} | {cov} | {t} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["explicit", "implicit", "table"])
    parser.add_argument("--models", default=None, help="comma-separated subset")
    parser.add_argument("--folds", default=",".join(FOLDS))
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "summary.json"
    summary = json.loads(path.read_text()) if path.is_file() else {}
    if args.what == "explicit":
        models = args.models.split(",") if args.models else list(EXPLICIT)
        found = explicit(models, args.folds.split(","))
        for name, folds in found.items():  # merged fold by fold: a run of some folds keeps the others
            summary.setdefault("explicit", {}).setdefault(name, {}).update(folds)
    elif args.what == "implicit":
        models = args.models.split(",") if args.models else ["gmf", "ncf_mlp", "neumf", "sasrec"]
        found = implicit(models, [int(s) for s in args.seeds.split(",")])
        summary.setdefault("implicit", {}).update({k: {str(s): v for s, v in d.items()} for k, d in found.items()})
    if args.what != "table":
        summary["commit"] = commit()
        path.write_text(json.dumps(summary, indent=1))
    print(table(summary))


if __name__ == "__main__":
    main()

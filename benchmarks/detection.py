"""Object detection on this CPU: the quality bars of issue 14, the two-stage / single-shot trade-off, and coco128.

    flock /tmp/deepkit-heavy.lock python benchmarks/detection.py [--runs DIR] [--only scenes,tradeoff,coco128]
                                                                 [--reuse]

1. MNIST scenes (``scenes_faster_rcnn``, ``scenes_retinanet``, ``scenes_fcos``): each recipe trained from scratch
   on one torch thread; its training time (the Trainer's own clock: training steps, not validation) must stay
   within 30 minutes, and its test mAP@.5 (1,000 scenes of MNIST's test digits) must reach the bar: two-stage
   >= 0.90, single-shot >= 0.85.
2. Trade-off on the same test set: inference images/s (batch 1 and batch 16, one thread, eval mode) next to mAP,
   mAP@.5 and mAP for small / medium objects (COCO areas; the scenes hold no object above 96² px).
3. coco128 from scratch (``coco128_faster_rcnn``, ``coco128_retinanet``): test mAP as it comes, and the check that
   deepkit's evaluation equals pycocotools run on JSON files (the official instances JSON cut to the test images,
   and the detections written as COCO results) to 1e-6.

``--reuse`` takes a run directory that already has results.json instead of training again. Writes
benchmarks/out/detection.json and prints the Markdown tables for RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import platform
import subprocess
import time
from pathlib import Path

import torch

import deepkit

OUT = Path(__file__).parent / "out"
BUDGET_S = 30 * 60
BARS = {
    "scenes_faster_rcnn": ("two-stage", 0.90),
    "scenes_retinanet": ("single-shot", 0.85),
    "scenes_fcos": ("single-shot, anchor-free", 0.85),
}
COCO128 = ("coco128_faster_rcnn", "coco128_retinanet")


def train(recipe: str, runs: Path, reuse: bool) -> tuple[Path, float]:
    out = runs / recipe
    if reuse and (out / "results.json").is_file():
        return out, float("nan")
    t0 = time.perf_counter()
    deepkit.train(recipe, "trainer.threads=1", "trainer.progress=plain", out=out, overwrite=True)
    return out, time.perf_counter() - t0


def train_seconds(run: Path) -> float:
    """The Trainer's clock at the end: seconds spent in training steps (metrics.csv ``time``, last row)."""
    import csv

    with open(run / "metrics.csv", newline="") as f:
        return float(list(csv.DictReader(f))[-1]["time"])


def inference_speed(run: Path, batch: int, limit: int = 400) -> float:
    """Images/s of the trained detector in eval mode on the run's test images (one thread, no data loading)."""
    from deepkit.api import open_run

    torch.set_num_threads(1)
    opened = open_run(run)
    model = opened.task.model.eval()
    loader = opened.data.loader("test")
    images = [loader.sample(i)[0] for i in range(min(limit, len(opened.data.sets["test"])))]
    with torch.no_grad():
        model(images[:batch])  # warm-up
        t0 = time.perf_counter()
        for i in range(0, len(images), batch):
            model(images[i : i + batch])
    return len(images) / (time.perf_counter() - t0)


def pycocotools_check(run: Path) -> dict[str, float]:
    """deepkit's evaluation of the run on its test split (``Trainer.evaluate``, the same path as ``deepkit eval``)
    vs pycocotools on files: the official instances JSON cut to the test images as ground truth, and the very
    detections deepkit evaluated (its evaluator keeps them, COCO ids) as the results file. Equal numbers mean that
    deepkit's reading of the data (boxes, areas, crowd flags, image sizes) and its use of COCOeval add nothing."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from deepkit.api import open_run
    from deepkit.data.sources import data_root
    from deepkit.metrics.coco import STATS
    from deepkit.train.trainer import Trainer, resolve_device

    opened = open_run(run)
    trainer = Trainer(progress="none")
    trainer.device = resolve_device("auto")
    ours = trainer.evaluate(opened.task, opened.data, "test")
    results = opened.task.evaluator.results  # the detections just evaluated
    ids = {im.image_id for im in opened.data.sets["test"].images}
    official = json.loads((data_root() / "coco128" / "annotations" / "instances_train2017.json").read_text())
    official["images"] = [im for im in official["images"] if im["id"] in ids]
    official["annotations"] = [a for a in official["annotations"] if a["image_id"] in ids]
    OUT.mkdir(parents=True, exist_ok=True)
    gt_file, det_file = OUT / f"{run.name}_gt.json", OUT / f"{run.name}_detections.json"
    gt_file.write_text(json.dumps(official))
    det_file.write_text(json.dumps(results))
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_file))
        ev = COCOeval(gt, gt.loadRes(str(det_file)) if results else COCO(), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    diffs = {}
    for key, ref in zip(STATS, ev.stats, strict=True):
        mine = ours.get(key, float("nan"))
        diffs[key] = 0.0 if (ref < 0 and math.isnan(mine)) else abs(mine - ref)
    return {"max_abs_diff": max(diffs.values()), "pycocotools_map": float(ev.stats[0]),
            "pycocotools_map50": float(ev.stats[1]), "detections": len(results), "test_images": len(ids)}  # fmt: skip


def fmt(v: float) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=Path("runs/bench_detection"))
    ap.add_argument("--only", default="scenes,tradeoff,coco128")
    ap.add_argument("--reuse", action="store_true", help="use runs that already have results.json")
    args = ap.parse_args()
    parts = set(args.only.split(","))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    report: dict = {"commit": commit, "machine": platform.processor() or platform.machine(), "torch": torch.__version__}
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "detection.json"
    if path.is_file():
        report = {**json.loads(path.read_text()), **report}

    if "scenes" in parts or "tradeoff" in parts:
        for recipe, (kind, bar) in BARS.items():
            run, wall = train(recipe, args.runs, args.reuse or "scenes" not in parts)
            m = json.loads((run / "results.json").read_text())["metrics"]
            seconds = train_seconds(run)
            row = report.setdefault("scenes", {}).setdefault(recipe, {})
            row.update(kind=kind, bar=bar, run=str(run), train_s=seconds, map50=m["map50"], map=m["map"],
                       map_small=m.get("map_small"), map_medium=m.get("map_medium"), map_large=m.get("map_large"),
                       passed=bool(m["map50"] >= bar and seconds <= BUDGET_S))  # fmt: skip
            if math.isfinite(wall):
                row["wall_s"] = wall
            if "tradeoff" in parts:
                row["images_per_s_batch1"] = inference_speed(run, 1, 200)
                row["images_per_s_batch16"] = inference_speed(run, 16)
            print(f"{recipe}: test mAP@.5 {m['map50']:.4f} (bar {bar}), training {seconds / 60:.1f} min -> "
                  f"{'PASS' if row['passed'] else 'FAIL'}", flush=True)  # fmt: skip
            path.write_text(json.dumps(report, indent=1))

    if "coco128" in parts:
        for recipe in COCO128:
            run, wall = train(recipe, args.runs, args.reuse)
            m = json.loads((run / "results.json").read_text())["metrics"]
            check = pycocotools_check(run)
            row = {"run": str(run), "train_s": train_seconds(run), "map": m.get("map"), "map50": m.get("map50")}
            report.setdefault("coco128", {})[recipe] = {**row, **check}
            print(f"{recipe}: test mAP {m.get('map', float('nan')):.4f}, mAP@.5 {m.get('map50', float('nan')):.4f}; "
                  f"deepkit vs pycocotools max |diff| {check['max_abs_diff']:.2e}", flush=True)  # fmt: skip
            path.write_text(json.dumps(report, indent=1))

    print("\n| detector | kind | train min | test mAP@.5 (bar) | mAP | small | medium | large | img/s b1 | img/s b16 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for recipe, r in report.get("scenes", {}).items():
        print(f"| {recipe} | {r['kind']} | {r['train_s'] / 60:.1f} | {fmt(r['map50'])} (>= {r['bar']}) "
              f"{'pass' if r['passed'] else 'FAIL'} | {fmt(r['map'])} | {fmt(r['map_small'])} | "
              f"{fmt(r['map_medium'])} | {fmt(r['map_large'])} | {r.get('images_per_s_batch1', float('nan')):.1f} | "
              f"{r.get('images_per_s_batch16', float('nan')):.1f} |")  # fmt: skip
    for recipe, r in report.get("coco128", {}).items():
        print(f"| {recipe} | coco128 | {r['train_s'] / 60:.1f} | {fmt(r['map50'])} | {fmt(r['map'])} | "
              f"pycocotools {fmt(r['pycocotools_map'])}, max diff {r['max_abs_diff']:.1e} |")  # fmt: skip


if __name__ == "__main__":
    main()

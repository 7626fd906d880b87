"""deepkit's COCO evaluation equals pycocotools' own numbers: the ground truth of coco128 (crowd regions, official
areas) read by deepkit's COCO reader, and a fixed set of detections, evaluated by deepkit (CocoEvaluator, fed
xyxy boxes and class indices) and by pycocotools straight from the JSON files (COCO(json).loadRes(json))."""

from __future__ import annotations

import contextlib
import io
import json
import math

import numpy as np
import pytest

from conftest import datasets_root
from deepkit.data.detection import read_coco
from deepkit.metrics.coco import STATS, CocoEvaluator, format_table

COCO128 = datasets_root() / "coco128" / "annotations" / "instances_train2017.json"


def fixed_detections(ds, seed: int = 0) -> list[dict]:
    """For each image: its ground-truth boxes jittered (some with the wrong class, some missed) plus random false
    positives; scores random. COCO results format with the JSON's category ids."""
    rng = np.random.default_rng(seed)
    ids = ds.coco_ids()
    out = []
    for im in ds.images:
        for b, lab in zip(im.boxes, im.labels, strict=True):
            if rng.random() < 0.15:
                continue
            w, h = b[2] - b[0], b[3] - b[1]
            x1, y1 = b[0] + rng.normal(0, 0.1) * w, b[1] + rng.normal(0, 0.1) * h
            cls = int(lab) if rng.random() > 0.1 else int(rng.integers(len(ids)))
            bw, bh = float(w * rng.uniform(0.8, 1.2)), float(h * rng.uniform(0.8, 1.2))
            out.append({"image_id": im.image_id, "category_id": ids[cls], "score": float(rng.random()),
                        "bbox": [float(x1), float(y1), bw, bh]})  # fmt: skip
        for _ in range(int(rng.integers(0, 4))):
            x, y = rng.uniform(0, im.width - 20), rng.uniform(0, im.height - 20)
            out.append({"image_id": im.image_id, "category_id": ids[int(rng.integers(len(ids)))],
                        "score": float(rng.random()), "bbox": [float(x), float(y), 20.0, 30.0]})  # fmt: skip
    return out


def pycocotools_stats(gt_json, results: list[dict]) -> np.ndarray:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_json))
        ev = COCOeval(gt, gt.loadRes(results), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats, ev.eval["precision"]


@pytest.mark.skipif(not COCO128.is_file(), reason=f"coco128 not found at {COCO128} (set DEEPKIT_DATA)")
def test_deepkit_coco_evaluation_equals_pycocotools_on_coco128(tmp_path):
    ds = read_coco(COCO128, COCO128.parents[1] / "images" / "train2017")
    assert len(ds) == 128 and ds.num_objects == 939 and int(sum(im.iscrowd.sum() for im in ds.images)) == 10
    results = fixed_detections(ds)
    (tmp_path / "dets.json").write_text(json.dumps(results))
    ref, precision = pycocotools_stats(COCO128, json.loads((tmp_path / "dets.json").read_text()))

    ev = CocoEvaluator(ds.class_names, ds.category_ids)
    index = {cid: i for i, cid in enumerate(ds.category_ids)}
    for im in ds.images:
        ev.add_ground_truth(im.image_id, im.width, im.height, im.boxes, im.labels, im.iscrowd, im.areas)
        mine = [r for r in results if r["image_id"] == im.image_id]
        xywh = np.array([r["bbox"] for r in mine]).reshape(-1, 4)
        ev.add_detections(im.image_id, np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1),
                          [r["score"] for r in mine], [index[r["category_id"]] for r in mine])  # fmt: skip
    got = ev.compute()
    assert 0.2 < ref[1] < 0.95, ref  # a non-trivial test: neither perfect nor empty
    for key, value in zip(STATS, ref, strict=True):
        if value < 0:
            assert math.isnan(got[key])
        else:
            assert abs(got[key] - value) <= 1e-6, (key, got[key], value)
    for k in range(len(ds.category_ids)):  # per-class AP, from pycocotools' precision array
        p = precision[:, :, k, 0, -1]
        p = p[p > -1]
        name = f"ap_{ds.class_names[k]}"
        assert (math.isnan(got[name]) and not p.size) or abs(got[name] - p.mean()) <= 1e-6, name
    table = format_table(got, ds.class_names)
    assert f"= {ref[0]:.3f}" in table.splitlines()[0] and "person" in table


def test_evaluator_hand_cases():
    ev = CocoEvaluator(["a", "b"])
    ev.add_ground_truth(1, 100, 100, [[10, 10, 50, 50], [60, 60, 90, 90]], [0, 1])
    ev.add_ground_truth(2, 100, 100, np.zeros((0, 4)), [])  # a negative image
    ev.add_detections(1, [[10, 10, 50, 50], [60, 60, 90, 90]], [0.9, 0.8], [0, 1])
    m = ev.compute()
    assert m["map"] == pytest.approx(1.0) and m["map50"] == pytest.approx(1.0)
    assert math.isnan(m["map_large"])  # no large object: pycocotools' -1 becomes NaN
    ev.add_detections(2, [[0, 0, 30, 30]], [0.95], [0])  # a confident false positive on the negative image
    assert ev.compute()["ap_a"] < 1.0
    ev.reset()
    assert math.isnan(ev.compute()["map"])

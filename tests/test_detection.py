"""The detection family end to end through the CLI: train (two-stage on MNIST scenes, single-shot on YOLO files),
eval (the COCO numbers), predict (boxes drawn, --json COCO results, --conf, --iou), convert, and the bad-input cases
of issue 14 (point 6) as one-line errors or counted notes in log.txt."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import deepkit
from conftest import datasets_root
from deepkit.data.detection import read_detection, write_detection
from deepkit.data.scenes import ScenesConfig, generate_scenes
from deepkit.families.detection import DetectionPredictor

MNIST = datasets_root() / "mnist"
COCO128 = datasets_root() / "coco128"
TINY = ["data.scenes.train=24", "data.scenes.val=8", "data.scenes.test=8", "data.batch_size=4", "trainer.epochs=1",
        "trainer.progress=none", "trainer.threads=1"]  # fmt: skip


@pytest.fixture(scope="module")
def scenes_run(tmp_path_factory) -> Path:
    if not (MNIST / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"MNIST not found at {MNIST}")
    out = tmp_path_factory.mktemp("det") / "frcnn"
    deepkit.train("scenes_faster_rcnn", *TINY, out=out)
    return out


def test_a_two_stage_run_reports_the_coco_table_and_draws_boxes(scenes_run):
    results = json.loads((scenes_run / "results.json").read_text())
    m = results["metrics"]
    assert {"map", "map50", "map75", "map_small", "map_medium", "mar_100"} <= set(m)
    assert all(0 <= v <= 1 for v in m.values())
    assert {f"ap_{d}" for d in "0123456789"} & set(m)  # per-class AP at the end of the run
    assert "map_large" not in m  # no large digit: pycocotools' -1, left out as NaN
    table = (scenes_run / "coco_table.txt").read_text()
    assert "Average Precision  @[IoU=0.50:0.95 | area=all | maxDets=100]" in table and "area=large" in table
    assert (scenes_run / "plots" / "detections.png").is_file() and (scenes_run / "plots" / "ground_truth.png").is_file()
    assert len(list((scenes_run / "samples").glob("test_*.png"))) == 8
    header = (scenes_run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "val_map" in header and not any(h.startswith("val_ap_") or h.startswith("val_mar") for h in header)
    log = (scenes_run / "log.txt").read_text()
    assert "train: 24 images" in log
    meta = deepkit.load(scenes_run).saved
    assert meta.class_names == [str(i) for i in range(10)] and meta.channels == 1 and meta.input_size == [128, 128]


def test_eval_prints_the_coco_numbers(scenes_run, deepkit_cli):
    code, out, err = deepkit_cli("eval", scenes_run, "--json")
    assert code == 0, err
    got = json.loads(out)
    saved = json.loads((scenes_run / "results.json").read_text())["metrics"]
    assert got["map"] == pytest.approx(saved["map"], abs=1e-9) and "ap_7" in got
    code, out, err = deepkit_cli("eval", scenes_run)  # the COCO table, as pycocotools prints it, AP per class
    assert code == 0, err
    assert "Average Precision  @[IoU=0.50:0.95 | area=all | maxDets=100] =" in out
    assert f"= {got['map50']:.3f}" in out and "area=small" in out and "per-class AP" in out


def test_predict_draws_boxes_and_prints_coco_results(scenes_run, deepkit_cli, tmp_path):
    samples = sorted((scenes_run / "samples").glob("*.png"))[:2]
    code, out, err = deepkit_cli("predict", scenes_run, *samples, "--out", tmp_path / "drawn", "--conf", "0.05")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 2 and all("object(s)" in ln and str(tmp_path / "drawn") in ln for ln in lines)
    drawn = Image.open(tmp_path / "drawn" / samples[0].name)
    assert drawn.mode == "RGB" and drawn.size == (256, 256)  # small images are drawn at 2x
    code, out, err = deepkit_cli("predict", scenes_run, *samples, "--json", "--conf", "0.05", "--iou", "0.3")
    assert code == 0, err
    results = json.loads(out)
    assert isinstance(results, list) and results
    r = results[0]
    assert {"image_id", "category_id", "bbox", "score"} <= set(r) and r["image_id"] in (1, 2)
    assert 1 <= r["category_id"] <= 10 and len(r["bbox"]) == 4 and r["score"] >= 0.05
    code, out, _ = deepkit_cli("predict", scenes_run, *samples, "--json", "--conf", "1.0")
    assert code == 0 and json.loads(out) == []
    predictor = deepkit.load(scenes_run)
    assert isinstance(predictor, DetectionPredictor)
    loose = predictor.predict(samples, conf=0.01, iou=0.9)
    tight = predictor.predict(samples, conf=0.01, iou=0.2)
    assert sum(len(d["boxes"]) for d in tight) <= sum(len(d["boxes"]) for d in loose)
    assert predictor.model.postprocess_thresholds() == (0.05, 0.5)  # the model's own thresholds are restored


def test_predict_options_a_run_does_not_take_are_one_line_errors(digits_run, deepkit_cli):
    out, _ = digits_run
    sample = sorted((out / "samples").glob("*.png"))[0]
    code, _, err = deepkit_cli("predict", out, sample, "--conf", "0.5")
    assert code == 2 and err.strip().splitlines() == [f"error: --conf does not apply to {out} (a 'classification' run)"]


def write_yolo_scenes(root: Path, n: int = 12) -> Path:
    """A YOLO data set of generated scenes, with a negative image, a greyscale-as-RGB mix and one box sticking out."""
    g = np.random.default_rng(0)
    digits = np.zeros((40, 28, 28), np.uint8)
    for i in range(40):
        digits[i, 5 : 5 + int(g.integers(12, 20)), 9 : 9 + int(g.integers(5, 12))] = 255
    scenes = generate_scenes(digits, np.arange(40) % 3, n, ScenesConfig(canvas=64, max_digits=3, max_size=30))
    ds = scenes.to_detection_set()
    ds.class_names = ["a", "b", "c"]
    ds.images[0].boxes, ds.images[0].labels = np.zeros((0, 4), np.float32), np.zeros(0, np.int64)  # a negative
    ds.images[0].iscrowd = ds.images[0].areas = np.zeros(0)
    ds.images[1].pixels = np.repeat(ds.images[1].pixels[..., None], 3, 2)  # an RGB file among greyscale ones
    yaml_path = write_detection(ds, root, "yolo")
    label = root / "labels" / "train" / "scene_000002.txt"
    label.write_text(label.read_text() + "1 0.95 0.5 0.2 0.2\n")  # sticks out of the image on the right
    return yaml_path


def test_a_single_shot_detector_trains_on_yolo_files_with_negatives_and_clipped_boxes(tmp_path):
    yaml_path = write_yolo_scenes(tmp_path / "yolo")
    run = deepkit.train(
        "scenes_retinanet", "data.name=yolo", f"data.path={yaml_path}", "data.val_split=0.25", "data.test_split=0",
        "data.channels=1", "data.batch_size=4", "trainer.epochs=1", "trainer.progress=none", out=tmp_path / "run",
    )  # fmt: skip
    assert "map50" in run.metrics
    log = (run.run_dir / "log.txt").read_text()
    assert "clipped 1 box(es) that stuck out of their image" in log
    assert "without objects" in log and "train: 9 images" in log
    assert deepkit.load(run.run_dir).saved.class_names == ["a", "b", "c"]


def test_convert_between_the_three_formats_through_the_cli(tmp_path, deepkit_cli):
    yaml_path = write_yolo_scenes(tmp_path / "yolo", n=4)
    code, out, err = deepkit_cli("convert", yaml_path, tmp_path / "coco", "--to", "coco")
    assert code == 0, err
    assert out.strip().endswith(str(tmp_path / "coco" / "annotations" / "instances_train.json"))
    assert "clipped 1 box(es)" in err
    code, out, err = deepkit_cli("convert", tmp_path / "coco" / "annotations" / "instances_train.json",
                                 tmp_path / "voc", "--to", "voc")  # fmt: skip
    assert code == 0, err
    a, b = read_detection(yaml_path), read_detection(tmp_path / "voc", "voc", class_names=["a", "b", "c"])
    assert [len(im.boxes) for im in a.images] == [len(im.boxes) for im in b.images]
    assert all(np.allclose(x.boxes, y.boxes, atol=1e-3) for x, y in zip(a.images, b.images, strict=True))
    code, _, err = deepkit_cli("convert", yaml_path, tmp_path / "x", "--to", "tfrecord")
    assert code == 2 and "unknown target format 'tfrecord'" in err


@pytest.mark.parametrize(
    "case, message",
    [
        ("class", r"error: .*scene_000001\.txt:1: class id 5 is beyond the 3 class names \(0\.\.2\)"),
        ("corrupt", r"error: cannot read image .*scene_000003\.png: .*"),
        ("model", r"error: model 'resnet18' is not a detector; task 'detection' needs one of "),
    ],
)
def test_bad_detection_input_is_a_one_line_error(case, message, tmp_path, deepkit_cli):
    yaml_path = write_yolo_scenes(tmp_path / "yolo", n=6)
    args = ["train", "scenes_retinanet", "data.name=yolo", f"data.path={yaml_path}", "data.channels=1",
            "trainer.epochs=1", "trainer.progress=none", "--out", tmp_path / "run"]  # fmt: skip
    if case == "class":
        (tmp_path / "yolo" / "labels" / "train" / "scene_000001.txt").write_text("5 0.5 0.5 0.1 0.1\n")
    elif case == "corrupt":
        (tmp_path / "yolo" / "images" / "train" / "scene_000003.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    else:
        args.insert(3, "model.name=resnet18")
    code, _, err = deepkit_cli(*args)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    import re

    assert re.match(message, err.strip()), err
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(not COCO128.is_dir(), reason=f"coco128 not found at {COCO128}")
def test_coco128_builds_with_its_quirks(tmp_path):
    from deepkit.families.detection import DetectionDataConfig, build_detection_data

    data = build_detection_data(DetectionDataConfig(name="coco128", val_split=0.1, test_split=0.1))
    assert data.sizes() == {"train": 102, "val": 13, "test": 13} and len(data.class_names) == 80
    assert data.channels == 3 and any("without objects" in n for n in data.notes)
    split, grey = next((s, i) for s, ds in data.sets.items() for i, im in enumerate(ds.images)
                       if im.file.endswith("000000000086.jpg"))  # fmt: skip
    image, target = data.loader(split, seed=0).sample(grey)
    assert image.shape[0] == 3 and target["boxes"].shape[1] == 4  # the greyscale photo, as RGB


def test_bench_measures_a_detection_recipe(deepkit_cli):
    if not (MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"MNIST not found at {MNIST}")
    code, out, err = deepkit_cli("bench", "scenes_retinanet", "data.scenes.train=24", "data.scenes.val=0",
                                 "data.scenes.test=0", "data.batch_size=4", "trainer.threads=1", "--steps", "2",
                                 "--warmup", "1", "--json")  # fmt: skip
    assert code == 0, err
    result = json.loads(out.strip().splitlines()[-1])  # status lines ("loading data ...") come first
    assert result["samples_per_s"] > 0

"""Detection data: COCO/VOC/YOLO readers into one representation, conversion between them, box-aware augmentation,
the batch loader, the MNIST scenes generator, and the bad-input cases of issue 14 (point 6)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import datasets_root
from deepkit.data import box_augment as A
from deepkit.data.detection import (
    DetectionImage,
    DetectionSet,
    image_size,
    read_coco,
    read_detection,
    read_image_file,
    read_voc,
    read_yolo,
    write_detection,
)
from deepkit.data.detection_loader import DetectionLoader, to_tensor
from deepkit.data.scenes import ScenesConfig, generate_scenes, write_scenes
from deepkit.errors import DataError
from deepkit.families.detection import AugmentSection

COCO128 = datasets_root() / "coco128"
needs_coco128 = pytest.mark.skipif(not COCO128.is_dir(), reason=f"coco128 not found at {COCO128}")


def coco128() -> DetectionSet:
    return read_coco(COCO128 / "annotations" / "instances_train2017.json", COCO128 / "images" / "train2017")


def box_set(ds: DetectionSet, crowd: bool = True) -> dict[str, list]:
    out = {}
    for im in ds.images:
        keep = np.ones(len(im.boxes), bool) if crowd else ~im.iscrowd
        rows = sorted(
            (int(lab), *np.round(b, 2).tolist()) for b, lab in zip(im.boxes[keep], im.labels[keep], strict=True)
        )
        out[im.file.rsplit("/", 1)[-1].rsplit(".", 1)[0]] = rows
    return out


def close_sets(a: dict[str, list], b: dict[str, list], tol: float) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert len(a[k]) == len(b[k]), k
        for ra, rb in zip(a[k], b[k], strict=True):
            assert ra[0] == rb[0] and max(abs(x - y) for x, y in zip(ra[1:], rb[1:], strict=True)) <= tol, (k, ra, rb)


# --- readers -------------------------------------------------------------------------------------------------------
@needs_coco128
def test_coco128_json_and_yolo_labels_read_into_the_same_boxes():
    js = coco128()
    assert len(js) == 128 and js.num_objects == 939 and len(js.class_names) == 80
    assert js.class_names[:3] == ["person", "bicycle", "car"] and js.category_ids[-1] == 90  # COCO ids kept
    assert sum(1 for im in js.images if not len(im.boxes)) == 2  # two images without objects: valid negatives
    names = js.class_names
    yo = read_yolo(COCO128 / "images" / "train2017", names)
    assert len(yo) == 128 and yo.num_objects == 929  # YOLO has no crowd regions
    assert any("ignored 2 label file(s) without an image" in n for n in yo.notes)
    close_sets(box_set(js, crowd=False), box_set(yo), tol=0.01)


@needs_coco128
def test_the_greyscale_coco128_image_becomes_three_channels():
    path = COCO128 / "images" / "train2017" / "000000000086.jpg"
    pixels = read_image_file(path)
    assert pixels.ndim == 2  # mode L
    x = to_tensor(pixels, 3)
    assert x.shape[0] == 3 and torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])
    assert to_tensor(read_image_file(COCO128 / "images" / "train2017" / "000000000009.jpg"), 1).shape[0] == 1


@needs_coco128
def test_convert_round_trip_coco_yolo_voc_coco(tmp_path):
    js = coco128().subset(list(range(12)))
    js.notes = []
    yolo_yaml = write_detection(js, tmp_path / "yolo", "yolo")
    yo = read_detection(yolo_yaml)
    voc_dir = write_detection(yo, tmp_path / "voc", "voc")
    vo = read_voc(voc_dir, js.class_names)
    back = read_coco(write_detection(vo, tmp_path / "coco", "coco"))
    assert back.class_names == js.class_names and len(back) == 12
    close_sets(box_set(js, crowd=False), box_set(back), tol=0.01)
    assert (tmp_path / "yolo" / "images" / "train").is_dir() and any((tmp_path / "voc" / "JPEGImages").iterdir())
    assert back.images[0].file.endswith(".jpg") and image_size(back.images[0].file) == (640, 480)


def test_voc_reader_hand_made(tmp_path):
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "JPEGImages").mkdir()
    from PIL import Image

    Image.new("RGB", (40, 30)).save(tmp_path / "JPEGImages" / "a.jpg")
    (tmp_path / "Annotations" / "a.xml").write_text(
        "<annotation><filename>a.jpg</filename><size><width>40</width><height>30</height></size>"
        "<object><name>dog</name><difficult>0</difficult><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>10</xmax>"
        "<ymax>20</ymax></bndbox></object><object><name>cat</name><difficult>1</difficult><bndbox><xmin>5</xmin>"
        "<ymin>5</ymin><xmax>50</xmax><ymax>25</ymax></bndbox></object></annotation>"
    )
    ds = read_voc(tmp_path)
    assert ds.class_names == ["cat", "dog"]
    im = ds.images[0]
    assert im.boxes.tolist() == [[0, 1, 10, 20], [4, 4, 40, 25]]  # 1-based inclusive -> 0-based; clipped to 40
    assert im.labels.tolist() == [1, 0] and im.iscrowd.tolist() == [False, True]
    assert any("clipped 1 box" in n for n in ds.notes)
    with pytest.raises(DataError, match=r"class 'cat' is not in the class list"):
        read_voc(tmp_path, ["dog"])


# --- bad input -------------------------------------------------------------------------------------------------------
def write_yolo_set(root, label_text: str, names=("a", "b")):
    from PIL import Image

    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    Image.new("RGB", (100, 50)).save(root / "images" / "x.png")
    Image.new("L", (60, 60)).save(root / "images" / "empty.png")  # no label file: a negative
    (root / "labels" / "x.txt").write_text(label_text)
    (root / "data.yaml").write_text(json.dumps({"path": str(root), "train": "images", "names": list(names)}))
    return root / "data.yaml"


def test_yolo_boxes_outside_the_image_are_clipped_and_empty_ones_dropped_with_counts(tmp_path):
    yaml_path = write_yolo_set(tmp_path, "0 0.5 0.5 0.2 0.2\n1 0.95 0.5 0.2 0.4\n0 1.5 0.5 0.2 0.2\n1 0.3 0.3 0 0.1\n")
    ds = read_detection(yaml_path)
    x = next(im for im in ds.images if im.file.endswith("x.png"))
    empty = next(im for im in ds.images if im.file.endswith("empty.png"))
    assert x.boxes.tolist() == [[40, 20, 60, 30], [85, 15, 100, 35]]
    assert not len(empty.boxes)
    assert any("clipped 1 box(es)" in n for n in ds.notes) and any(
        "dropped 2 box(es) with zero area" in n for n in ds.notes
    )


def test_yolo_class_id_beyond_the_class_list_is_a_one_line_error(tmp_path):
    yaml_path = write_yolo_set(tmp_path, "0 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.1 0.1\n")
    with pytest.raises(DataError, match=r"x\.txt:2: class id 7 is beyond the 2 class names \(0\.\.1\)"):
        read_detection(yaml_path)


def test_coco_annotation_naming_a_missing_image_is_a_one_line_error(tmp_path):
    data = {"images": [{"id": 1, "file_name": "a.png", "width": 10, "height": 10}],
            "annotations": [{"id": 5, "image_id": 3, "category_id": 1, "bbox": [0, 0, 2, 2]}],
            "categories": [{"id": 1, "name": "a"}]}  # fmt: skip
    (tmp_path / "i.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"annotation 5 names image_id 3, which is not among the file's 1 images"):
        read_coco(tmp_path / "i.json")
    data["annotations"][0].update(image_id=1, category_id=9)
    (tmp_path / "i.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"annotation 5 has category_id 9"):
        read_coco(tmp_path / "i.json")


def test_a_corrupt_image_file_names_its_path(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(DataError, match=r"cannot read image .*broken\.jpg"):
        read_image_file(bad)
    with pytest.raises(DataError, match=r"cannot read image .*broken\.jpg"):
        image_size(bad)
    im = DetectionImage(str(tmp_path / "gone.png"), 10, 10, np.zeros((0, 4)), [])
    with pytest.raises(DataError, match=r"image not found: .*gone\.png"):
        im.load()


# --- augmentation ----------------------------------------------------------------------------------------------------
def test_flip_crop_letterbox_move_the_boxes():
    img = torch.zeros(1, 20, 40)
    img[:, 5:10, 2:8] = 1  # an object at x 2..8, y 5..10
    boxes = torch.tensor([[2.0, 5, 8, 10]])
    f, fb = A.hflip(img, boxes)
    assert fb.tolist() == [[32, 5, 38, 10]] and f[0, 5:10, 32:38].min() == 1
    c, cb, keep = A.crop(img, torch.tensor([[2.0, 5, 8, 10], [30, 0, 40, 20]]), (0, 0, 6, 20), 0.4)
    assert c.shape == (1, 20, 6) and cb.tolist() == [[2, 5, 6, 10]] and keep.tolist() == [True, False]
    lb, lbb, info = A.letterbox(img, boxes, 80)
    assert lb.shape == (1, 80, 80) and info == (2.0, 0, 20)
    assert lbb.tolist() == [[4, 30, 16, 40]] and torch.allclose(A.unletterbox(lbb, info), boxes)


def test_augment_is_a_function_of_its_generator():
    img = torch.rand(1, 64, 64)
    boxes = torch.tensor([[10.0, 10, 30, 40], [40, 40, 60, 60]])
    cfg = AugmentSection(hflip=0.5, scale=[0.6, 1.4], crop=0.5)
    a = A.augment(img, boxes, torch.tensor([1, 2]), cfg, np.random.default_rng([0, 1, 2]))
    b = A.augment(img, boxes, torch.tensor([1, 2]), cfg, np.random.default_rng([0, 1, 2]))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    for seed in range(20):  # the canvas stays 64x64 after scale jitter; boxes stay inside it
        out, bx, lab = A.augment(img, boxes, torch.tensor([1, 2]), AugmentSection(hflip=0.5, scale=[0.5, 1.5]),
                                 np.random.default_rng(seed))  # fmt: skip
        assert out.shape == (1, 64, 64) and len(bx) == len(lab)
        assert bool((bx >= 0).all()) and bool((bx <= 64).all())


# --- scenes and the loader -------------------------------------------------------------------------------------------
def fake_digits(n: int = 50) -> tuple[np.ndarray, np.ndarray]:
    g = np.random.default_rng(0)
    d = np.zeros((n, 28, 28), np.uint8)
    for i in range(n):
        h, w = int(g.integers(10, 20)), int(g.integers(4, 16))
        d[i, 4 : 4 + h, 8 : 8 + w] = 255
    return d, np.arange(n) % 10


def test_scenes_are_deterministic_and_their_boxes_and_masks_agree(tmp_path):
    digits, labels = fake_digits()
    cfg = ScenesConfig(canvas=96, max_digits=5, min_size=10, max_size=40)
    a, b = generate_scenes(digits, labels, 12, cfg, seed=3), generate_scenes(digits, labels, 12, cfg, seed=3)
    assert np.array_equal(a.images, b.images)
    assert all(np.array_equal(x, y) for x, y in zip(a.boxes, b.boxes, strict=True))
    assert not np.array_equal(a.images, generate_scenes(digits, labels, 12, cfg, seed=4).images)
    assert a.images.shape == (12, 96, 96) and all(1 <= len(bx) <= 5 for bx in a.boxes)
    heights = np.concatenate([bx[:, 3] - bx[:, 1] for bx in a.boxes])
    assert heights.min() >= 9 and heights.max() <= 41
    for bx, masks in zip(a.boxes, a.masks, strict=True):
        for box, m in zip(bx, masks, strict=True):
            ys, xs = np.where(m)
            assert len(ys) and xs.min() >= box[0] and xs.max() < box[2] and ys.min() >= box[1] and ys.max() < box[3]
    sem = a.semantic(0)
    assert set(np.unique(sem)) <= {0, *(int(lab) + 1 for lab in a.labels[0])}
    path = write_scenes(a, tmp_path, "test")
    import contextlib  # noqa: E401
    import io

    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(path))
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[1]))
    assert len(anns) == len(a.boxes[0])
    for ann, m in zip(anns, a.masks[0], strict=True):
        assert np.array_equal(coco.annToMask(ann).astype(bool), m)
    back = read_coco(path)
    assert np.allclose(back.images[0].boxes, a.boxes[0]) and (tmp_path / "masks" / "test" / "000000.png").is_file()


def test_loader_batches_lists_and_resumes_mid_epoch_exactly():
    digits, labels = fake_digits()
    ds = generate_scenes(digits, labels, 10, ScenesConfig(canvas=64, max_digits=3, max_size=30)).to_detection_set()
    loader = DetectionLoader(ds, 4, 1, shuffle=True, seed=5, augment_cfg=AugmentSection(hflip=0.5, scale=[0.8, 1.2]))
    loader.set_epoch(2)
    full = list(loader)
    assert len(full) == 3 and [len(b[0]) for b in full] == [4, 4, 2]
    images, targets = full[0]
    assert images[0].shape == (1, 64, 64) and set(targets[0]) == {"boxes", "labels", "image_id", "area", "iscrowd"}
    assert int(targets[0]["labels"].min()) >= 1  # 0 is the background
    loader.set_epoch(2, start_batch=1)
    tail = list(loader)
    for (ia, ta), (ib, tb) in zip(full[1:], tail, strict=True):
        assert all(torch.equal(x, y) for x, y in zip(ia, ib, strict=True))
        assert all(torch.equal(x["boxes"], y["boxes"]) for x, y in zip(ta, tb, strict=True))
    loader.set_epoch(3)
    assert not all(torch.equal(x, y) for x, y in zip(list(loader)[0][0], images, strict=False))

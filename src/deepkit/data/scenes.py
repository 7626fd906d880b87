"""MNIST scenes: synthetic detection and segmentation data made of handwritten digits, measurable on a CPU.

Each scene is a ``canvas``×``canvas`` greyscale image holding 1-8 MNIST digits (the class is the digit) scaled so
their ink is ~10-60 px high, placed with little overlap on a background of clutter (random strokes, dots, noise).
Training scenes use MNIST's training digits, test scenes its test digits, so no digit image is shared.

Every object has its tight box (around its ink) and its instance mask (its ink pixels, minus those covered by a
digit drawn later); a scene's semantic mask holds ``class + 1`` per pixel (0: background).

API:
    >>> train = mnist_scenes("train", n=1000, seed=0)                       # doctest: +SKIP
    >>> train.images.shape, train.boxes[0], train.labels[0]                 # doctest: +SKIP
    >>> write_scenes(train, "out/scenes", "train")  # COCO JSON (+ RLE masks), PNGs, semantic/instance masks
    >>> ds = train.to_detection_set()                                       # deepkit.data.detection.DetectionSet

Areas written to COCO JSON are the boxes' areas, so that COCO's small/medium/large ranges (32², 96²) sort the
digits by their size (ink covers only part of a digit's box).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deepkit.errors import ConfigError

CLASS_NAMES = [str(i) for i in range(10)]
INK = 64  # a pixel (0..255) at least this bright belongs to the digit (box, mask)


@dataclass
class ScenesConfig:
    """How scenes are drawn."""

    canvas: int = 128
    min_digits: int = 1
    max_digits: int = 8
    min_size: int = 10  # ink height of the smallest digit, px
    max_size: int = 60  # ... and of the largest
    max_overlap: float = 0.2  # largest intersection of two digits' boxes, over the smaller box
    clutter: int = 8  # up to this many strokes and dots behind the digits
    noise: float = 8.0  # std of the Gaussian pixel noise (0..255 scale)

    def check(self) -> None:
        if not 1 <= self.min_digits <= self.max_digits:
            raise ConfigError(
                f"scenes: expected 1 <= min_digits <= max_digits, got {self.min_digits}-{self.max_digits}"
            )
        if not 4 <= self.min_size <= self.max_size < self.canvas:
            raise ConfigError(f"scenes: expected 4 <= min_size <= max_size < canvas, got {self.min_size}, "
                              f"{self.max_size}, {self.canvas}")  # fmt: skip


@dataclass
class Scenes:
    """Generated scenes: images (N, H, W) uint8, and per scene boxes (k, 4) xyxy, labels (k,), masks (k, H, W)."""

    images: np.ndarray
    boxes: list[np.ndarray]
    labels: list[np.ndarray]
    masks: list[np.ndarray]
    class_names: list[str] = field(default_factory=lambda: list(CLASS_NAMES))

    def __len__(self) -> int:
        return len(self.images)

    def semantic(self, i: int) -> np.ndarray:
        """(H, W) uint8: class + 1 where a digit's ink is, 0 elsewhere."""
        out = np.zeros(self.images.shape[1:], np.uint8)
        for m, lab in zip(self.masks[i], self.labels[i], strict=True):
            out[m] = lab + 1
        return out

    def instances(self, i: int) -> np.ndarray:
        """(H, W) uint8: 1..k for the k objects (their order in ``boxes``), 0 elsewhere."""
        out = np.zeros(self.images.shape[1:], np.uint8)
        for j, m in enumerate(self.masks[i]):
            out[m] = j + 1
        return out

    def to_detection_set(self, first_id: int = 1):
        """The scenes as a :class:`~deepkit.data.detection.DetectionSet` (pixels in memory)."""
        from deepkit.data.detection import DetectionImage, DetectionSet

        h, w = self.images.shape[1:]
        images = [
            DetectionImage(f"scene_{i:06d}.png", w, h, b, lab, first_id + i, pixels=img)
            for i, (img, b, lab) in enumerate(zip(self.images, self.boxes, self.labels, strict=True))
        ]
        return DetectionSet(list(self.class_names), images)


def _ink_box(patch: np.ndarray) -> tuple[int, int, int, int] | None:
    ys, xs = np.where(patch >= INK)
    if not len(ys):
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _overlap(a, b) -> float:
    """Intersection over the smaller box's area: a small digit inside a large one's box counts as overlapping."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return iw * ih / min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))


def _clutter(rng: np.random.Generator, cfg: ScenesConfig) -> np.ndarray:
    from PIL import Image, ImageDraw

    layer = Image.new("L", (cfg.canvas, cfg.canvas), 0)
    draw = ImageDraw.Draw(layer)
    for _ in range(int(rng.integers(0, cfg.clutter + 1))):
        value = int(rng.integers(60, 200))
        if rng.random() < 0.6:  # a stroke
            x, y = rng.uniform(0, cfg.canvas, 2)
            length, angle = rng.uniform(5, cfg.canvas / 3), rng.uniform(0, np.pi)
            x2, y2 = x + length * np.cos(angle), y + length * np.sin(angle)
            draw.line([(float(x), float(y)), (float(x2), float(y2))], fill=value, width=int(rng.integers(1, 3)))
        else:  # a dot or a small ring
            x, y = rng.uniform(0, cfg.canvas, 2)
            r = float(rng.uniform(1, 4))
            if rng.random() < 0.5:
                draw.ellipse([x - r, y - r, x + r, y + r], fill=value)
            else:
                draw.ellipse([x - r, y - r, x + r, y + r], outline=value)
    return np.asarray(layer, dtype=np.float32)


def generate_scenes(
    digits: np.ndarray, digit_labels: np.ndarray, n: int, cfg: ScenesConfig | None = None, seed: int = 0
) -> Scenes:
    """``n`` scenes drawn from ``digits`` (M, 28, 28) uint8 with labels (M,); a pure function of ``seed``.

    Args:
        digits: source digit images (0..255, white ink on black).
        digit_labels: their classes 0..9.
        n: number of scenes.
        cfg: :class:`ScenesConfig` (default: 128 px canvas, 1-8 digits of 10-60 px).
        seed: the random seed.
    """
    from PIL import Image

    cfg = cfg or ScenesConfig()
    cfg.check()
    rng = np.random.default_rng(seed)
    c = cfg.canvas
    images = np.zeros((n, c, c), np.uint8)
    all_boxes, all_labels, all_masks = [], [], []
    for i in range(n):
        canvas = _clutter(rng, cfg)
        owner = np.zeros((c, c), np.int16)  # which object (1-based) owns each ink pixel
        boxes, labels = [], []
        for _ in range(int(rng.integers(cfg.min_digits, cfg.max_digits + 1))):
            j = int(rng.integers(len(digits)))
            src = digits[j]
            box0 = _ink_box(src)
            if box0 is None:
                continue
            ink = src[box0[1] : box0[3], box0[0] : box0[2]]
            target_h = float(rng.uniform(cfg.min_size, cfg.max_size))
            scale = target_h / ink.shape[0]
            w, h = max(2, round(ink.shape[1] * scale)), max(2, round(ink.shape[0] * scale))
            if w >= c or h >= c:
                continue
            patch = np.asarray(Image.fromarray(ink).resize((w, h), Image.BILINEAR), dtype=np.float32)
            tight = _ink_box(patch)
            if tight is None:
                continue
            for _try in range(20):  # a place that overlaps the others little
                x0, y0 = int(rng.integers(0, c - w + 1)), int(rng.integers(0, c - h + 1))
                box = (x0 + tight[0], y0 + tight[1], x0 + tight[2], y0 + tight[3])
                if all(_overlap(box, b) <= cfg.max_overlap for b in boxes):
                    break
            else:
                continue
            region = canvas[y0 : y0 + h, x0 : x0 + w]
            np.maximum(region, patch, out=region)
            owner[y0 : y0 + h, x0 : x0 + w][patch >= INK] = len(boxes) + 1
            boxes.append(box)
            labels.append(int(digit_labels[j]))
        if cfg.noise > 0:
            canvas = canvas + rng.normal(0, cfg.noise, canvas.shape)
        images[i] = np.clip(canvas, 0, 255).round().astype(np.uint8)
        masks = np.stack([owner == k + 1 for k in range(len(boxes))]) if boxes else np.zeros((0, c, c), bool)
        all_boxes.append(np.array(boxes, np.float32).reshape(-1, 4))
        all_labels.append(np.array(labels, np.int64))
        all_masks.append(masks)
    return Scenes(images, all_boxes, all_labels, all_masks)


def mnist_scenes(
    split: str, n: int, cfg: ScenesConfig | None = None, seed: int = 0, mnist_path: str | Path | None = None
) -> Scenes:
    """Scenes from MNIST's ``split`` digits (``train`` or ``test``) in ``mnist_path`` (default DATA_ROOT/mnist)."""
    if split not in ("train", "test"):
        raise ConfigError(f"MNIST scenes: split must be train or test, got {split!r}")
    digits, labels = mnist_digits(split, mnist_path)
    return generate_scenes(digits, labels, n, cfg, seed + (0 if split == "train" else 1_000_003))


def mnist_digits(split: str, mnist_path: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """MNIST's ``split`` digits (N, 28, 28) uint8 and labels (N,), read from the IDX files once per folder."""
    from deepkit.data.sources import MNIST_FILES, data_root, find_idx_file

    folder = Path(mnist_path).expanduser() if mnist_path else data_root() / "mnist"
    key = (str(folder.resolve()), split)
    if key not in _DIGITS:
        from deepkit.data.idx import read_idx
        from deepkit.errors import DataError

        if not folder.is_dir():
            raise DataError(f"MNIST folder not found: {folder} (set DEEPKIT_DATA or data.path)")
        images = read_idx(find_idx_file(folder, MNIST_FILES[f"{split}_images"]))
        labels = read_idx(find_idx_file(folder, MNIST_FILES[f"{split}_labels"]))
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(f"MNIST {split} files in {folder} disagree: images {images.shape}, labels {labels.shape}")
        _DIGITS[key] = (images.astype(np.uint8), labels.astype(np.int64))
    return _DIGITS[key]


_DIGITS: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}  # a cache of the decoded IDX files


def write_scenes(scenes: Scenes, folder: str | Path, split: str) -> Path:
    """Write ``folder/images/<split>/NNNNNN.png``, ``folder/annotations/instances_<split>.json`` (COCO: boxes, RLE
    segmentation, box areas), ``folder/masks/<split>/NNNNNN.png`` (semantic: class + 1) and
    ``folder/instance_masks/<split>/NNNNNN.png`` (object index + 1). Returns the JSON's path."""
    from PIL import Image
    from pycocotools import mask as mask_utils

    folder = Path(folder)
    dirs = {k: folder / k / split for k in ("images", "masks", "instance_masks")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    (folder / "annotations").mkdir(parents=True, exist_ok=True)
    h, w = scenes.images.shape[1:]
    images, anns = [], []
    for i in range(len(scenes)):
        name = f"{i:06d}.png"
        Image.fromarray(scenes.images[i]).save(dirs["images"] / name)
        Image.fromarray(scenes.semantic(i)).save(dirs["masks"] / name)
        Image.fromarray(scenes.instances(i)).save(dirs["instance_masks"] / name)
        images.append({"id": i + 1, "file_name": name, "width": int(w), "height": int(h)})
        for b, lab, m in zip(scenes.boxes[i], scenes.labels[i], scenes.masks[i], strict=True):
            rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
            rle["counts"] = rle["counts"].decode("ascii")
            x1, y1, x2, y2 = (float(v) for v in b)
            anns.append({
                "id": len(anns) + 1, "image_id": i + 1, "category_id": int(lab) + 1, "iscrowd": 0,
                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "segmentation": rle,
            })  # fmt: skip
    cats = [{"id": k + 1, "name": n} for k, n in enumerate(scenes.class_names)]
    path = folder / "annotations" / f"instances_{split}.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return path

"""Object-detection data: one representation, readers and writers of COCO JSON, Pascal VOC XML and YOLO txt.

:class:`DetectionSet` is what every reader returns and every writer takes: class names, and per image its file
(or its pixels, for generated data), size, boxes ``(N, 4)`` xyxy in pixels, 0-based class indices, crowd flags
and areas (COCO's own areas when the source has them, else box areas). Boxes that stick out of their image are
clipped; boxes with no area left are dropped; both are counted in ``notes`` (lines for the run's log.txt).

Formats (Detectron2 / MMDetection / Ultralytics users' three):

* COCO: ``instances.json`` (``images``, ``annotations`` with ``bbox`` = x, y, width, height, ``categories``) and an
  image folder. Category ids may have gaps (COCO's 1..90): classes are the categories sorted by id, and the ids are
  kept to write the same ids back.
* VOC: one XML per image (``<object><name>``, ``<bndbox>`` xmin..ymax, 1-based inclusive pixels,
  ``<difficult>``: kept as crowd, i.e. ignored by COCO evaluation), images in ``JPEGImages/``.
* YOLO: ``data.yaml`` (``path``, ``train``/``val``/``test`` image folders, ``names``) with ``labels/`` beside
  ``images/``: one ``.txt`` per image, lines ``class cx cy w h`` normalised to [0, 1]. An image without a label file
  has no objects (a valid negative); a label file without an image is ignored (noted).
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepkit.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
FORMATS = ("coco", "voc", "yolo")


@dataclass
class DetectionImage:
    """One image and its objects. ``file`` is absolute, or ``pixels`` holds the image (H, W) / (H, W, C) uint8."""

    file: str
    width: int
    height: int
    boxes: np.ndarray  # (N, 4) float32 xyxy pixels
    labels: np.ndarray  # (N,) int64 class indices 0..K-1
    image_id: int = 0
    iscrowd: np.ndarray | None = None  # (N,) bool: ignored by evaluation, not trained on
    areas: np.ndarray | None = None  # (N,) float32: COCO's area (size ranges), default box area
    pixels: np.ndarray | None = None

    def __post_init__(self):
        n = len(self.boxes)
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(n, 4)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(n)
        self.iscrowd = np.zeros(n, bool) if self.iscrowd is None else np.asarray(self.iscrowd, bool).reshape(n)
        if self.areas is None:
            self.areas = (self.boxes[:, 2] - self.boxes[:, 0]) * (self.boxes[:, 3] - self.boxes[:, 1])
        self.areas = np.asarray(self.areas, dtype=np.float32).reshape(n)

    def load(self) -> np.ndarray:
        """The image as (H, W, 3) or (H, W) uint8 (greyscale stays one channel); a corrupt file is a DataError."""
        if self.pixels is not None:
            return self.pixels
        return read_image_file(self.file)


@dataclass
class DetectionSet:
    """Images with boxes and one list of class names (see the module docstring)."""

    class_names: list[str]
    images: list[DetectionImage]
    category_ids: list[int] | None = None  # COCO ids of the classes (None: 1..K)
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_objects(self) -> int:
        return int(sum(len(im.boxes) for im in self.images))

    def subset(self, indices: list[int]) -> DetectionSet:
        return DetectionSet(self.class_names, [self.images[i] for i in indices], self.category_ids, [])

    def coco_ids(self) -> list[int]:
        return list(self.category_ids) if self.category_ids else list(range(1, len(self.class_names) + 1))


def read_image_file(path: str | Path) -> np.ndarray:
    """Decode an image file: (H, W, 3) uint8, or (H, W) for greyscale; palette/alpha images become RGB."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode not in ("RGB", "L"):
                im = im.convert("RGB")
            return np.asarray(im, dtype=np.uint8).copy()
    except FileNotFoundError:
        raise DataError(f"image not found: {path}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"cannot read image {path}: {e}; expected a PNG/JPEG/BMP file") from None


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file's header (no decoding); a corrupt or missing file is a DataError."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.size
    except FileNotFoundError:
        raise DataError(f"image not found: {path}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"cannot read image {path}: {e}; expected a PNG/JPEG/BMP file") from None


def clean_boxes(images: list[DetectionImage], where: str) -> list[str]:
    """Clip boxes to their image and drop those left without area; returns the note lines (counts)."""
    clipped = dropped = 0
    for im in images:
        b = im.boxes
        if not len(b):
            continue
        c = b.copy()
        c[:, 0::2] = c[:, 0::2].clip(0, im.width)
        c[:, 1::2] = c[:, 1::2].clip(0, im.height)
        changed = (np.abs(c - b) > 1e-3).any(1)
        keep = (c[:, 2] > c[:, 0]) & (c[:, 3] > c[:, 1])
        clipped += int((changed & keep).sum())
        dropped += int((~keep).sum())
        areas = np.where(changed, (c[:, 2] - c[:, 0]) * (c[:, 3] - c[:, 1]), im.areas)
        im.boxes, im.labels, im.iscrowd, im.areas = c[keep], im.labels[keep], im.iscrowd[keep], areas[keep]
    notes = []
    if clipped:
        notes.append(f"{where}: clipped {clipped} box(es) that stuck out of their image")
    if dropped:
        notes.append(f"{where}: dropped {dropped} box(es) with zero area (after clipping to the image)")
    return notes


# --- COCO ----------------------------------------------------------------------------------------------------------
def read_coco(path: str | Path, image_dir: str | Path | None = None) -> DetectionSet:
    """A COCO instances JSON; images in ``image_dir`` (default: the JSON's folder's ``../images/<stem>`` when it
    exists, else the JSON's folder).

    Example:
        >>> ds = read_coco("coco128/annotations/instances_train2017.json", "coco128/images/train2017")  # doctest: +SKIP
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"COCO annotation file not found: {path}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(raw, dict) or not {"images", "annotations", "categories"} <= set(raw):
        got = sorted(raw) if isinstance(raw, dict) else type(raw).__name__
        raise DataError(f"{path} is not a COCO instances file: expected images, annotations, categories; got {got}")
    if image_dir is None:
        guess = path.parent.parent / "images" / path.stem.replace("instances_", "")
        image_dir = guess if guess.is_dir() else path.parent
    image_dir = Path(image_dir)
    cats = sorted(raw["categories"], key=lambda c: c["id"])
    cat_index = {c["id"]: i for i, c in enumerate(cats)}
    per_image: dict[int, list[dict]] = {im["id"]: [] for im in raw["images"]}
    for ann in raw["annotations"]:
        if ann.get("image_id") not in per_image:
            raise DataError(
                f"{path}: annotation {ann.get('id')} names image_id {ann.get('image_id')}, which is not among the "
                f"file's {len(per_image)} images"
            )
        if ann.get("category_id") not in cat_index:
            raise DataError(
                f"{path}: annotation {ann.get('id')} has category_id {ann.get('category_id')}, not among the "
                f"categories {sorted(cat_index)[:10]}{' ...' if len(cat_index) > 10 else ''}"
            )
        per_image[ann["image_id"]].append(ann)
    images = []
    for im in raw["images"]:
        anns = per_image[im["id"]]
        xywh = np.array([a["bbox"] for a in anns], dtype=np.float32).reshape(-1, 4)
        boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1)
        areas = np.array([a.get("area", w * h) for a, (w, h) in zip(anns, xywh[:, 2:], strict=True)], np.float32)
        images.append(
            DetectionImage(
                str(image_dir / im["file_name"]), int(im["width"]), int(im["height"]), boxes,
                [cat_index[a["category_id"]] for a in anns], int(im["id"]),
                [bool(a.get("iscrowd", 0)) for a in anns], areas,
            )
        )  # fmt: skip
    ds = DetectionSet([c["name"] for c in cats], images, [c["id"] for c in cats])
    ds.notes = clean_boxes(images, str(path))
    return ds


def coco_dict(ds: DetectionSet, file_names: list[str] | None = None) -> dict[str, Any]:
    """The set as a COCO instances mapping (``file_names``: what each image's ``file_name`` says)."""
    ids = ds.coco_ids()
    images, anns = [], []
    for i, im in enumerate(ds.images):
        name = file_names[i] if file_names else Path(im.file).name
        images.append({"id": im.image_id, "file_name": name, "width": im.width, "height": im.height})
        for b, lab, crowd, area in zip(im.boxes, im.labels, im.iscrowd, im.areas, strict=True):
            x1, y1, x2, y2 = (float(v) for v in b)
            anns.append({
                "id": len(anns) + 1, "image_id": im.image_id, "category_id": ids[int(lab)],
                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": float(area), "iscrowd": int(crowd),
            })  # fmt: skip
    cats = [{"id": cid, "name": name} for cid, name in zip(ids, ds.class_names, strict=True)]
    return {"images": images, "annotations": anns, "categories": cats}


# --- VOC -----------------------------------------------------------------------------------------------------------
def read_voc(folder: str | Path, class_names: list[str] | None = None) -> DetectionSet:
    """Pascal VOC: ``folder/Annotations/*.xml`` (or XML files in ``folder``) and images in ``folder/JPEGImages``
    (or beside the XML). ``class_names``: the class list (default: every name found, sorted)."""
    folder = Path(folder)
    ann_dir = folder / "Annotations" if (folder / "Annotations").is_dir() else folder
    img_dir = folder / "JPEGImages" if (folder / "JPEGImages").is_dir() else ann_dir
    files = sorted(ann_dir.glob("*.xml"))
    if not files:
        raise DataError(f"no VOC annotation files (*.xml) in {ann_dir}")
    parsed = []
    for f in files:
        try:
            root = ET.parse(f).getroot()
        except ET.ParseError as e:
            raise DataError(f"cannot parse VOC annotation {f}: {e}") from None
        objs = []
        for obj in root.iter("object"):
            bb = obj.find("bndbox")
            if bb is None or obj.findtext("name") is None:
                raise DataError(f"{f}: an <object> without <name> or <bndbox>")
            try:
                x1, y1, x2, y2 = (float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
            except (TypeError, ValueError):
                raise DataError(f"{f}: <bndbox> needs numeric xmin, ymin, xmax, ymax") from None
            objs.append((obj.findtext("name").strip(), [x1 - 1, y1 - 1, x2, y2], obj.findtext("difficult") == "1"))
        name = root.findtext("filename") or f.stem + ".jpg"
        size = root.find("size")
        parsed.append((f, img_dir / name, size, objs))
    names = list(class_names) if class_names else sorted({o[0] for *_, objs in parsed for o in objs})
    index = {n: i for i, n in enumerate(names)}
    images = []
    for i, (f, img, size, objs) in enumerate(parsed):
        for o in objs:
            if o[0] not in index:
                raise DataError(f"{f}: class '{o[0]}' is not in the class list ({', '.join(names[:10])} ...)")
        if size is not None and size.findtext("width") and size.findtext("height"):
            w, h = int(float(size.findtext("width"))), int(float(size.findtext("height")))
        else:
            w, h = image_size(img)
        images.append(DetectionImage(str(img), w, h, np.array([o[1] for o in objs], np.float32).reshape(-1, 4),
                                     [index[o[0]] for o in objs], i + 1, [o[2] for o in objs]))  # fmt: skip
    ds = DetectionSet(names, images)
    ds.notes = clean_boxes(images, str(ann_dir))
    return ds


def voc_xml(im: DetectionImage, names: list[str], file_name: str) -> str:
    """One VOC annotation (1-based inclusive pixel corners)."""
    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = file_name
    size = ET.SubElement(root, "size")
    for k, v in (("width", im.width), ("height", im.height), ("depth", 3)):
        ET.SubElement(size, k).text = str(v)
    for b, lab, crowd in zip(im.boxes, im.labels, im.iscrowd, strict=True):
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = names[int(lab)]
        ET.SubElement(obj, "difficult").text = "1" if crowd else "0"
        bb = ET.SubElement(obj, "bndbox")
        for k, v in zip(("xmin", "ymin", "xmax", "ymax"), (b[0] + 1, b[1] + 1, b[2], b[3]), strict=True):
            ET.SubElement(bb, k).text = f"{float(v):g}"
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


# --- YOLO ----------------------------------------------------------------------------------------------------------
def yolo_names(raw: Any, where: str) -> list[str]:
    if isinstance(raw, dict):
        try:
            keys = sorted(int(k) for k in raw)
        except ValueError:
            raise DataError(f"{where}: names must map class ids 0..K-1 to names") from None
        if keys != list(range(len(keys))):
            raise DataError(f"{where}: names must cover class ids 0..{len(keys) - 1} without gaps, got {keys[:10]}")
        return [str(raw[k] if k in raw else raw[str(k)]) for k in keys]
    if isinstance(raw, list) and raw:
        return [str(n) for n in raw]
    raise DataError(f"{where}: expected `names` as a list or a mapping id -> name")


def read_yolo_yaml(path: str | Path) -> tuple[dict[str, Path], list[str]]:
    """A YOLO ``data.yaml``: split -> image folder, and the class names."""
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise DataError(f"YOLO data file not found: {path}") from None
    if not isinstance(raw, dict) or "names" not in raw:
        raise DataError(f"{path}: expected a YOLO data.yaml with `names` and `train` (image folder)")
    base = Path(raw.get("path") or path.parent)
    if not base.is_absolute():
        base = (path.parent / base).resolve()
    splits = {s: base / raw[s] for s in ("train", "val", "test") if raw.get(s)}
    return splits, yolo_names(raw["names"], str(path))


def labels_dir_for(image_dir: Path) -> Path:
    """YOLO's rule: the last ``images`` part of the path becomes ``labels``."""
    parts = list(image_dir.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts)
    return image_dir


def read_yolo(image_dir: str | Path, class_names: list[str], labels_dir: str | Path | None = None) -> DetectionSet:
    """YOLO txt labels for the images of ``image_dir`` (labels in ``labels_dir``, default YOLO's images -> labels)."""
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise DataError(f"YOLO image folder not found: {image_dir}")
    labels_dir = Path(labels_dir) if labels_dir else labels_dir_for(image_dir)
    files = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {image_dir}")
    images = []
    k = len(class_names)
    for i, f in enumerate(files):
        w, h = image_size(f)
        lab_file = labels_dir / (f.stem + ".txt")
        rows = []
        if lab_file.is_file():
            for n, line in enumerate(lab_file.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                parts = line.split()
                try:
                    cls, cx, cy, bw, bh = int(parts[0]), *(float(v) for v in parts[1:5])
                except (ValueError, IndexError):
                    raise DataError(f"{lab_file}:{n}: expected `class cx cy w h`, got {line.strip()!r}") from None
                if not 0 <= cls < k:
                    raise DataError(f"{lab_file}:{n}: class id {cls} is beyond the {k} class names (0..{k - 1})")
                rows.append((cls, (cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h))
        arr = np.array([r[1:] for r in rows], np.float32).reshape(-1, 4)
        images.append(DetectionImage(str(f), w, h, arr, [r[0] for r in rows], i + 1))
    ds = DetectionSet(list(class_names), images)
    stems = {f.stem for f in files}
    orphans = sorted(p.name for p in labels_dir.glob("*.txt") if p.stem not in stems) if labels_dir.is_dir() else []
    if orphans:
        ds.notes.append(
            f"{labels_dir}: ignored {len(orphans)} label file(s) without an image: {', '.join(orphans[:5])}"
        )
    ds.notes += clean_boxes(images, str(labels_dir))
    return ds


def yolo_lines(im: DetectionImage) -> str:
    out = []
    for b, lab, crowd in zip(im.boxes, im.labels, im.iscrowd, strict=True):
        if crowd:
            continue  # YOLO has no crowd regions
        cx, cy = (b[0] + b[2]) / 2 / im.width, (b[1] + b[3]) / 2 / im.height
        bw, bh = (b[2] - b[0]) / im.width, (b[3] - b[1]) / im.height
        out.append(f"{int(lab)} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}\n")
    return "".join(out)


# --- any format ------------------------------------------------------------------------------------------------------
def detect_format(path: Path) -> str:
    if path.suffix == ".json":
        return "coco"
    if path.suffix in (".yaml", ".yml"):
        return "yolo"
    if path.is_dir() and ((path / "Annotations").is_dir() or any(path.glob("*.xml"))):
        return "voc"
    raise DataError(f"cannot tell the format of {path}: expected a COCO .json, a YOLO data.yaml or a VOC folder")


def read_detection(
    path: str | Path, fmt: str = "auto", split: str = "train", images: str | Path | None = None,
    class_names: list[str] | None = None,
) -> DetectionSet:  # fmt: skip
    """Any of the three formats (``fmt``: coco, voc, yolo or auto from the path) into a :class:`DetectionSet`."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"detection data not found: {path}")
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt == "coco":
        return read_coco(path, images)
    if fmt == "voc":
        return read_voc(path, class_names)
    if fmt == "yolo":
        if path.is_dir():
            if not class_names:
                raise DataError(f"{path} is a YOLO image folder: give the class names (or a data.yaml)")
            return read_yolo(path, class_names)
        splits, names = read_yolo_yaml(path)
        if split not in splits:
            raise DataError(f"{path} has no '{split}' split (it has {', '.join(splits)})")
        return read_yolo(splits[split], names)
    raise DataError(f"unknown detection format '{fmt}'; expected one of {', '.join(FORMATS)}")


def _link(src: str, dst: Path, copy: bool) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    if copy:
        import shutil

        shutil.copyfile(src, dst)
    else:
        os.symlink(os.path.abspath(src), dst)


def write_detection(ds: DetectionSet, out: str | Path, fmt: str, split: str = "train", copy: bool = False) -> Path:
    """Write ``ds`` in ``fmt`` under ``out``; images are linked (symbolic links) or copied (``copy``) beside the
    labels in the format's layout; generated images (pixels in memory) are written as PNG. Returns the file to read
    back (the JSON, the data.yaml, or the VOC folder)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = []
    img_dir = {"coco": out / "images" / split, "yolo": out / "images" / split, "voc": out / "JPEGImages"}[fmt]
    for i, im in enumerate(ds.images):
        name = Path(im.file).name if im.file else f"{i:06d}.png"
        if im.pixels is not None:
            from PIL import Image

            img_dir.mkdir(parents=True, exist_ok=True)
            name = Path(name).with_suffix(".png").name
            Image.fromarray(im.pixels).save(img_dir / name)
        else:
            _link(im.file, img_dir / name, copy)
        names.append(name)
    if fmt == "coco":
        target = out / "annotations" / f"instances_{split}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(coco_dict(ds, names)))
        return target
    if fmt == "voc":
        (out / "Annotations").mkdir(exist_ok=True)
        for im, name in zip(ds.images, names, strict=True):
            (out / "Annotations" / (Path(name).stem + ".xml")).write_text(voc_xml(im, ds.class_names, name))
        return out
    labels = out / "labels" / split
    labels.mkdir(parents=True, exist_ok=True)
    for im, name in zip(ds.images, names, strict=True):
        text = yolo_lines(im)
        if text:
            (labels / (Path(name).stem + ".txt")).write_text(text)
    import yaml

    target = out / "data.yaml"
    (target).write_text(yaml.safe_dump({"path": str(out.resolve()), split: f"images/{split}",
                                        "names": dict(enumerate(ds.class_names))}, sort_keys=False))  # fmt: skip
    return target


def convert(src: str | Path, dst: str | Path, to: str, fmt: str = "auto", split: str = "train",
            images: str | Path | None = None, copy: bool = False) -> tuple[Path, DetectionSet]:  # fmt: skip
    """Read ``src`` (any format) and write it under ``dst`` in format ``to``."""
    if to not in FORMATS:
        raise DataError(f"unknown target format '{to}'; expected one of {', '.join(FORMATS)}")
    ds = read_detection(src, fmt, split, images)
    return write_detection(ds, dst, to, split, copy), ds

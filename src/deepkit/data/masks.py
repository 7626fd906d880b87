"""Segmentation masks: image + mask pairs read from folders and from the standard layouts, one representation.

A :class:`MaskSet` holds samples (an image file or pixels, and its mask as an (H, W) uint8 array of class indices,
:data:`IGNORE` = 255 for pixels no loss or metric counts) and the class names. Masks are read when the set is built,
so every bad input is a one-line error before training starts:

* a mask whose size differs from its image's; an image without a mask (same stem) in the mask folder;
* a mask value outside the class list (the file, the values found and the values expected are named);
* an RGB mask where index masks are expected: mapped through ``palette`` (one RGB colour per class) when given,
  else an error saying how to fix it. Palette PNGs (mode P, VOC-style) give their indices, 1-bit PNGs 0/1.

Layouts: ``read_mask_folders`` (images/ and masks/ with the same stems), ``read_camvid`` (SegNet's CamVid:
``train.txt``/``val.txt``/``test.txt`` of image/label pairs, 11 classes, label 11 "Unlabelled" ignored),
``read_coco128_semantic`` (COCO panoptic category ids, 133 classes, 0 ignored), ``read_chase_db1`` (28 fundus
photos, ``Image_NNX_1stHO.png`` first-observer vessel masks), ``read_isbi2012`` (30 EM slices, ``image/`` +
``label/`` PNGs: 255 cell interior, 0 membrane) and ``scenes_mask_set`` (the MNIST scenes' semantic masks).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deepkit.errors import DataError

IGNORE = 255  # equals deepkit.tasks.segmentation.IGNORE (kept here so data does not import tasks)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

CAMVID_CLASSES = ["Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car", "Pedestrian",
                  "Bicyclist"]  # fmt: skip
CAMVID_IGNORE = 11  # "Unlabelled": SegNet's ignore_label


@dataclass
class MaskSample:
    """One image (a file, or (H, W[, 3]) uint8 pixels) and its mask: (H, W) uint8 class indices, IGNORE ignored."""

    image: str | np.ndarray
    mask: np.ndarray
    name: str

    def load_image(self) -> np.ndarray:
        if isinstance(self.image, np.ndarray):
            return self.image
        from deepkit.data.detection import read_image_file

        return read_image_file(self.image)


@dataclass
class MaskSet:
    class_names: list[str]
    samples: list[MaskSample]
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.samples)

    def subset(self, index: list[int]) -> MaskSet:
        return MaskSet(self.class_names, [self.samples[i] for i in index], [])


def value_lut(values: list[int] | None, num_classes: int, ignore_value: int | None) -> np.ndarray:
    """A 256-entry table: raw mask value -> class index (``values[i]`` -> i; identity when ``values`` is None),
    ``ignore_value`` -> IGNORE, any other value -> -1 (an error when it occurs)."""
    lut = np.full(256, -1, np.int16)
    if values is None:
        lut[:num_classes] = np.arange(num_classes)
    else:
        for i, v in enumerate(values):
            lut[int(v)] = i
    if ignore_value is not None:
        lut[int(ignore_value)] = IGNORE
    return lut


def read_mask(
    path: str | Path,
    lut: np.ndarray,
    class_names: list[str],
    palette: list[list[int]] | None = None,
    size: tuple[int, int] | None = None,
) -> np.ndarray:
    """A mask file -> (H, W) uint8 class indices (IGNORE for ignored pixels).

    Args:
        path: PNG (index, palette or 1-bit) or, with ``palette``, an RGB image with one colour per class.
        lut: raw value -> class index (:func:`value_lut`).
        class_names: for messages.
        palette: RGB colour of each class, to read RGB masks.
        size: (width, height) of the image, which the mask must equal.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            mode, wh = im.mode, im.size
            if size is not None and tuple(wh) != tuple(size):
                raise DataError(f"mask {path} is {wh[0]}×{wh[1]} px but its image is {size[0]}×{size[1]}; expected "
                                "masks of the same size as their images")  # fmt: skip
            if mode in ("RGB", "RGBA"):
                return _rgb_mask(np.asarray(im.convert("RGB")), path, palette, class_names)
            if mode == "1":
                raw = np.asarray(im, dtype=np.uint8)  # 0/1
            elif mode in ("L", "P"):
                raw = np.asarray(im, dtype=np.uint8)  # palette PNGs: the indices, not the colours
            elif mode in ("I", "I;16", "I;16B"):
                raw = np.asarray(im)
                if raw.max(initial=0) > 255:
                    raise DataError(f"mask {path} holds values up to {int(raw.max())}; expected class indices < 255")
                raw = raw.astype(np.uint8)
            else:
                raise DataError(f"mask {path} has image mode {mode}; expected an index PNG (L, P or 1-bit)")
    except FileNotFoundError:
        raise DataError(f"mask not found: {path}") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise DataError(f"cannot read mask {path}: {e}; expected a PNG of class indices") from None
    out = lut[raw]
    if (out < 0).any():
        bad = sorted(int(v) for v in np.unique(raw[out < 0]))
        ok = sorted(int(v) for v in np.flatnonzero(lut >= 0))
        shown = ", ".join(map(str, bad[:10])) + (" ..." if len(bad) > 10 else "")
        raise DataError(f"mask {path} holds label value(s) {shown} outside the class list ({len(class_names)} "
                        f"classes: values {_ranges(ok)} expected; set data.classes / data.ignore_index)")  # fmt: skip
    return out.astype(np.uint8)


def _ranges(values: list[int]) -> str:
    if not values:
        return "none"
    parts, start, prev = [], values[0], values[0]
    for v in [*values[1:], None]:
        if v is not None and v == prev + 1:
            prev = v
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if v is not None:
            start = prev = v
    return ", ".join(parts)


def _rgb_mask(rgb: np.ndarray, path, palette: list[list[int]] | None, class_names: list[str]) -> np.ndarray:
    if palette is None:
        colours = np.unique(rgb.reshape(-1, 3), axis=0)
        if len(colours) and (colours[:, 0] == colours[:, 1]).all() and (colours[:, 1] == colours[:, 2]).all():
            raise DataError(f"mask {path} is an RGB image whose channels are equal (grey); expected an index PNG: "
                            "save it in mode L (one channel)")  # fmt: skip
        raise DataError(f"mask {path} is an RGB image ({len(colours)} colours); expected an index or palette PNG "
                        "(one class index per pixel), or set data.palette to one RGB colour per class")  # fmt: skip
    if len(palette) != len(class_names):
        raise DataError(f"data.palette has {len(palette)} colours for {len(class_names)} classes")
    code = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    out = np.full(code.shape, -1, np.int16)
    for i, (r, g, b) in enumerate(palette):
        out[code == ((r << 16) | (g << 8) | b)] = i
    if (out < 0).any():
        bad = np.unique(rgb[out < 0].reshape(-1, 3), axis=0)[:5].tolist()
        raise DataError(f"mask {path} holds colour(s) {bad} that are not in data.palette")
    return out.astype(np.uint8)


def _size(path: Path) -> tuple[int, int]:
    from deepkit.data.detection import image_size

    return image_size(path)


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def read_mask_folders(
    images: str | Path,
    masks: str | Path,
    class_names: list[str],
    values: list[int] | None = None,
    ignore_value: int | None = None,
    palette: list[list[int]] | None = None,
) -> MaskSet:
    """Pairs ``images/STEM.*`` + ``masks/STEM.png`` (same stem); every image needs its mask."""
    images, masks = Path(images).expanduser(), Path(masks).expanduser()
    for folder, what in ((images, "image"), (masks, "mask")):
        if not folder.is_dir():
            raise DataError(f"{what} folder not found: {folder}")
    by_stem = {p.stem: p for p in _images_in(masks)}
    files = _images_in(images)
    if not files:
        raise DataError(f"no images (*.png, *.jpg, ...) in {images}")
    missing = [p.name for p in files if p.stem not in by_stem]
    if missing:
        raise DataError(f"{len(missing)} image(s) without a mask in {masks}: {', '.join(missing[:5])}"
                        f"{' ...' if len(missing) > 5 else ''} (expected a mask with the same stem)")  # fmt: skip
    lut = value_lut(values, len(class_names), ignore_value)
    samples = [MaskSample(str(p), read_mask(by_stem[p.stem], lut, class_names, palette, _size(p)), p.stem)
               for p in files]  # fmt: skip
    return MaskSet(list(class_names), samples)


def read_camvid(root: str | Path, split: str) -> MaskSet:
    """SegNet's CamVid (``root``: the folder holding ``train.txt``): 11 classes, label 11 (Unlabelled) ignored."""
    root = Path(root).expanduser()
    listing = root / f"{split}.txt"
    if not listing.is_file():
        raise DataError(f"CamVid list not found: {listing} (expected SegNet's CamVid folder with train/val/test.txt)")
    lut = value_lut(None, len(CAMVID_CLASSES), CAMVID_IGNORE)
    samples = []
    for line in listing.read_text().splitlines():
        if not line.strip():
            continue
        image, label = line.split()
        samples.append(MaskSample(str(root / image), read_mask(root / label, lut, CAMVID_CLASSES, None,
                                                               _size(root / image)), Path(image).stem))  # fmt: skip
    return MaskSet(list(CAMVID_CLASSES), samples)


def read_chase_db1(root: str | Path, observer: int = 1) -> MaskSet:
    """The 28 CHASE_DB1 photos in name order with the vessel masks of observer 1 (``1stHO``) or 2 (``2ndHO``)."""
    root = Path(root).expanduser()
    if observer not in (1, 2):
        raise DataError(f"data.observer must be 1 or 2 (CHASE_DB1's two human observers), got {observer}")
    files = sorted(root.glob("Image_*.jpg"))
    if not files:
        raise DataError(f"no CHASE_DB1 images (Image_NNX.jpg) in {root}")
    tag = "1stHO" if observer == 1 else "2ndHO"
    lut = value_lut([0, 1], 2, None)
    lut[255] = 1  # 8-bit copies of the 1-bit masks
    samples = []
    for p in files:
        mask = p.with_name(f"{p.stem}_{tag}.png")
        if not mask.is_file():
            raise DataError(f"image {p.name} has no mask {mask.name} in {root}")
        samples.append(MaskSample(str(p), read_mask(mask, lut, ["background", "vessel"], None, _size(p)), p.stem))
    return MaskSet(["background", "vessel"], samples)


def read_isbi2012(root: str | Path) -> MaskSet:
    """The 30 ISBI 2012 training slices (``root/image/N.png``, ``root/label/N.png``) in numeric order; classes
    ``cell`` (label 255) and ``membrane`` (label 0), so the membrane is the foreground class 1."""
    root = Path(root).expanduser()
    if not (root / "image").is_dir():
        raise DataError(f"ISBI 2012 folder not found: {root} (expected image/ and label/ inside)")
    files = sorted((root / "image").glob("*.png"), key=lambda p: (len(p.stem), p.stem))
    lut = value_lut([255, 0], 2, None)
    samples = []
    for p in files:
        mask = root / "label" / p.name
        if not mask.is_file():
            raise DataError(f"image {p} has no label {mask}")
        samples.append(MaskSample(str(p), read_mask(mask, lut, ["cell", "membrane"], None, _size(p)), p.stem))
    return MaskSet(["cell", "membrane"], samples)


def read_coco128_semantic(root: str | Path) -> MaskSet:
    """coco128's semantic masks (``semantic_segmentation/masks/train2017``: COCO panoptic category ids, 0 unlabeled
    and ignored) with their photos (``images/train2017``): 100 images, the 133 panoptic classes (80 things, 53 stuff)
    named from ``panoptic_train2017.json``."""
    import json

    root = Path(root).expanduser()
    cats_file = root / "panoptic_segmentation" / "annotations" / "panoptic_train2017.json"
    masks = root / "semantic_segmentation" / "masks" / "train2017"
    if not cats_file.is_file() or not masks.is_dir():
        raise DataError(f"coco128 semantic masks not found under {root} (expected {masks} and {cats_file})")
    cats = sorted(json.loads(cats_file.read_text())["categories"], key=lambda c: c["id"])
    names, ids = [c["name"] for c in cats], [int(c["id"]) for c in cats]
    lut = value_lut(ids, len(ids), 0)
    images = root / "images" / "train2017"
    samples = []
    for m in _images_in(masks):
        image = images / f"{m.stem}.jpg"
        if not image.is_file():
            raise DataError(f"mask {m.name} has no image {image}")
        samples.append(MaskSample(str(image), read_mask(m, lut, names, None, _size(image)), m.stem))
    return MaskSet(names, samples)


def scenes_mask_set(scenes) -> MaskSet:
    """:class:`deepkit.data.scenes.Scenes` as a MaskSet: classes ``background`` + the ten digits."""
    samples = [MaskSample(scenes.images[i], scenes.semantic(i), f"scene_{i:06d}") for i in range(len(scenes))]
    return MaskSet(["background", *scenes.class_names], samples)

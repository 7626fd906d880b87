"""Image datasets: class folders (Pillow), CIFAR-10/100 (python pickle and binary versions), Fashion-MNIST,
``.npz`` arrays, and converting images to the channels/size a model expects.

Every reader returns :class:`~deepkit.data.sources.RawData` with images as floats in [0, 1], shape (N, C, H, W).
"""

from __future__ import annotations

import io
import pickle
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from deepkit.data.sources import RawData, data_root, load_mnist
from deepkit.errors import DataError, ShapeError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}

FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


class ImageWarning(UserWarning):
    """Images were converted (channels, size) or skipped; the message says which and why."""


# --- converting to what the model expects ----------------------------------------------------------------------------
def adapt_images(
    x: torch.Tensor,
    channels: int | None,
    size: list[int] | tuple[int, int] | None,
    where: str,
    notes: list[str] | None = None,
):
    """Convert a batch (N, C, H, W) in [0, 1] to ``channels`` (1 <-> 3) and ``size`` [H, W], warning when it does
    (or, given ``notes``, adding one line there for the caller to report).

    Grayscale -> RGB repeats the channel; RGB -> grayscale uses ITU-R BT.601 luma weights (as Pillow's "L" mode).
    Resizing is bilinear with antialiasing. Other channel counts cannot be converted and raise ``ShapeError``.
    """
    c, h, w = x.shape[1:]
    done = []
    if channels is not None and channels != c:
        x = convert_channels(x, channels, where)
        done.append(f"converted {c}-channel images to {channels} channel(s)")
    if size is not None and [h, w] != list(size):
        x = F.interpolate(x, size=tuple(size), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
        done.append(f"resized {h}×{w} images to {size[0]}×{size[1]}")
    if done and notes is not None:
        notes.append(f"{where}: {'; '.join(done)}")
    elif done:
        for line in done:
            warnings.warn(f"{where}: {line}", ImageWarning, stacklevel=2)
    return x


def convert_channels(x: torch.Tensor, channels: int, where: str) -> torch.Tensor:
    """(N, C, H, W) -> (N, channels, H, W): grayscale -> RGB repeats the channel, RGB -> grayscale is BT.601 luma."""
    c = x.shape[1]
    if (c, channels) == (1, 3):
        return x.expand(-1, 3, -1, -1).contiguous()
    if (c, channels) == (3, 1):
        weights = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x * weights).sum(1, keepdim=True)
    if c == channels:
        return x
    raise ShapeError(f"{where}: images have {c} channel(s); cannot convert them to the {channels} expected")


# --- image files ---------------------------------------------------------------------------------------------------
def load_image_file(path: Path) -> np.ndarray:
    """One image file -> uint8 array (H, W) for grayscale or (H, W, 3) for colour (alpha dropped).

    Raises:
        DataError: the file is not a readable image (the message names it).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("L", "RGB"):
                img = im.copy()
            elif im.mode in ("1", "I", "I;16", "F", "LA") or (im.mode == "P" and _palette_is_gray(im)):
                img = im.convert("L")
            else:  # P, RGBA, CMYK, YCbCr, ...
                img = im.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"cannot read image {path}: {e}; expected a PNG/JPEG/BMP file") from None
    return np.array(img, dtype=np.uint8)  # writable copy


def _palette_is_gray(im) -> bool:
    pal = np.asarray(im.convert("RGB"), dtype=np.uint8)
    return bool((pal[..., 0] == pal[..., 1]).all() and (pal[..., 1] == pal[..., 2]).all())


def _stack(
    arrays: list[np.ndarray],
    paths: list[Path],
    size: list[int] | None,
    where: str,
    channels: int | None = None,
    why: str | None = None,
) -> torch.Tensor:
    """uint8 arrays of possibly mixed channels and sizes -> (N, C, H, W) in [0, 1].

    The channel count is ``channels`` (data.channels), else that of the majority of the images (a tie: colour);
    the others are converted, with one warning that counts them. Sizes: ``size``, else the most common one.
    """
    n_colour = sum(a.ndim == 3 for a in arrays)
    n_gray = len(arrays) - n_colour
    target_c = channels if channels in (1, 3) else (3 if n_colour >= n_gray else 1)
    odd = n_gray if target_c == 3 else n_colour
    if odd:
        kinds = ("grayscale", "RGB") if target_c == 3 else ("RGB", "grayscale")
        if why is None:
            why = (
                f"data.channels={channels}"
                if channels in (1, 3)
                else "the majority; set data.channels=" + ("1 for grayscale" if target_c == 3 else "3 to keep colour")
            )
        warnings.warn(
            f"{where}: converted {odd} of {len(arrays)} images from {kinds[0]} to {kinds[1]} ({why})",
            ImageWarning,
            stacklevel=2,
        )
    sizes = Counter(a.shape[:2] for a in arrays)
    target = tuple(size) if size else sizes.most_common(1)[0][0]
    if len(sizes) > 1 and not size:
        odd_path = next(p for a, p in zip(arrays, paths, strict=True) if a.shape[:2] != target)
        warnings.warn(
            f"{where}: images have {len(sizes)} different sizes (e.g. {odd_path}); all were resized to the most "
            f"common, {target[0]}×{target[1]} (set data.image_size=[H,W] to choose)",
            ImageWarning,
            stacklevel=2,
        )
    out = []
    for a in arrays:
        t = torch.from_numpy(a).float().div_(255)
        t = (t.permute(2, 0, 1) if t.ndim == 3 else t[None]).contiguous()
        if t.shape[0] != target_c:
            t = convert_channels(t[None], target_c, where)[0]
        if tuple(t.shape[1:]) != target:
            t = F.interpolate(t[None], size=target, mode="bilinear", antialias=True, align_corners=False)[0]
        out.append(t.clamp(0, 1))
    return torch.stack(out)


def read_class_folders(
    folder: Path,
    on_error: str = "stop",
    size: list[int] | None = None,
    class_names: list[str] | None = None,
    channels: int | None = None,
    why: str | None = None,
) -> tuple[torch.Tensor, np.ndarray, list[str]]:
    """Images in ``folder/<class>/*`` -> (images, labels, class names). Classes are the sub-folders, sorted.

    Args:
        on_error: ``stop`` raises on the first unreadable image; ``skip`` leaves it out with a warning.
        size: [H, W] to resize every image to (default: the most common size; others are resized with a warning).
        class_names: use these classes (a test split must use the training split's classes).
        channels: 1 or 3 (default: those of most images; the others are converted with one warning), ``why``.
    """
    if not folder.is_dir():
        raise DataError(f"image folder not found: {folder}; expected one sub-folder of images per class")
    found = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not found:
        raise DataError(f"{folder} has no class sub-folders; expected {folder}/<class name>/<image files>")
    names = class_names or found
    unknown = sorted(set(found) - set(names))
    if unknown:
        raise DataError(f"{folder} has class folders {unknown[:5]} that the training split does not have ({names})")
    arrays, labels, paths = [], [], []
    for label, name in enumerate(names):
        files = (
            sorted(p for p in (folder / name).glob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if (folder / name).is_dir()
            else []
        )
        if not files and name in found:
            raise DataError(
                f"class folder {folder / name} has no images (expected {', '.join(sorted(IMAGE_SUFFIXES))})"
            )
        for p in files:
            try:
                arrays.append(load_image_file(p))
            except DataError as e:
                if on_error != "skip":
                    raise DataError(f"{e} (set data.on_bad_image=skip to leave such files out)") from None
                warnings.warn(f"skipped unreadable image {p}", ImageWarning, stacklevel=2)
                continue
            labels.append(label)
            paths.append(p)
    if not arrays:
        raise DataError(f"no readable images in {folder}")
    return _stack(arrays, paths, size, str(folder), channels, why), np.asarray(labels, dtype=np.int64), names


def load_image_folder(
    path: str | Path | None, on_error: str = "stop", size: list[int] | None = None, channels: int | None = None
) -> RawData:
    """An image-folder dataset: ``path/<class>/*.png`` or, with an official split, ``path/train/<class>/...`` and
    ``path/test/<class>/...`` (``val/`` is read as part of train; deepkit takes its own validation split).
    ``channels``: 1 or 3, else those of most training images (a test split follows the training split)."""
    if not path:
        raise DataError(
            "data.path is not set; expected a folder with one sub-folder of images per class "
            "(e.g. data.path=photos, holding photos/cats/*.jpg and photos/dogs/*.jpg)"
        )
    root = Path(path).expanduser()
    if channels not in (None, 1, 3):
        raise ShapeError(f"data.channels must be 1 or 3, got {channels}")
    if (root / "train").is_dir() and (root / "test").is_dir():
        x, y, names = read_class_folders(root / "train", on_error, size, channels=channels)
        size = size or list(x.shape[2:])
        x_test, y_test, _ = read_class_folders(
            root / "test", on_error, size, names, channels=x.shape[1], why="as the training split"
        )
        return RawData("image", x, y, x_test, y_test, class_names=names)
    x, y, names = read_class_folders(root, on_error, size, channels=channels)
    return RawData("image", x, y, class_names=names)


# --- CIFAR ---------------------------------------------------------------------------------------------------------
class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler for CIFAR's python batches: only the globals a dict of numpy arrays, lists and bytes needs.

    ``pickle.load`` on a downloaded file can run arbitrary code (any importable callable can be named in the
    stream); here anything outside this allow-list is refused.
    """

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes
        ("builtins", "list"),
        ("builtins", "dict"),
        ("builtins", "tuple"),
        ("builtins", "bytes"),
        ("builtins", "bytearray"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed in a CIFAR batch")
        return super().find_class(module, name)


def load_cifar_pickle(path: Path) -> dict:
    """Read one CIFAR python batch safely; keys come back as ``str``."""
    if not path.is_file():
        raise DataError(f"CIFAR batch not found: {path}")
    try:
        obj = _RestrictedUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise DataError(f"cannot read CIFAR batch {path}: {e}; expected a pickled dict of numpy arrays") from None
    if not isinstance(obj, dict):
        raise DataError(f"CIFAR batch {path} holds a {type(obj).__name__}, expected a dict")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _cifar_images(data, n_labels: int, where: str) -> torch.Tensor:
    arr = np.array(data, dtype=np.uint8)  # a writable copy
    if arr.ndim != 2 or arr.shape[1] != 3072 or len(arr) != n_labels:
        raise DataError(
            f"{where}: data has shape {arr.shape} for {n_labels} labels; expected (N, 3072) rows of 32×32 RGB"
        )
    return torch.from_numpy(arr.reshape(-1, 3, 32, 32)).float().div_(255)  # rows are R plane, G plane, B plane


def _names(values) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def load_cifar(name: str, path: str | Path | None, label_mode: str = "fine") -> RawData:
    """CIFAR-10 or CIFAR-100, python (pickle) or binary version, from ``path`` (default DATA_ROOT/<name>).

    ``path`` may be the extracted folder itself (``cifar-10-batches-py``, ``cifar-10-batches-bin``,
    ``cifar-100-python``, ``cifar-100-binary``) or a folder holding one of them.
    """
    root = Path(path).expanduser() if path else data_root() / name
    candidates = (
        ["cifar-10-batches-py", "cifar-10-batches-bin"]
        if name == "cifar10"
        else ["cifar-100-python", "cifar-100-binary"]
    )
    folder = next((root / c for c in candidates if (root / c).is_dir()), root)
    if not folder.is_dir():
        raise DataError(f"CIFAR folder not found: {folder} (set DEEPKIT_DATA or data.path)")
    if name == "cifar10":
        if (folder / "data_batch_1").is_file():
            return _cifar10_python(folder)
        if (folder / "data_batch_1.bin").is_file():
            return _cifar10_binary(folder)
    else:
        if (folder / "train").is_file():
            return _cifar100_python(folder, label_mode)
        if (folder / "train.bin").is_file():
            return _cifar100_binary(folder, label_mode)
    raise DataError(
        f"{folder} holds no {name} batches; expected the extracted python version ({candidates[0]}) "
        f"or the binary version ({candidates[1]})"
    )


def _cifar10_python(folder: Path) -> RawData:
    parts = []
    for f in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        d = load_cifar_pickle(folder / f)
        if "data" not in d or "labels" not in d:
            raise DataError(f"CIFAR batch {folder / f} has keys {sorted(d)}; expected 'data' and 'labels'")
        parts.append((_cifar_images(d["data"], len(d["labels"]), str(folder / f)), np.asarray(d["labels"])))
    meta = folder / "batches.meta"
    names = _names(load_cifar_pickle(meta)["label_names"]) if meta.is_file() else [str(i) for i in range(10)]
    x = torch.cat([p[0] for p in parts[:5]])
    y = np.concatenate([p[1] for p in parts[:5]]).astype(np.int64)
    return RawData("image", x, y, parts[5][0], parts[5][1].astype(np.int64), class_names=names)


def _cifar100_python(folder: Path, label_mode: str) -> RawData:
    key = f"{label_mode}_labels"
    out = []
    for f in ("train", "test"):
        d = load_cifar_pickle(folder / f)
        if "data" not in d or key not in d:
            raise DataError(f"CIFAR-100 file {folder / f} has keys {sorted(d)}; expected 'data' and '{key}'")
        out.append((_cifar_images(d["data"], len(d[key]), str(folder / f)), np.asarray(d[key], dtype=np.int64)))
    meta = folder / "meta"
    n = 100 if label_mode == "fine" else 20
    names = _names(load_cifar_pickle(meta)[f"{label_mode}_label_names"]) if meta.is_file() else None
    return RawData("image", out[0][0], out[0][1], out[1][0], out[1][1], class_names=names or list(map(str, range(n))))


def _read_records(path: Path, n_label_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR binary: records of <label byte(s)><3072 pixel bytes>."""
    if not path.is_file():
        raise DataError(f"CIFAR binary batch not found: {path}")
    raw = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    rec = n_label_bytes + 3072
    if len(raw) == 0 or len(raw) % rec:
        raise DataError(f"{path} has {len(raw)} bytes, not a whole number of {rec}-byte CIFAR records (truncated?)")
    raw = raw.reshape(-1, rec)
    return raw[:, :n_label_bytes].astype(np.int64), raw[:, n_label_bytes:]


def _text_names(path: Path, n: int) -> list[str]:
    if path.is_file():
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        if len(names) == n:
            return names
    return [str(i) for i in range(n)]


def _cifar10_binary(folder: Path) -> RawData:
    parts = [_read_records(folder / f"data_batch_{i}.bin", 1) for i in range(1, 6)]
    test = _read_records(folder / "test_batch.bin", 1)
    x = np.concatenate([p[1] for p in parts])
    y = np.concatenate([p[0][:, 0] for p in parts])
    names = _text_names(folder / "batches.meta.txt", 10)
    return RawData(
        "image",
        _cifar_images(x, len(y), str(folder)),
        y,
        _cifar_images(test[1], len(test[0]), str(folder)),
        test[0][:, 0],
        class_names=names,
    )


def _cifar100_binary(folder: Path, label_mode: str) -> RawData:
    col = 1 if label_mode == "fine" else 0  # each record: <coarse label><fine label><pixels>
    (ytr, xtr), (yte, xte) = (_read_records(folder / f, 2) for f in ("train.bin", "test.bin"))
    n = 100 if label_mode == "fine" else 20
    names = _text_names(folder / f"{label_mode}_label_names.txt", n)
    return RawData(
        "image",
        _cifar_images(xtr, len(ytr), str(folder)),
        ytr[:, col],
        _cifar_images(xte, len(yte), str(folder)),
        yte[:, col],
        class_names=names,
    )


# --- other formats -------------------------------------------------------------------------------------------------
def load_fashion_mnist(path: str | Path | None = None) -> RawData:
    """Fashion-MNIST (Xiao et al., 2017): MNIST's IDX format and file names, ten clothing classes."""
    raw = load_mnist(path or data_root() / "fashion-mnist", download=False)
    raw.class_names = list(FASHION_MNIST_CLASSES)
    return raw


def load_npz(path: str | Path | None) -> RawData:
    """A ``.npz`` file with ``x`` and ``y`` (and optionally ``x_test``, ``y_test``); images (N, C, H, W) or
    (N, H, W) in [0, 1] (floats) or 0..255 (uint8); tables (N, F)."""
    if not path:
        raise DataError("data.path is not set; expected a .npz file with arrays x and y")
    p = Path(path).expanduser()
    try:
        arrays = dict(np.load(p, allow_pickle=False))
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read {p} as a .npz file: {e}") from None
    if "x" not in arrays or "y" not in arrays:
        raise DataError(f"{p} holds arrays {sorted(arrays)}; expected at least 'x' and 'y'")

    def conv(a: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(a.astype(np.float32) / (255.0 if a.dtype == np.uint8 else 1.0))
        return t[:, None] if t.ndim == 3 else t

    x = conv(arrays["x"])
    if x.ndim not in (2, 4):
        raise DataError(f"{p}: x has shape {arrays['x'].shape}; expected (N, F), (N, H, W) or (N, C, H, W)")
    kind = "image" if x.ndim == 4 else "tabular"
    raw = RawData(kind, x, arrays["y"])
    if "x_test" in arrays:
        raw.x_test, raw.y_test = conv(arrays["x_test"]), arrays.get("y_test")
        if raw.y_test is None:
            raise DataError(f"{p} has x_test but no y_test")
    return raw


# --- from a recipe's data section ------------------------------------------------------------------------------------
def read_image_dataset(cfg) -> RawData:
    """``data.name`` in fashion_mnist, cifar10, cifar100, image_folder, npz -> RawData."""
    if cfg.name == "fashion_mnist":
        return load_fashion_mnist(cfg.path)
    if cfg.name in ("cifar10", "cifar100"):
        return load_cifar(cfg.name, cfg.path, cfg.label_mode)
    if cfg.name == "image_folder":
        return load_image_folder(cfg.path, cfg.on_bad_image, cfg.image_size, cfg.channels)
    return load_npz(cfg.path)


def apply_data_options(raw: RawData, cfg) -> RawData:
    """``data.classes``, ``data.per_class``, ``data.channels`` and ``data.image_size`` applied to raw data."""
    from deepkit.data.select import per_class_subset, select_classes

    if cfg.classes:
        raw = select_classes(raw, cfg.classes)
    if cfg.per_class:
        raw = per_class_subset(raw, cfg.per_class, cfg.split_seed, cfg.test_split)
    if cfg.image_size or cfg.channels:
        if raw.kind != "image":
            raise ShapeError("data.image_size/data.channels apply to images; this dataset is a table")
        if cfg.image_size is not None and (len(cfg.image_size) != 2 or min(cfg.image_size) < 1):
            raise ShapeError(f"data.image_size must be [height, width], got {cfg.image_size}")
        if cfg.channels not in (None, 1, 3):
            raise ShapeError(f"data.channels must be 1 or 3, got {cfg.channels}")
        raw.x = adapt_images(raw.x, cfg.channels, cfg.image_size, f"dataset '{cfg.name}'")
        if raw.x_test is not None:
            raw.x_test = adapt_images(raw.x_test, cfg.channels, cfg.image_size, f"dataset '{cfg.name}' (test)")
    return raw

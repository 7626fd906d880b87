"""Reading inputs for prediction: image files, ``.npy`` arrays and CSV rows, checked against the model's input."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from deepkit.data.preprocess import Preprocessing
from deepkit.data.tables import CsvConfig, DataWarning, read_csv_columns, read_csv_table, unseen_message
from deepkit.errors import DataError, ShapeError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def read_image(path: Path, prep: Preprocessing, notes: list[str] | None = None) -> torch.Tensor:
    """One image file -> (C, H, W) floats in [0, 1], with the channels and size the model expects.

    A colour image for a grayscale model becomes grayscale (luma), a grayscale one for a colour model RGB, and
    other sizes are resized, as training converts the images that differ from the rest (or from data.channels /
    data.image_size): with a warning, or a line in ``notes`` when given (the caller warns once for many files).
    """
    from PIL import Image, UnidentifiedImageError

    c, h, w = prep.input_shape
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            img = im.convert("RGBA" if mode in ("P", "LA", "PA") else mode)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"cannot read image {path}: {e}; expected a PNG/JPEG/BMP file") from None
    if img.mode in ("RGBA", "LA"):
        img = img.convert("RGB") if c == 3 else img.convert("LA").getchannel(0)
    arr = np.asarray(img.convert("L") if img.mode in ("1", "I", "I;16", "F") else img, dtype=np.float32)
    arr = arr[..., None] if arr.ndim == 2 else arr
    if c == 1 and arr.shape[-1] == 3 and (arr[..., 1:] == arr[..., :1]).all():
        arr = arr[..., :1]  # a grayscale picture stored as RGB
    x = torch.from_numpy(arr.transpose(2, 0, 1) / 255.0).float()
    if x.shape[0] != c or x.shape[1] != h or x.shape[2] != w:
        # grayscale <-> RGB and resizing as data.channels / data.image_size do in training
        from deepkit.data.images import adapt_images

        x = adapt_images(x[None], c, [h, w], f"image {path}", notes)[0]
    return x


def read_inputs(paths: list[str | Path], prep: Preprocessing) -> tuple[list[str], torch.Tensor]:
    """Raw (un-normalized) inputs and a display name for each: images, .npy (one sample or a batch), CSV rows."""
    names: list[str] = []
    rows: list[torch.Tensor] = []
    shape = tuple(prep.input_shape)
    converted: list[str] = []  # one line per converted image; one warning for them all
    for p in map(Path, paths):
        if not p.is_file():
            raise DataError(f"input file not found: {p}")
        suffix = p.suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            if prep.kind != "image":
                raise ShapeError(f"{p} is an image, but the model takes {int(np.prod(shape))} tabular features")
            names.append(str(p))
            rows.append(read_image(p, prep, converted))
        elif suffix == ".npy":
            try:
                arr = np.load(p, allow_pickle=False)
            except (ValueError, OSError) as e:
                raise DataError(f"cannot read {p} as a NumPy array: {e}") from None
            if tuple(arr.shape) == shape:
                arr = arr[None]
            if tuple(arr.shape[1:]) != shape:
                raise ShapeError(
                    f"{p} holds an array of shape {arr.shape}; expected {shape} or (N, {', '.join(map(str, shape))})"
                )
            t = torch.as_tensor(arr, dtype=torch.float32)
            names += [f"{p}[{i}]" for i in range(len(t))] if len(t) > 1 else [str(p)]
            rows += list(t)
        elif suffix in (".csv", ".tsv", ".txt"):
            if prep.kind != "tabular":
                raise ShapeError(f"{p} is a table, but the model takes images of shape {shape}")
            x = read_table_rows(p, prep)
            if x.shape[1] != int(np.prod(shape)):
                raise ShapeError(f"{p} has {x.shape[1]} feature columns; the model expects {int(np.prod(shape))}")
            names += [f"{p}:row{i + 1}" for i in range(len(x))]
            rows += list(torch.from_numpy(x))
        else:
            raise DataError(f"unsupported input {p}: expected an image (.png/.jpg), a .npy array or a .csv table")
    if converted:
        from deepkit.data.images import ImageWarning

        n_images = sum(Path(n).suffix.lower() in IMAGE_SUFFIXES for n in names)
        msg = (
            converted[0]
            if len(converted) == 1
            else (
                f"converted {len(converted)} of {n_images} images to what the model expects "
                f"({shape[0]} channel(s), {shape[1]}×{shape[2]}), e.g. {converted[0]}"
            )
        )
        warnings.warn(msg, ImageWarning, stacklevel=2)
    if not rows:
        raise DataError("no inputs given; expected image files, .npy arrays or CSV rows")
    x = torch.stack(rows).reshape(len(rows), *shape)
    if not torch.isfinite(x).all():
        raise DataError("inputs contain NaN or Inf values; expected finite numbers")
    return names, x


def read_table_rows(path: Path, prep: Preprocessing) -> np.ndarray:
    """A CSV's rows as the model's inputs (before normalization): its categorical columns one-hot encoded and its
    missing cells filled as in training (an unseen category: all zeros, with one warning)."""
    enc = prep.tabular
    if enc is None:  # a run from before categorical columns: numbers only
        return read_csv_table(path, target=prep.target_name, features=prep.feature_names, require_target=False).x
    opts = CsvConfig(missing="impute", na_values=enc.na_values)
    cols = read_csv_columns(path, prep.target_name, enc.columns, opts, enc.categorical, require_target=False)
    x, _, unseen = enc.transform(cols.cells)
    if unseen:
        warnings.warn(unseen_message(unseen, str(path)), DataWarning, stacklevel=3)
    return x

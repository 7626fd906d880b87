"""Reading inputs for prediction: image files, ``.npy`` arrays and CSV rows, checked against the model's input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from deepkit.data.preprocess import Preprocessing
from deepkit.data.tables import read_csv_table
from deepkit.errors import DataError, ShapeError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def read_image(path: Path, prep: Preprocessing) -> torch.Tensor:
    """One image file -> (C, H, W) floats in [0, 1], with the channels and size the model expects."""
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
    if arr.shape[-1] == 3 and c == 1:
        if not (np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2])):
            raise ShapeError(f"image {path} has 3 colour channels; the model expects 1 channel (grayscale)")
        arr = arr[..., :1]  # a grayscale picture stored as RGB
    x = torch.from_numpy(arr.transpose(2, 0, 1) / 255.0).float()
    if x.shape[0] != c or x.shape[1] != h or x.shape[2] != w:
        # grayscale -> RGB and resizing as data.channels / data.image_size do in training (with a warning)
        from deepkit.data.images import adapt_images

        x = adapt_images(x[None], c, [h, w], f"image {path}")[0]
    return x


def read_inputs(paths: list[str | Path], prep: Preprocessing) -> tuple[list[str], torch.Tensor]:
    """Raw (un-normalized) inputs and a display name for each: images, .npy (one sample or a batch), CSV rows."""
    names: list[str] = []
    rows: list[torch.Tensor] = []
    shape = tuple(prep.input_shape)
    for p in map(Path, paths):
        if not p.is_file():
            raise DataError(f"input file not found: {p}")
        suffix = p.suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            if prep.kind != "image":
                raise ShapeError(f"{p} is an image, but the model takes {int(np.prod(shape))} tabular features")
            names.append(str(p))
            rows.append(read_image(p, prep))
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
            table = read_csv_table(p, target=prep.target_name, features=prep.feature_names, require_target=False)
            if table.x.shape[1] != int(np.prod(shape)):
                raise ShapeError(f"{p} has {table.x.shape[1]} feature columns; the model expects {int(np.prod(shape))}")
            names += [f"{p}:row{i + 1}" for i in range(len(table.x))]
            rows += list(torch.from_numpy(table.x))
        else:
            raise DataError(f"unsupported input {p}: expected an image (.png/.jpg), a .npy array or a .csv table")
    if not rows:
        raise DataError("no inputs given; expected image files, .npy arrays or CSV rows")
    x = torch.stack(rows).reshape(len(rows), *shape)
    if not torch.isfinite(x).all():
        raise DataError("inputs contain NaN or Inf values; expected finite numbers")
    return names, x

"""Dataset readers. Each returns :class:`RawData`: inputs as floats (images in [0, 1]), or a CSV's cells (encoded
once the training split is known), raw targets, and the official test split where the dataset has one."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from deepkit.data.idx import read_idx
from deepkit.data.tables import CsvConfig, read_csv_columns
from deepkit.errors import DataError


@dataclass
class RawData:
    kind: str  # "image" or "tabular"
    x: torch.Tensor | np.ndarray  # (N, C, H, W) in [0, 1] or (N, F); a CSV: (N, F) cells (see is_cells)
    y: np.ndarray  # (N,) labels or values, or strings from a CSV
    x_test: torch.Tensor | np.ndarray | None = None
    y_test: np.ndarray | None = None
    feature_names: list[str] | None = None
    target_name: str | None = None
    class_names: list[str] | None = None  # when the dataset defines them
    categorical: list[str] | None = None  # a CSV's categorical columns
    notes: list[str] = field(default_factory=list)  # lines for the run's log (rows left out, ...)

    @property
    def is_cells(self) -> bool:
        """``x`` holds a CSV's cells (an object array: floats, NaN for missing, in numeric columns; strings, None
        for missing, in categorical ones), which become numbers once the training split is known."""
        return isinstance(self.x, np.ndarray) and self.x.dtype == object


def data_root() -> Path:
    """Where datasets live: ``$DEEPKIT_DATA``, else ``$XDG_CACHE_HOME/deepkit/datasets`` (``~/.cache/...``)."""
    if os.environ.get("DEEPKIT_DATA"):
        return Path(os.environ["DEEPKIT_DATA"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "deepkit" / "datasets"


def dataset_path(cfg, folder: str, filename: str | None = None) -> Path:
    """``data.path`` (a file, or a folder holding ``filename``), else ``DATA_ROOT/folder[/filename]``; must exist."""
    base = Path(cfg.path).expanduser() if cfg.path else data_root() / folder
    if filename and base.is_dir():
        base = base / filename
    if not base.exists():
        raise DataError(
            f"dataset '{cfg.name}' not found at {base}; set data.path or DEEPKIT_DATA (expected {folder}/"
            f"{filename or ''})"
        )
    return base


def load_digits() -> RawData:
    """scikit-learn's 8×8 handwritten digits (1,797 images, UCI), shipped inside scikit-learn."""
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0).unsqueeze(1)  # (N, 1, 8, 8), pixels 0..16 -> [0, 1]
    return RawData("image", x, d.target.astype(np.int64), class_names=[str(c) for c in d.target_names])


def load_diabetes() -> RawData:
    """scikit-learn's diabetes regression set: 442 patients, 10 raw (unscaled) features, disease progression."""
    from sklearn.datasets import load_diabetes as sk_diabetes

    d = sk_diabetes(scaled=False)
    return RawData(
        "tabular",
        torch.from_numpy(d.data.astype(np.float32)),
        d.target.astype(np.float32),
        feature_names=list(d.feature_names),
        target_name="progression",
    )


MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def find_idx_file(folder: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx")):
        if (folder / name).is_file():
            return folder / name
    raise DataError(
        f"{stem}(.gz) not found in {folder}; expected the four MNIST IDX files there "
        "(set DEEPKIT_DATA or data.path, or data.download=true)"
    )


def load_mnist(path: str | Path | None = None, download: bool = False) -> RawData:
    """MNIST (or Fashion-MNIST) from the four IDX files, ``.gz`` or raw, in ``path`` (default DATA_ROOT/mnist)."""
    folder = Path(path) if path else data_root() / "mnist"
    if download and not all(any((folder / (s + e)).is_file() for e in ("", ".gz")) for s in MNIST_FILES.values()):
        from deepkit.data.download import download_mnist

        download_mnist(folder)
    if not folder.is_dir():
        raise DataError(f"MNIST folder not found: {folder} (set DEEPKIT_DATA or data.path, or data.download=true)")
    arrays = {k: read_idx(find_idx_file(folder, stem)) for k, stem in MNIST_FILES.items()}
    for split in ("train", "test"):
        xi, yi = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if xi.ndim != 3 or yi.ndim != 1 or len(xi) != len(yi):
            raise DataError(
                f"MNIST {split} files in {folder} disagree: images {xi.shape}, labels {yi.shape}; "
                "expected (N, H, W) images and N labels"
            )

    def images(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a.astype(np.float32) / 255.0).unsqueeze(1)  # (N, 1, 28, 28) in [0, 1]

    return RawData(
        "image",
        images(arrays["train_images"]),
        arrays["train_labels"].astype(np.int64),
        images(arrays["test_images"]),
        arrays["test_labels"].astype(np.int64),
        class_names=[str(i) for i in range(10)],
    )


def load_csv(
    path: str | Path | None,
    target: str | None,
    features: list[str] | None,
    options: CsvConfig | None = None,
    categorical: list[str] | None = None,
) -> RawData:
    """A CSV table as cells (see :func:`~deepkit.data.tables.read_csv_columns`); ``categorical``: a trained run's."""
    if not path:
        raise DataError("data.path is not set; expected the path of a CSV file (e.g. data.path=my.csv)")
    t = read_csv_columns(path, target, features, options, categorical)
    return RawData(
        "tabular",
        t.cells,
        np.asarray(t.y, dtype=object),
        feature_names=t.feature_names,
        target_name=t.target_name,
        categorical=t.categorical,
        notes=t.notes,
    )

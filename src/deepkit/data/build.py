"""Tables and images: from a ``data`` section to train/val/test tensors, preprocessing fitted on train only."""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from deepkit.data.augment import AugmentConfig
from deepkit.data.loader import TensorLoader
from deepkit.data.module import SPLITS, DataModule, check_split
from deepkit.data.preprocess import Preprocessing
from deepkit.data.sources import RawData, load_csv, load_diabetes, load_digits, load_mnist
from deepkit.data.splits import hold_out, is_number, label_order, label_str
from deepkit.data.tables import CsvConfig, DataWarning, TabularEncoding, summarize, unseen_message
from deepkit.errors import ConfigError, DataError, suggest

DATASETS = {
    "digits": "scikit-learn 8×8 handwritten digits (embedded; 1,797 images, 10 classes)",
    "diabetes": "scikit-learn diabetes progression (embedded; 442 rows, 10 features, regression)",
    "mnist": "MNIST IDX files (.gz or raw) from data.path or DATA_ROOT/mnist",
    "csv": "a CSV table from data.path: numeric and categorical features (data.csv), one target column",
    "fashion_mnist": "Fashion-MNIST IDX files from data.path or DATA_ROOT/fashion-mnist",
    "cifar10": "CIFAR-10, python or binary batches, from data.path or DATA_ROOT/cifar10",
    "cifar100": "CIFAR-100, python or binary version, from data.path or DATA_ROOT/cifar100 (data.label_mode)",
    "image_folder": "images in data.path/<class>/ (or data.path/train/<class>/ and data.path/test/<class>/)",
    "npz": "a .npz file from data.path with arrays x, y (and x_test, y_test)",
}


TARGETS = ("label", "bit", "value")  # class labels (int64), 0/1 bits (float), real values (float, (N, K))


@dataclass
class DataConfig:
    """The ``data`` section of table and image recipes (supervised and generative families)."""

    name: str = "digits"  # digits, diabetes, mnist, csv, ... (arrays: Python API only)
    path: str | None = None  # file or folder; default DATA_ROOT/<name> for public datasets
    target: str | None = None  # CSV: target column (default: last column)
    features: list[str] | None = None  # CSV: feature columns (default: all but the target)
    csv: CsvConfig = field(default_factory=CsvConfig)  # CSV: categorical columns and missing values
    val_split: float = 0.1  # fraction of the training part held out for validation
    test_split: float = 0.2  # fraction held out for test when the dataset has no official test split
    split_seed: int = 0  # fixes the held-out sets independently of the training seed
    normalize: Literal["auto", "channel", "feature", "none"] = "auto"  # auto: channel for images, feature for tables
    standardize_target: bool = True  # regression: train on (y - mean) / std, report in original units
    batch_size: int = 64
    eval_batch_size: int = 1024
    limit: int | None = None  # use only the first N training samples (quick experiments)
    download: bool = False  # fetch public datasets that are missing (needs network)
    classes: list[int | str] | None = None  # keep only these classes (relabelled 0..K-1 in this order)
    per_class: int | None = None  # keep N random training samples per class (test split stays whole)
    image_size: list[int] | None = None  # [H, W]: resize images to this size (with a warning)
    channels: int | None = None  # 1 or 3: convert images to grayscale / RGB (with a warning)
    on_bad_image: Literal["stop", "skip"] = "stop"  # image folders: unreadable file -> error, or skip with a warning
    label_mode: Literal["fine", "coarse"] = "fine"  # CIFAR-100: 100 fine or 20 coarse classes
    augment: AugmentConfig | None = None  # training-batch augmentation (images)
    channels_last: bool = False  # conv nets: NHWC memory layout (faster with tensor cores / bf16 on GPUs)


@dataclass
class DataBundle(DataModule):
    """Normalized tensors per split, plus the preprocessing that produced them (saved with the model)."""

    task: str  # the task it was built for (classification, binary, regression, vae, ...)
    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor] | None
    test: tuple[torch.Tensor, torch.Tensor] | None
    preprocessing: Preprocessing
    batch_size: int = 64
    eval_batch_size: int = 1024
    extras: dict = field(default_factory=dict)
    config: DataConfig | None = None  # the data section that built it (recorded in the run's config.yaml)
    target: str = "label"  # how targets are encoded: one of TARGETS
    notes: list[str] = field(default_factory=list)
    data_warnings: list[str] = field(default_factory=list)  # warnings shown while reading (also for RUN_DIR/log.txt)

    @property
    def channels_last(self) -> bool:
        return bool(self.config is not None and self.config.channels_last)

    @property
    def num_classes(self) -> int | None:
        names = self.preprocessing.class_names
        return len(names) if names and self.target == "label" else None

    @property
    def num_outputs(self) -> int:
        """Width of the model's last layer."""
        if self.target == "label":
            return len(self.preprocessing.class_names or [])
        if self.target == "bit":
            return 1
        return int(self.train[1].shape[1]) if self.train[1].ndim > 1 else 1

    def sizes(self) -> dict[str, int]:
        return {k: len(v[0]) for k in SPLITS if (v := getattr(self, k)) is not None and len(v[0])}

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        return getattr(self, check_split(name))

    def loader(self, name: str, shuffle: bool | None = None, seed: int = 0, drop_last: bool = False) -> TensorLoader:
        s = self.split(name)
        if s is None:
            raise DataError(f"this dataset has no '{name}' split (val_split/test_split set it)")
        train = name == "train"
        return TensorLoader(
            s[0],
            s[1],
            self.batch_size if train else self.eval_batch_size,
            shuffle=train if shuffle is None else shuffle,
            drop_last=drop_last,
            seed=seed,
        )

    def without(self, name: str) -> DataBundle:
        """A copy without split ``name`` (a benchmark does not validate)."""
        return dataclasses.replace(self, **{check_split(name): None})


def read_raw(cfg: DataConfig, preprocessing: Preprocessing | None = None) -> RawData:
    """The dataset ``cfg`` names; a CSV is read with the categorical columns of ``preprocessing`` (a trained run)."""
    if cfg.name == "digits":
        return load_digits()
    if cfg.name == "diabetes":
        return load_diabetes()
    if cfg.name == "mnist":
        return load_mnist(cfg.path, cfg.download)
    if cfg.name == "csv":
        categorical = None
        if preprocessing is not None:  # a trained run's columns: categorical as saved (older runs: none)
            categorical = preprocessing.tabular.categorical if preprocessing.tabular is not None else []
        return load_csv(cfg.path, cfg.target, cfg.features, cfg.csv, categorical)
    if cfg.name == "arrays":
        raise DataError(
            "this run was trained on arrays passed through the Python API (from_arrays); there is no dataset to "
            "reload: name one (e.g. --data name=csv path=FILE.csv) or evaluate in Python with a DataBundle"
        )
    if cfg.name in ("fashion_mnist", "cifar10", "cifar100", "image_folder", "npz"):
        from deepkit.data.images import read_image_dataset

        return read_image_dataset(cfg)
    raise ConfigError(f"unknown dataset '{cfg.name}'{suggest(cfg.name, DATASETS)}")


def encode_targets(
    target: str, y: np.ndarray, class_names: list[str] | None, where: str
) -> tuple[torch.Tensor, list | None]:
    """Raw targets -> tensors: int64 labels (``label``), float 0/1 (``bit``), float (N, 1) (``value``)."""
    if target == "value":
        try:
            values = np.asarray(y, dtype=np.float32)
        except ValueError:
            bad = next(v for v in y if not is_number(v))
            raise DataError(f"{where}: regression target value '{bad}' is not a number") from None
        if not np.isfinite(values).all():
            raise DataError(f"{where}: {int((~np.isfinite(values)).sum())} target values are NaN or Inf")
        return torch.from_numpy(values.reshape(len(values), -1)), None
    if class_names is None:
        uniq = label_order(set(y.tolist()))
        class_names = [label_str(v) for v in uniq]
        lookup = {v: i for i, v in enumerate(uniq)}
        labels = np.array([lookup[v] for v in y.tolist()], dtype=np.int64)
    else:
        labels = np.asarray(y, dtype=np.int64)
    if target == "bit":
        if len(class_names) != 2:
            raise DataError(
                f"{where}: binary classification needs exactly 2 classes, got {len(class_names)} "
                f"({', '.join(class_names[:6])}); use task.name=classification"
            )
        return torch.from_numpy(labels.astype(np.float32)), class_names
    if len(class_names) < 2:
        raise DataError(f"{where}: classification needs at least 2 classes, got {class_names}")
    return torch.from_numpy(labels), class_names


def check_finite(x: torch.Tensor, where: str) -> None:
    bad = ~torch.isfinite(x)
    if bad.any():
        first = int(bad.reshape(len(x), -1).any(1).nonzero()[0])
        raise DataError(
            f"{where}: {int(bad.sum())} input values are NaN or Inf (first in sample {first}); expected finite numbers"
        )


MIN_TRAIN = 2  # training samples: feature scaling (a standard deviation) and any learning need two at least
MANY_CLASSES = 50  # more classes than this (or than 20% of the samples) draws a warning: regression meant?


@contextlib.contextmanager
def collect_warnings() -> Iterator[list[str]]:
    """Warnings raised inside are shown as usual (when the block ends), and the data ones (``DataWarning``,
    ``ImageWarning``) are also listed, for the run's log."""
    from deepkit.data.images import ImageWarning

    seen: list[str] = []
    replay: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                yield seen
            finally:
                replay = list(caught)
    finally:  # an error inside: its warnings are still shown
        for w in replay:
            if issubclass(w.category, (DataWarning, ImageWarning)):
                seen.append(str(w.message))
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)


def read_tensors(cfg: DataConfig, target: str, task: str, preprocessing: Preprocessing | None = None) -> DataBundle:
    """Read the dataset, split it, fit preprocessing on the training part (unless given) and normalize.

    Args:
        cfg: the recipe's data section.
        target: how targets are encoded, one of :data:`TARGETS`.
        task: the task the data is for (recorded in the bundle).
        preprocessing: reuse a fitted one (evaluating a trained run) instead of fitting anew.
    """
    with collect_warnings() as seen:
        raw = read_raw(cfg, preprocessing)
        if cfg.classes or cfg.per_class or cfg.image_size or cfg.channels:
            from deepkit.data.images import apply_data_options

            raw = apply_data_options(raw, cfg)
        bundle = bundle_from_raw(raw, cfg, target, task, preprocessing, where=f"dataset '{cfg.name}'")
    bundle.data_warnings = seen
    return bundle


def check_class_count(class_names: list[str], n: int, where: str) -> None:
    """Warn when a classification target has so many classes for its samples that it is likely a quantity."""
    k = len(class_names)
    if k <= MANY_CLASSES and not (k > 10 and k > 0.2 * n):
        return
    msg = f"{where}: the classification target has {k} classes in {n} samples ({n / k:.1f} per class)"
    if all(is_number(c) for c in class_names):
        fractional = [c for c in class_names if not float(c).is_integer()]
        examples = ", ".join((fractional or class_names)[:3])
        msg += (
            f"; its values are numbers (e.g. {examples}): to predict a quantity, use task.name=regression "
            "(recipe csv_regression)"
        )
    else:
        msg += "; check data.target (the column to predict), or collect more samples per class"
    warnings.warn(msg, DataWarning, stacklevel=3)


def _split_desc(cfg: DataConfig, n_all: int, n_test: int, n_val: int, official_test: bool) -> str:
    test = f"{n_test} test (official split)" if official_test else f"{n_test} test (data.test_split={cfg.test_split})"
    parts = [f"{n_all} in all", f"{test} and {n_val} validation (data.val_split={cfg.val_split}) held out"]
    if cfg.limit is not None:
        parts.append(f"data.limit={cfg.limit}")
    return "; ".join(parts)


def bundle_from_raw(
    raw: RawData,
    cfg: DataConfig,
    target: str,
    task: str,
    preprocessing: Preprocessing | None = None,
    where: str = "data",
) -> DataBundle:
    if len(raw.x) == 0:
        raise DataError(f"{where} is empty; expected at least one sample")
    labelled = target != "value"
    class_names = preprocessing.class_names if preprocessing is not None else raw.class_names
    if preprocessing is not None and class_names is not None and raw.class_names is None and labelled:
        lookup = {name: i for i, name in enumerate(class_names)}
        unknown = sorted({label_str(v) for v in raw.y.tolist()} - set(lookup))
        if unknown:
            raise DataError(f"{where}: labels {unknown[:5]} were not seen in training (classes: {class_names})")
        raw.y = np.array([lookup[label_str(v)] for v in raw.y.tolist()], dtype=np.int64)
        if raw.y_test is not None:
            raw.y_test = np.array([lookup[label_str(v)] for v in raw.y_test.tolist()], dtype=np.int64)
    y, class_names = encode_targets(target, raw.y, class_names, where)
    if target == "label" and preprocessing is None and raw.class_names is None:
        check_class_count(class_names, len(y), where)
    cells = raw.is_cells  # a CSV: cells become numbers after the split, fitted on the training rows only
    x = raw.x if cells else raw.x.float()
    if not cells:
        check_finite(x, where)
    strat = y if labelled else None
    n_all = len(x)
    if raw.x_test is not None:
        y_test, _ = encode_targets(target, raw.y_test, class_names, where + " (test)")
        x_test = raw.x_test if cells else raw.x_test.float()
        if not cells:
            check_finite(x_test, where + " (test)")
    else:
        keep, out = hold_out(len(x), cfg.test_split, strat, cfg.split_seed)
        x_test, y_test = (x[out], y[out]) if len(out) else (None, None)
        x, y = x[keep], y[keep]
        strat = y if labelled else None
    keep, out = hold_out(len(x), cfg.val_split, strat, cfg.split_seed)
    val = (x[out], y[out]) if len(out) else None
    x, y = x[keep], y[keep]
    if cfg.limit is not None:
        x, y = x[: cfg.limit], y[: cfg.limit]
    if len(x) == 0:
        raise DataError(f"{where}: no training samples left after the splits")
    if len(x) < MIN_TRAIN and preprocessing is None:
        unit = "row" if raw.kind == "tabular" else "sample"
        official = raw.x_test is not None
        n_test = len(x_test) if x_test is not None else 0
        desc = _split_desc(cfg, n_all + (n_test if official else 0), n_test, len(out), official)
        raise DataError(
            f"{where}: the training split has {len(x)} {unit} ({desc}); training needs at least {MIN_TRAIN}: "
            "add data, or lower data.test_split / data.val_split"
        )
    notes = list(raw.notes)
    tabular = None
    if cells:
        tabular, (x, x_val, x_test), lines = encode_cells(
            raw, cfg, preprocessing, [x, val[0] if val else None, x_test], where
        )
        val = (x_val, val[1]) if val else None
        notes += lines

    if preprocessing is None:
        norm = cfg.normalize if cfg.normalize != "auto" else ("channel" if raw.kind == "image" else "feature")
        preprocessing = Preprocessing(
            kind=raw.kind,
            input_shape=list(x.shape[1:]),
            normalize=norm,
            class_names=class_names,
            feature_names=raw.feature_names,
            target_name=raw.target_name,
            tabular=tabular,
        ).fit(x)
        if not labelled and cfg.standardize_target:
            preprocessing.fit_target(y)
    else:
        preprocessing.check_shape(x, f"{where} samples")

    def prep(split):
        return None if split is None else (preprocessing.transform(split[0]), split[1])

    return DataBundle(
        task,
        prep((x, y)),
        prep(val),
        prep((x_test, y_test)) if x_test is not None else None,
        preprocessing,
        cfg.batch_size,
        cfg.eval_batch_size,
        config=cfg,
        target=target,
        notes=notes,
    )


def encode_cells(
    raw: RawData, cfg: DataConfig, preprocessing: Preprocessing | None, splits: list, where: str
) -> tuple[TabularEncoding, list[torch.Tensor | None], list[str]]:
    """A CSV's cells per split (train first) -> tensors, with the encoding fitted on the training split (or the
    trained run's, from ``preprocessing``) and lines for the log (categorical columns, missing cells filled).
    Categories met outside the training split are encoded as zeros, with a warning."""
    columns = list(raw.feature_names or [])
    if preprocessing is None:
        enc = TabularEncoding.fit(splits[0], columns, raw.categorical or [], cfg.csv.max_categories, cfg.csv.na_values)
    else:
        enc = preprocessing.tabular or TabularEncoding.numeric(list(preprocessing.feature_names or columns))
        if enc.columns != columns:
            raise DataError(f"{where}: feature columns {columns} differ from the run's ({enc.columns})")
    filled: dict[str, int] = {}
    unseen: dict[str, Counter] = {}
    out: list[torch.Tensor | None] = []
    for cells in splits:
        if cells is None:
            out.append(None)
            continue
        x, f, u = enc.transform(cells)
        for k, v in f.items():
            filled[k] = filled.get(k, 0) + v
        for k, v in u.items():
            unseen.setdefault(k, Counter()).update(v)
        out.append(torch.from_numpy(x))
    if unseen:
        split = "validation/test" if preprocessing is None else "data"
        warnings.warn(unseen_message(unseen, f"{where} ({split})"), DataWarning, stacklevel=3)
    return enc, out, summarize(enc, filled, where)


def raw_from_arrays(x, y, target: str, x_test=None, y_test=None, class_names: list[str] | None = None) -> RawData:
    """NumPy arrays or tensors -> :class:`RawData` (images when ``x`` is (N, C, H, W)), with checks."""
    xt = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    kind = "image" if xt.ndim == 4 else "tabular"
    if xt.ndim not in (2, 4):
        raise DataError(f"x has shape {tuple(xt.shape)}; expected (N, features) or (N, channels, height, width)")
    ya = np.asarray(y)
    if len(ya) != len(xt):
        raise DataError(f"x has {len(xt)} samples but y has {len(ya)}; expected the same number")
    raw = RawData(kind, xt, ya, class_names=class_names)
    if x_test is not None:
        raw.x_test, raw.y_test = torch.as_tensor(np.asarray(x_test), dtype=torch.float32), np.asarray(y_test)
    if class_names is None and target != "value" and ya.dtype.kind in "iu" and len(ya) and ya.min() >= 0:
        raw.class_names = [str(i) for i in range(int(ya.max()) + 1)]
    return raw

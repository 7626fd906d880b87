"""Choosing part of a classification dataset: a subset of its classes, and N labelled samples per class."""

from __future__ import annotations

import numpy as np
import torch

from deepkit.data.sources import RawData
from deepkit.data.splits import hold_out, label_order, label_str
from deepkit.errors import ConfigError, DataError


def _label_names(raw: RawData) -> tuple[np.ndarray, list[str]]:
    """Labels as indices into a list of class names (string labels from a CSV are indexed here)."""
    if raw.class_names is not None:
        return np.asarray(raw.y, dtype=np.int64), list(raw.class_names)
    seen = set(raw.y.tolist()) | (set(raw.y_test.tolist()) if raw.y_test is not None else set())
    values = list(dict.fromkeys(label_str(v) for v in label_order(seen)))  # the order build_data uses
    lookup = {v: i for i, v in enumerate(values)}
    raw.y = np.array([lookup[label_str(v)] for v in raw.y.tolist()], dtype=np.int64)
    if raw.y_test is not None:
        raw.y_test = np.array([lookup[label_str(v)] for v in raw.y_test.tolist()], dtype=np.int64)
    raw.class_names = values
    return raw.y, values


def select_classes(raw: RawData, classes: list) -> RawData:
    """Keep only ``classes`` (names or label values as written in the data), relabelled 0..K-1 in the order given.

    Example: ``data.classes=[5,6,7,8,9]`` on MNIST gives a 5-class problem whose class names are "5" ... "9".
    """
    _, names = _label_names(raw)
    index = {n: i for i, n in enumerate(names)}
    # a class is named as in the data ("cat", "7"); an integer that is not a name is a class index (CIFAR: 0-9)
    wanted = [
        names[c] if isinstance(c, int) and str(c) not in index and 0 <= c < len(names) else str(c) for c in classes
    ]
    missing = [c for c in wanted if c not in index]
    if missing:
        raise ConfigError(f"data.classes: {missing} are not classes of this dataset (classes: {names[:20]})")
    if len(set(wanted)) != len(wanted) or len(wanted) < 2:
        raise ConfigError(f"data.classes needs at least 2 distinct classes, got {classes}")
    remap = np.full(len(names), -1, dtype=np.int64)
    remap[[index[c] for c in wanted]] = np.arange(len(wanted))

    def keep(x, y):
        new = remap[np.asarray(y, dtype=np.int64)]
        mask = new >= 0
        return x[mask], new[mask]

    raw.x, raw.y = keep(raw.x, raw.y)
    if raw.x_test is not None:
        raw.x_test, raw.y_test = keep(raw.x_test, raw.y_test)
    raw.class_names = wanted
    return raw


def per_class_subset(raw: RawData, per_class: int, seed: int, test_split: float) -> RawData:
    """Keep ``per_class`` randomly chosen training samples of each class (the test split stays whole).

    When the dataset has no official test split, the test part is held out first (``test_split``), so the
    small training set never eats into it.
    """
    if per_class < 1:
        raise ConfigError(f"data.per_class must be >= 1, got {per_class}")
    y, names = _label_names(raw)
    if raw.x_test is None:
        keep, out = hold_out(len(y), test_split, torch.from_numpy(y), seed)
        raw.x_test, raw.y_test = raw.x[out], y[out]
        raw.x, raw.y = raw.x[keep], y[keep]
        y = raw.y
    rng = np.random.default_rng(seed)
    chosen = []
    for c in range(len(names)):
        idx = np.flatnonzero(y == c)
        if len(idx) < per_class:
            raise DataError(f"data.per_class={per_class}, but class '{names[c]}' has only {len(idx)} training samples")
        chosen.append(rng.choice(idx, per_class, replace=False))
    order = np.sort(np.concatenate(chosen))
    raw.x, raw.y = raw.x[order], raw.y[order]
    return raw

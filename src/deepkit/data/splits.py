"""Holding out validation/test parts, and label values as class names (shared by the table and image readers)."""

from __future__ import annotations

import numpy as np
import torch

from deepkit.errors import DataError


def is_number(v) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


def label_str(v) -> str:
    """A label value as a class name: ``3.0`` -> ``"3"``, ``"cat"`` -> ``"cat"``."""
    if is_number(v) and float(v).is_integer():
        return str(int(float(v)))
    return str(v)


def label_order(values) -> list:
    """Label values in class order: numbers numerically, then strings."""
    return sorted(values, key=lambda v: (not is_number(v), float(v) if is_number(v) else 0.0, str(v)))


def hold_out(n: int, frac: float, labels: torch.Tensor | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (keep, held_out); stratified by class when labels are given."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(n)
    if frac <= 0:
        return idx, idx[:0]
    n_out = max(1, round(n * frac))
    strat = labels.numpy() if labels is not None else None
    if strat is not None and (np.bincount(strat.astype(np.int64)) < 2).any():
        strat = None  # a class with one sample cannot be split in both parts
    if strat is not None and min(n_out, n - n_out) < len(np.unique(strat)):
        strat = None
    if n_out >= n:
        raise DataError(f"split fraction {frac} of {n} samples leaves nothing to train on")
    keep, out = train_test_split(idx, test_size=n_out, random_state=seed, stratify=strat)
    return np.sort(keep), np.sort(out)

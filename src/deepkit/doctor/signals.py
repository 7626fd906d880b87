"""Small numeric helpers the rules share: loss levels, smoothing, gradient ratios, learning-rate phases."""

from __future__ import annotations

import math

import numpy as np

from deepkit.doctor.records import Layer, RunRecords


def finite(x: np.ndarray) -> np.ndarray:
    return x[np.isfinite(x)]


def ema(x: np.ndarray, beta: float = 0.9) -> np.ndarray:
    """Bias-corrected exponential moving average (as fastai smooths a loss curve); non-finite values are carried
    over, not averaged in."""
    out = np.full(len(x), np.nan)
    avg, n = 0.0, 0
    for i, v in enumerate(x):
        if math.isfinite(v):
            avg = beta * avg + (1 - beta) * v
            n += 1
        if n:
            out[i] = avg / (1 - beta**n)
    return out


def initial_loss(rec: RunRecords) -> float:
    """The loss at the start: the median of the first three steps."""
    loss = finite(rec.steps.get("loss", np.array([]))[:3])
    return float(np.median(loss)) if len(loss) else math.nan


def final_loss(rec: RunRecords) -> float:
    """The loss at the end: the median of the last 10% of steps (at least 3)."""
    loss = rec.steps.get("loss", np.array([]))
    tail = finite(loss[-max(3, len(loss) // 10) :])
    return float(np.median(tail)) if len(tail) else math.nan


def first_nonfinite(rec: RunRecords) -> int | None:
    """The first step whose loss is NaN or infinite."""
    loss, steps = rec.steps.get("loss", np.array([])), rec.steps.get("step", np.array([]))
    bad = np.flatnonzero(~np.isfinite(loss))
    return int(steps[bad[0]]) if len(bad) else None


def full_lr_steps(rec: RunRecords) -> set[int]:
    """Steps at which the learning rate was at least half its peak (warmup and a decayed tail left out)."""
    lr, steps = rec.steps.get("lr", np.array([])), rec.steps.get("step", np.array([]))
    ok = np.isfinite(lr)
    if not ok.any():
        return set(steps.astype(int).tolist())
    return set(steps[ok & (lr >= 0.5 * np.nanmax(lr))].astype(int).tolist())


def update_ratio(rec: RunRecords) -> float:
    """Median of ‖Δw‖/‖w‖ over the weight matrices and the recording steps at full learning rate."""
    steps = full_lr_steps(rec)
    values = []
    for layer in rec.weights():
        keep = np.array([int(s) in steps for s in layer.step], dtype=bool)
        values.append(layer.update_ratio[keep] if keep.any() else layer.update_ratio)
    v = finite(np.concatenate(values)) if values else np.array([])
    return float(np.median(v)) if len(v) else math.nan


def grad_ratio(rec: RunRecords) -> tuple[np.ndarray, np.ndarray, Layer, Layer] | None:
    """‖g_first‖/‖g_last‖ per recording step (AUTOTRAINER's measure), with ‖g_first‖ and the two layers: the first
    and the last weight matrix in the model's parameter order (input side, output side)."""
    weights = [w for w in rec.weights() if np.isfinite(w.grad_norm).any()]
    if len(weights) < 2:
        return None
    first, last = weights[0], weights[-1]
    common = np.intersect1d(first.step, last.step)
    if not len(common):
        return None
    g0 = first.grad_norm[np.isin(first.step, common)]
    g1 = last.grad_norm[np.isin(last.step, common)]
    with np.errstate(divide="ignore", invalid="ignore"):
        return g0 / g1, g0, first, last


def second_half(steps: np.ndarray) -> np.ndarray:
    """A mask of the recording steps in the second half of the run (all of them if there are fewer than 4)."""
    if len(steps) < 4:
        return np.ones(len(steps), dtype=bool)
    return steps >= steps[len(steps) // 2]


def step_range(steps: np.ndarray) -> str:
    s = steps[np.isfinite(steps)]
    return f"steps {int(s.min())}-{int(s.max())}" if len(s) else "no steps"


def fmt_lr(lr: float) -> str:
    """A learning rate rounded to one significant digit: 3e-4."""
    if not lr or not math.isfinite(lr):
        return "?"
    exp = math.floor(math.log10(lr))
    mant = round(lr / 10**exp)
    if mant == 10:
        mant, exp = 1, exp + 1
    return f"{mant}e{exp}" if exp < -2 or exp > 2 else f"{mant * 10.0**exp:g}"

"""Overfitting: the model memorized its training data instead of generalizing: a wide gap between training and
validation, with a validation loss that turns up or a training set learned by heart.

Two ways, each after at least ``MIN_EPOCHS`` epochs with a validation loss:

1. *Rising validation loss*: its last value at least ``RISE`` above its minimum, reached before the last quarter of
   the epochs, while the training loss went on falling; and a generalization gap at the end: training accuracy (or
   F1) at least ``GAP`` above validation's, or, without such a metric, a validation loss at least ``LOSS_GAP`` ×
   the training loss. Sources: UMLAUT (Schoop et al., CHI 2021) overfitting heuristic; early stopping on
   validation loss (Prechelt, 1998: the generalization loss GL(t) = 100·(E_va(t)/E_opt(t) − 1), stop when GL > 5;
   here a finding at 20).
2. *Memorized*: a training accuracy (or F1) of at least ``MEMORIZED`` (training error ≤ 1%: the training set is
   learned by heart, Zhang et al., ICLR 2017) and a validation accuracy at least ``GAP`` below it, and below it by
   more than ``Z`` standard errors of the validation accuracy (binomial, sqrt(a(1 − a)/n): a gap a small
   validation split's chance cannot explain). The generalization gap itself is what overfitting is (Goodfellow,
   Bengio & Courville, *Deep Learning*, 2016, §5.2); a validation loss need not rise when the model memorizes
   (the first held-out evaluation: MNIST on 200 images, 100% training and 90% validation accuracy, validation loss
   0.159 → 0.187).

A run that early stopping ended (before its planned epochs) has had its overfitting handled: an info note.
"""

from __future__ import annotations

import math

import numpy as np

from deepkit.doctor.findings import Finding, Rule
from deepkit.doctor.records import RunRecords

MIN_EPOCHS = 4
RISE = 0.2
GAP = 0.05
LOSS_GAP = 1.5
MEMORIZED = 0.99
Z = 2.0


def final_gap(rec: RunRecords, ok: np.ndarray) -> tuple[float, str | None, float, float]:
    """The last epoch's training minus validation accuracy (or F1): (gap, metric, train value, validation value)."""
    for name in ("accuracy", "f1"):
        tr, va = rec.column(f"train_{name}")[ok], rec.column(f"val_{name}")[ok]
        if len(tr) and math.isfinite(tr[-1]) and math.isfinite(va[-1]):
            return float(tr[-1] - va[-1]), name, float(tr[-1]), float(va[-1])
    return math.nan, None, math.nan, math.nan


def val_examples(rec: RunRecords) -> int:
    """The validation split's size (the data scan's count; 0 when unknown)."""
    try:
        return int(rec.data["splits"]["val"]["examples"])
    except (KeyError, TypeError, ValueError):
        return 0


def memorized(rec: RunRecords, ok: np.ndarray) -> bool:
    """Path 2: training learned by heart, validation clearly (beyond its sampling error) behind."""
    gap, metric, tr, va = final_gap(rec, ok)
    if metric is None or tr < MEMORIZED or gap < GAP:
        return False
    n = val_examples(rec)
    se = math.sqrt(max(va * (1 - va), 0.0) / n) if n else 0.0
    return gap > Z * se


def check(rec: RunRecords) -> Finding | None:
    val, train, epoch = rec.column("val_loss"), rec.column("train_loss"), rec.column("epoch")
    ok = np.isfinite(val)
    if ok.sum() < MIN_EPOCHS:
        return None
    v, t = val[ok], train[ok]
    best = int(np.argmin(v))
    rise = v[-1] / v[best] - 1 if v[best] > 0 else math.nan
    gap, gap_metric, _, _ = final_gap(rec, ok)
    rising = (
        math.isfinite(rise)
        and rise >= RISE
        and best < 0.75 * (len(v) - 1)
        and bool(np.isfinite(t[[best, -1]]).all() and t[-1] < t[best])
        and (gap >= GAP if gap_metric is not None else v[-1] >= LOSS_GAP * t[-1])
    )
    by_heart = not rising and memorized(rec, ok)
    if not (rising or by_heart):
        return None
    try:
        planned = int(rec.config["trainer"]["epochs"])
        stopped_early = bool(rec.config["trainer"].get("early_stopping")) and len(rec.history) < planned
    except (KeyError, TypeError, ValueError):
        stopped_early = False
    e = epoch[ok]
    evidence = {
        "best_epoch": int(e[best]),
        "best_val_loss": float(v[best]),
        "final_val_loss": float(v[-1]),
        "val_loss_rise": round(float(rise), 4),
        "train_loss_at_best": float(t[best]),
        "final_train_loss": float(t[-1]),
        "epochs": int(len(v)),
        "stopped_early": stopped_early,
        "path": "memorized" if by_heart else "rising_val_loss",
    }
    if gap_metric is not None:
        evidence[f"train_minus_val_{gap_metric}"] = round(gap, 4)
    for metric in ("accuracy", "f1", "r2"):
        tr, va = rec.column(f"train_{metric}")[ok], rec.column(f"val_{metric}")[ok]
        if np.isfinite(va).any():
            evidence[f"final_train_{metric}"] = float(tr[-1]) if math.isfinite(tr[-1]) else None
            evidence[f"final_val_{metric}"] = float(va[-1])
    if by_heart:
        n = val_examples(rec)
        summary = (
            ("early stopping ended the run, but " if stopped_early else "")
            + f"the model learned its training set by heart ({gap_metric} "
            f"{evidence['final_train_' + gap_metric]:.3f}) but reached only {evidence['final_val_' + gap_metric]:.3f} "
            "on validation"
            + (f" ({n} examples)" if n else "")
            + f": a gap of {gap:.3f}; training loss {t[-1]:.3g}, validation loss {v[-1]:.3g}"
        )
    else:
        summary = (
            ("early stopping ended the run, but " if stopped_early else "")
            + f"the validation loss was lowest at epoch {int(e[best])} ({v[best]:.4g}) and rose {rise:.0%} to "
            f"{v[-1]:.4g} by epoch {int(e[-1])}, while the training loss fell from {t[best]:.4g} to {t[-1]:.4g}"
        )
    change = (
        f"stop near epoch {int(e[best])} (trainer.early_stopping.patience=3; checkpoints/best keeps epoch "
        f"{int(e[best])} when trainer.monitor=val_loss); model.dropout=0.3; trainer.optimizer.weight_decay=0.05; "
        "data.augment for images; a smaller model or more data"
    )

    def draw(ax):
        ax.plot(e, t, marker="o", ms=3, label="train loss")
        ax.plot(e, v, marker="o", ms=3, label="validation loss")
        ax.axvline(e[best], c="grey", ls="--", lw=0.8, label=f"lowest validation loss (epoch {int(e[best])})")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.legend(fontsize=8)

    return RULE.finding("info" if stopped_early else "warning", summary + ".", evidence, change, draw)


RULE = Rule(
    kind="overfitting",
    title="overfitting",
    priority=12,
    source="UMLAUT (CHI 2021); Prechelt (1998) generalization loss; Zhang et al. (ICLR 2017) memorization",
    thresholds={
        "min_epochs": MIN_EPOCHS,
        "rise": RISE,
        "gap": GAP,
        "loss_gap": LOSS_GAP,
        "memorized": MEMORIZED,
        "z": Z,
    },
    check=check,
)

"""Overfitting: the validation loss turns up while the training loss keeps falling (memorizing, not generalizing).

Thresholds: at least ``MIN_EPOCHS`` epochs with a validation loss; its last value at least ``RISE`` above its
minimum, reached before the last quarter of the epochs, while the training loss went on falling; and a
generalization gap at the end: training accuracy (or F1) at least ``GAP`` above validation's, or, without such a
metric, a validation loss at least ``LOSS_GAP`` × the training loss. A run that early stopping ended (before its
planned epochs) has had its overfitting handled: an info note. Source: UMLAUT
(Schoop et al., CHI 2021) overfitting heuristic; early stopping on validation loss (Prechelt, 1998: the
generalization loss GL(t) = 100·(E_va(t)/E_opt(t) − 1), stop when GL > 5; here a finding at 20).
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


def check(rec: RunRecords) -> Finding | None:
    val, train, epoch = rec.column("val_loss"), rec.column("train_loss"), rec.column("epoch")
    ok = np.isfinite(val)
    if ok.sum() < MIN_EPOCHS:
        return None
    v, t = val[ok], train[ok]
    best = int(np.argmin(v))
    rise = v[-1] / v[best] - 1 if v[best] > 0 else math.nan
    if not (math.isfinite(rise) and rise >= RISE and best < 0.75 * (len(v) - 1)):
        return None
    if not (np.isfinite(t[[best, -1]]).all() and t[-1] < t[best]):
        return None
    gap, metric = math.nan, None
    for name in ("accuracy", "f1"):
        tr, va = rec.column(f"train_{name}")[ok], rec.column(f"val_{name}")[ok]
        if math.isfinite(tr[-1]) and math.isfinite(va[-1]):
            gap, metric = float(tr[-1] - va[-1]), name
            break
    if metric is not None and gap < GAP:
        return None
    if metric is None and not v[-1] >= LOSS_GAP * t[-1]:
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
    }
    if metric is not None:
        evidence[f"train_minus_val_{metric}"] = round(gap, 4)
    for metric in ("accuracy", "f1", "r2"):
        tr, va = rec.column(f"train_{metric}")[ok], rec.column(f"val_{metric}")[ok]
        if np.isfinite(va).any():
            evidence[f"final_train_{metric}"] = float(tr[-1]) if math.isfinite(tr[-1]) else None
            evidence[f"final_val_{metric}"] = float(va[-1])
    summary = (
        ("early stopping ended the run, but " if stopped_early else "")
        + f"the validation loss was lowest at epoch {int(e[best])} ({v[best]:.4g}) and rose {rise:.0%} to {v[-1]:.4g} "
        f"by epoch {int(e[-1])}, while the training loss fell from {t[best]:.4g} to {t[-1]:.4g}"
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
    source="UMLAUT (CHI 2021); Prechelt (1998) generalization loss",
    thresholds={"min_epochs": MIN_EPOCHS, "rise": RISE, "gap": GAP, "loss_gap": LOSS_GAP},
    check=check,
)

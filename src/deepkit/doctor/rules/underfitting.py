"""Underfitting: the training loss stopped improving while still high, and validation does as well as training.

Thresholds: at least ``MIN_EPOCHS`` epochs; the smoothed training loss fell by less than ``PLATEAU`` over the last
third of the steps (it has stopped); the final validation loss within ``NO_GAP`` of the training loss (no
memorizing); the loss fell (by less than ``WEAK`` of its initial value over the run ): a warning; an info note under
``SOME``. Steps of normal size (else the learning-rate rule applies). Source: UMLAUT (Schoop et al., CHI 2021)
and the usual bias/variance reading of the two curves (Ng, "Machine Learning Yearning", ch. 20-24).
"""

from __future__ import annotations

import math

import numpy as np

import deepkit.doctor.signals as signals
from deepkit.doctor.findings import Finding, Rule
from deepkit.doctor.records import RunRecords

MIN_EPOCHS = 3
PLATEAU = 0.02
NO_GAP = 0.1
WEAK = 0.15
SOME = 0.3


def check(rec: RunRecords) -> Finding | None:
    if not rec.loss_falls or len(rec.history) < MIN_EPOCHS or signals.first_nonfinite(rec) is not None:
        return None
    loss = rec.steps.get("loss", np.array([]))
    if len(loss) < 30:
        return None
    smooth = signals.ema(loss, 0.98)
    third = len(smooth) * 2 // 3
    late_drop = (smooth[third] - smooth[-1]) / smooth[third] if smooth[third] > 0 else math.nan
    l0, l_end = signals.initial_loss(rec), signals.final_loss(rec)
    fell = (l0 - l_end) / l0 if l0 > 0 else math.nan
    train, val = rec.column("train_loss"), rec.column("val_loss")
    gap = (val[-1] - train[-1]) / train[-1] if math.isfinite(val[-1]) and train[-1] > 0 else math.nan
    upd = signals.update_ratio(rec)
    if not (math.isfinite(late_drop) and late_drop < PLATEAU and math.isfinite(fell) and 0 <= fell < SOME):
        return None
    if math.isfinite(gap) and gap > NO_GAP or (math.isfinite(upd) and upd < 1e-4):
        return None
    severity = "warning" if fell < WEAK else "info"
    evidence = {
        "initial_loss": l0,
        "final_loss": l_end,
        "loss_fell_by": round(fell, 4),
        "last_third_drop": round(late_drop, 4),
        "val_train_gap": round(gap, 4) if math.isfinite(gap) else None,
    }
    summary = (
        f"the training loss went from {l0:.4g} to {l_end:.4g} ({fell:.0%} lower) and has stopped improving "
        f"({late_drop:.1%} over the last third), with validation no better than training: the model cannot fit "
        "the training data"
    )
    change = (
        "a larger model (model.width, model.depth, more channels or layers); train longer (trainer.epochs); less "
        "regularization (model.dropout, trainer.optimizer.weight_decay)"
    )
    steps = rec.steps["step"]

    def draw(ax):
        ax.plot(steps, loss, lw=0.5, alpha=0.4, label="loss per step")
        ax.plot(steps, smooth, lw=1.5, label="smoothed")
        ax.axvline(steps[third], c="grey", ls="--", lw=0.8, label="last third")
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
        ax.legend(fontsize=8)

    return RULE.finding(severity, summary + ".", evidence, change, draw)


RULE = Rule(
    kind="underfitting",
    title="underfitting",
    priority=13,
    source="UMLAUT (CHI 2021); bias/variance reading of the learning curves",
    thresholds={"min_epochs": MIN_EPOCHS, "plateau": PLATEAU, "no_gap": NO_GAP, "weak": WEAK, "some": SOME},
    check=check,
)

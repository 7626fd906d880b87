"""Learning rate too low: the weights barely move, so the loss creeps down (slow convergence).

Thresholds: the median update ratio ‖Δw‖/‖w‖ of the weight matrices at full learning rate below ``TINY_STEP``
together with a loss that fell by less than ``SLOW`` of its initial value; or an update ratio below ``VERY_TINY``
unless the loss fell below ``CONVERGED`` of its initial value (the run converged: near a minimum the gradients, and
so the steps, are small whatever the learning rate; the breast-cancer MLP whose loss reached 3e-8 in the first
held-out evaluation). Gradients must be flowing (fewer than ``ZERO_GRADS`` of the gradient entries of the first
weight matrix that is not an embedding table exactly zero), else the cause is dead units, not the learning rate;
an embedding's gradient is zero on every row whose token is not in the batch (97% zeros for SST-2's BiLSTM at lr
1e-6), so it says nothing about dead units. Sources: AUTOTRAINER (ICSE 2021) "slow
convergence"; the update/weight ratio as a step-size instrument (Karpathy, CS231n: about 1e-3 is healthy;
Cockpit, NeurIPS 2021); DeepDiagnosis (ICSE 2022) lr·‖Δw‖/‖w‖.
"""

from __future__ import annotations

import math

import numpy as np

import deepkit.doctor.signals as signals
from deepkit.doctor.findings import Finding, Rule
from deepkit.doctor.records import RunRecords

TINY_STEP = 1e-4  # updates below 1e-4 of the weights' norm: 10× under the usual 1e-3
VERY_TINY = 3e-5
SLOW = 0.1  # the loss fell by less than 10% over the whole run
ZERO_GRADS = 0.5
CONVERGED = 0.01  # a final loss under 1% of the initial one: the run converged (not slow)


def check(rec: RunRecords) -> Finding | None:
    if not rec.loss_falls or signals.first_nonfinite(rec) is not None:
        return None
    upd = signals.update_ratio(rec)
    weights = rec.weights()
    if not math.isfinite(upd) or not weights:
        return None
    dense = [w for w in weights if not w.sparse_by_nature]
    first = dense[0] if dense else None
    zero = np.nanmedian(first.grad_zero) if first is not None and np.isfinite(first.grad_zero).any() else 0.0
    if zero >= ZERO_GRADS:
        return None
    l0, l_end = signals.initial_loss(rec), signals.final_loss(rec)
    fell = (l0 - l_end) / l0 if math.isfinite(l0) and l0 > 0 and math.isfinite(l_end) else math.nan
    if math.isfinite(fell) and fell >= 1 - CONVERGED:
        return None
    if not (upd < VERY_TINY or (upd < TINY_STEP and math.isfinite(fell) and fell < SLOW)):
        return None
    severity = "error" if math.isfinite(fell) and fell < 0.02 else "warning"
    evidence = {"update_ratio_median": round(upd, 9), "initial_loss": l0, "final_loss": l_end, "lr": rec.lr}
    evidence["loss_fell_by"] = round(fell, 4) if math.isfinite(fell) else None
    summary = (
        f"each step changed the weights by only {upd:.1e} of their norm (healthy runs: about 1e-3), and the loss "
        f"went from {l0:.4g} to {l_end:.4g}" + (f" ({fell:.1%} lower)" if math.isfinite(fell) else "")
    )
    factor = min(100.0, max(10.0, 1e-3 / upd)) if upd > 0 else 100.0
    change = (
        f"trainer.optimizer.lr={signals.fmt_lr(rec.lr * factor)} ({factor:.0f}× higher than {rec.lr:g}); "
        if rec.lr
        else "a higher trainer.optimizer.lr; "
    ) + f"measure it: deepkit lr-find {rec.run_dir}"
    steps, loss = rec.steps["step"], rec.steps["loss"]

    def draw(ax):
        ax.plot(steps, loss, lw=0.6, alpha=0.5, label="loss per step")
        ax.plot(steps, signals.ema(loss), lw=1.5, label="smoothed")
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
        ax2 = ax.twinx()
        for w in weights[:6]:
            ax2.plot(w.step, w.update_ratio, lw=0.8, alpha=0.7, ls=":")
        ax2.axhline(1e-3, c="grey", ls="--", lw=0.8)
        ax2.set_yscale("log")
        ax2.set_ylabel("update / weight (dotted; 1e-3 dashed)")
        ax.legend(loc="best", fontsize=8)

    return RULE.finding(severity, summary + ".", evidence, change, draw)


RULE = Rule(
    kind="lr_too_low",
    title="learning rate too low (slow convergence)",
    priority=11,
    source="AUTOTRAINER (ICSE 2021) slow convergence; update/weight ratio ~1e-3 (CS231n; Cockpit, NeurIPS 2021)",
    thresholds={
        "tiny_step": TINY_STEP,
        "very_tiny": VERY_TINY,
        "slow": SLOW,
        "zero_grads": ZERO_GRADS,
        "converged": CONVERGED,
    },
    check=check,
)

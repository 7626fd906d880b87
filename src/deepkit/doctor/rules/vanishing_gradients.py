"""Vanishing gradients: the first layers get almost no gradient compared with the last.

Thresholds (AUTOTRAINER, Zhang et al., ICSE 2021): ‖g_first‖/‖g_last‖ < ``RATIO`` and ‖g_first‖ < ``ABSOLUTE`` at
``SHARE`` or more of the recording steps, where g_first and g_last are the gradients of the first and the last
weight matrix. An error when the loss also fell by less than ``STALLED`` of its initial value. Gradients that are
exactly zero (dead ReLUs) are the dead-ReLU rule's.
"""

from __future__ import annotations

import math

import numpy as np

import deepkit.doctor.signals as signals
from deepkit.doctor.findings import Finding, Rule
from deepkit.doctor.records import RunRecords

RATIO = 1e-3
ABSOLUTE = 1e-4
SHARE = 0.5
STALLED = 0.3
ZERO_GRADS = 0.5


def check(rec: RunRecords) -> Finding | None:
    got = signals.grad_ratio(rec)
    if got is None:
        return None
    ratio, g0, first, last = got
    ok = np.isfinite(ratio) & np.isfinite(g0)
    if ok.sum() < 2 or np.nanmedian(first.grad_zero) >= ZERO_GRADS:
        return None
    low = ok & (ratio < RATIO) & (g0 < ABSOLUTE)
    share = low.sum() / ok.sum()
    if share < SHARE:
        return None
    l0, l_end = signals.initial_loss(rec), signals.final_loss(rec)
    fell = (l0 - l_end) / l0 if math.isfinite(l0) and l0 > 0 and math.isfinite(l_end) else math.nan
    severity = "error" if math.isfinite(fell) and fell < STALLED else "warning"
    med = float(np.median(ratio[ok]))
    evidence = {
        "first_layer": first.name,
        "last_layer": last.name,
        "ratio_median": med,
        "first_grad_norm_median": float(np.median(g0[ok])),
        "share_of_recorded_steps": round(float(share), 3),
        "loss_fell_by": round(fell, 4) if math.isfinite(fell) else None,
    }
    summary = (
        f"the gradient of the first layer ({first.name}) is {med:.1e} of the last layer's ({last.name}) at "
        f"{share:.0%} of the recorded steps (median ‖g‖ {np.median(g0[ok]):.1e}): the early layers hardly learn"
    )
    change = (
        "model.act=relu (or leaky_relu, gelu) instead of sigmoid/tanh in hidden layers, with He (Kaiming) "
        "initialization; model.norm=batchnorm (or layernorm); fewer layers or residual connections"
    )
    weights = rec.weights()

    def draw(ax):
        cmap = __import__("matplotlib").colormaps["viridis"]
        for i, w in enumerate(weights):
            ax.plot(
                w.step,
                w.grad_norm,
                c=cmap(i / max(1, len(weights) - 1)),
                lw=1,
                label=w.name if i in (0, len(weights) - 1) else None,
            )
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("gradient L2 norm\n(dark: input side, light: output)")
        ax.legend(fontsize=8)

    return RULE.finding(severity, summary + ".", evidence, change, draw)


RULE = Rule(
    kind="vanishing_gradients",
    title="vanishing gradients",
    priority=7,
    source="AUTOTRAINER (ICSE 2021): ‖g_first‖/‖g_last‖ < 1e-3 and ‖g_first‖ < 1e-4",
    thresholds={"ratio": RATIO, "absolute": ABSOLUTE, "share": SHARE, "stalled": STALLED},
    check=check,
)

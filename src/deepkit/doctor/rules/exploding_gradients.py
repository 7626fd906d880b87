"""Exploding gradients: gradients grow toward the input, turn NaN/Inf, or spike by orders of magnitude.

Thresholds: a non-finite gradient norm at a step whose loss was still finite (error); ‖g_first‖/‖g_last‖ >
``RATIO`` at ``SHARE`` or more of the recording steps (AUTOTRAINER, Zhang et al., ICSE 2021: ratio > 70 or NaN);
the total gradient norm at a recording step above ``SPIKE`` × its median over the earlier recorded steps
(warning; Pascanu et al. 2013's case for clipping).
"""

from __future__ import annotations

import math

import numpy as np

import deepkit.doctor.signals as signals
from deepkit.doctor.findings import Finding, Rule
from deepkit.doctor.records import RunRecords

RATIO = 70.0
SHARE = 0.5
SPIKE = 1e3


def check(rec: RunRecords) -> Finding | None:
    weights = [w for w in rec.weights() if len(w.grad_norm) and np.isfinite(w.grad_norm).any()]
    if not weights:
        return None
    steps = weights[0].step
    norms = np.array([w.grad_norm for w in weights if len(w.grad_norm) == len(steps)])
    total = np.sqrt(np.sum(norms**2, axis=0))
    loss_at = dict(
        zip(rec.steps.get("step", []).astype(int).tolist(), rec.steps.get("loss", []).tolist(), strict=False)
    )
    nonfinite = [int(s) for s, t in zip(steps, total, strict=True) if not math.isfinite(t)]
    nonfinite = [s for s in nonfinite if math.isfinite(loss_at.get(s, math.nan))]
    evidence: dict = {}
    severity = None
    summary = ""
    got = signals.grad_ratio(rec)
    if nonfinite:
        severity = "error"
        evidence["nonfinite_grad_steps"] = nonfinite[:20]
        summary = f"gradients became NaN/Inf at step {nonfinite[0]} while the loss was still finite"
    else:
        fin = total[np.isfinite(total)]
        if got is not None:
            ratio = got[0]
            ok = np.isfinite(ratio)
            share = float((ratio[ok] > RATIO).mean()) if ok.any() else 0.0
            if share >= SHARE:
                severity = "warning"
                evidence.update(
                    first_layer=got[2].name, last_layer=got[3].name, ratio_median=float(np.median(ratio[ok]))
                )
                summary = (
                    f"the first layer's gradient ({got[2].name}) is {np.median(ratio[ok]):.0f}× the last layer's "
                    f"at {share:.0%} of the recorded steps"
                )
        if severity is None and len(fin) >= 4:
            past = np.array([np.median(total[:i]) if i >= 3 else np.nan for i in range(len(total))])
            with np.errstate(divide="ignore", invalid="ignore"):
                jump = total / past
            if np.isfinite(jump).any() and np.nanmax(jump) > SPIKE:
                i = int(np.nanargmax(jump))
                severity = "warning"
                evidence.update(spike_step=int(steps[i]), spike_norm=float(total[i]), median_before=float(past[i]))
                summary = (
                    f"the gradient norm spiked to {total[i]:.3g} at step {int(steps[i])}, {jump[i]:.0f}× its median "
                    "over the steps before"
                )
    if severity is None:
        return None
    change = (
        "trainer.grad_clip=1.0; a lower trainer.optimizer.lr; normalization layers (model.norm=batchnorm) or a "
        "smaller initialization scale"
    )

    def draw(ax):
        ax.plot(steps, total, lw=1.2, label="total gradient norm")
        for w in weights[:1] + weights[-1:]:
            ax.plot(w.step, w.grad_norm, lw=0.8, ls=":", label=w.name)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("gradient L2 norm")
        ax.legend(fontsize=8)

    return RULE.finding(severity, summary + ".", evidence, change, draw)


RULE = Rule(
    kind="exploding_gradients",
    title="exploding gradients",
    priority=9,
    source="AUTOTRAINER (ICSE 2021): ratio > 70 or NaN; Pascanu et al. (ICML 2013)",
    thresholds={"ratio": RATIO, "share": SHARE, "spike": SPIKE},
    check=check,
)

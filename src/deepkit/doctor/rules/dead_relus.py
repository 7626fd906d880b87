"""Dead ReLUs: units of a ReLU-family layer that output 0 (<= 0) for every example, so they pass no gradient.

Thresholds: a layer whose dead-unit fraction (units inactive for the whole recorded batch) has a median of at
least ``DEAD`` over the second half of the recorded steps; an error at ``SEVERE`` or more when they were dead from
the first step (the initialization killed them: AUTOTRAINER, Zhang et al., ICSE 2021, "dying ReLU" at >= 70% zero
gradients; DeepDiagnosis, Wardat et al., ICSE 2022, dead nodes). Units alive at the first step that died later
point at the learning rate (a large step pushes a unit's bias below all of its inputs); then a warning.
"""

from __future__ import annotations

import numpy as np

import deepkit.doctor.signals as signals
from deepkit.doctor.findings import Finding, Rule
from deepkit.doctor.records import RunRecords

DEAD = 0.5
SEVERE = 0.7


def check(rec: RunRecords) -> Finding | None:
    worst, worst_value = None, 0.0
    for a in rec.activations:
        if a.kind != "relu" or not np.isfinite(a.dead).any():
            continue
        late = a.dead[signals.second_half(a.step) & np.isfinite(a.dead)]
        value = float(np.median(late)) if len(late) else 0.0
        if value > worst_value:
            worst, worst_value = a, value
    if worst is None or worst_value < DEAD:
        return None
    at_init = float(worst.dead[0]) if np.isfinite(worst.dead[0]) else 0.0
    from_start = at_init >= DEAD
    dead_at = np.flatnonzero(np.isfinite(worst.dead) & (worst.dead >= DEAD))
    layers = [a for a in rec.activations if a.kind == "relu" and np.nanmedian(a.dead) >= DEAD]
    severity = "error" if from_start and worst_value >= SEVERE else "warning"
    evidence = {
        "layer": worst.name,
        "dead_fraction": round(worst_value, 3),
        "dead_at_first_step": round(at_init, 3),
        "layers": {a.name: round(float(np.nanmedian(a.dead)), 3) for a in layers},
        "steps": signals.step_range(worst.step),
    }
    if not from_start and len(dead_at):  # the recording steps between which the layer died
        evidence["dead_from_step"] = int(worst.step[dead_at[0]])
        evidence["alive_until_step"] = int(worst.step[dead_at[0] - 1]) if dead_at[0] else None
    if from_start:
        summary = (
            f"{worst_value:.0%} of the units of {worst.name} output zero for every example, from the first step on"
        )
        change = (
            "He (Kaiming) initialization with zero biases; model.act=leaky_relu keeps a gradient for negative inputs"
        )
    else:
        summary = (
            f"{worst_value:.0%} of the units of {worst.name} output zero for every example; they were alive at the "
            f"first step ({at_init:.0%} dead) and died during training"
        )
        change = "a lower trainer.optimizer.lr (large steps kill units); model.act=leaky_relu; trainer.grad_clip=1.0"
    relus = [a for a in rec.activations if a.kind == "relu"]

    def draw(ax):
        for a in relus:
            ax.plot(a.step, a.dead, lw=1.2 if a is worst else 0.8, label=a.name)
        ax.axhline(DEAD, c="grey", ls="--", lw=0.8)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("step")
        ax.set_ylabel("fraction of dead units")
        ax.legend(fontsize=8)

    return RULE.finding(severity, summary + ".", evidence, change, draw)


RULE = Rule(
    kind="dead_relus",
    title="dead ReLUs",
    priority=6,
    source="AUTOTRAINER (ICSE 2021) dying ReLU, >= 70% zero gradients; DeepDiagnosis (ICSE 2022) dead nodes",
    thresholds={"dead": DEAD, "severe": SEVERE},
    check=check,
)

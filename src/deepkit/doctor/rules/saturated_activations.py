"""Saturated sigmoid/tanh: hidden sigmoid or tanh units sit on their flat tails, where the derivative is ~0.

Thresholds: a hidden sigmoid/tanh layer (not the last module of a block: an output tanh that maps to a bounded
target, such as a generator's, is meant to saturate) with a median of at least ``SATURATED`` of its outputs
saturated over the second half of the recorded steps: sigmoid outside [0.01, 0.99], tanh with \\|y\\| > 0.99.
Source: DeepDiagnosis (Wardat et al., ICSE 2022), saturated activations; Glorot & Bengio (AISTATS 2010) on
saturated sigmoids in deep networks.
"""

from __future__ import annotations

import numpy as np

import deepkit.doctor.signals as signals
from deepkit.doctor.findings import Finding, Rule
from deepkit.doctor.records import RunRecords

SATURATED = 0.5


def check(rec: RunRecords) -> Finding | None:
    hidden = [a for a in rec.activations if a.kind in ("sigmoid", "tanh") and not a.block_output]
    values = {}
    for a in hidden:
        late = a.saturated[signals.second_half(a.step) & np.isfinite(a.saturated)]
        if len(late):
            values[a.name] = float(np.median(late))
    flagged = {k: round(v, 3) for k, v in values.items() if v >= SATURATED}
    if not flagged:
        return None
    worst = max(flagged, key=flagged.get)
    kind = next(a.kind for a in hidden if a.name == worst)
    evidence = {"layer": worst, "saturated_fraction": flagged[worst], "layers": flagged}
    summary = (
        f"{flagged[worst]:.0%} of the outputs of {worst} ({kind}) are saturated, where its gradient is under 2% of "
        f"its peak; {len(flagged)} layer(s) at >= {SATURATED:.0%}"
    )
    change = (
        "model.act=relu (or gelu) in hidden layers; model.norm=batchnorm (or layernorm) before the activation; "
        "Xavier/Glorot initialization for tanh"
    )

    def draw(ax):
        for a in hidden:
            ax.plot(a.step, a.saturated, lw=1.2 if a.name == worst else 0.8, label=a.name)
        ax.axhline(SATURATED, c="grey", ls="--", lw=0.8)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("step")
        ax.set_ylabel("fraction of outputs saturated")
        ax.legend(fontsize=8)

    return RULE.finding("warning", summary + ".", evidence, change, draw)


RULE = Rule(
    kind="saturated_activations",
    title="saturated sigmoid/tanh units",
    priority=8,
    source="DeepDiagnosis (ICSE 2022) saturated activations; Glorot & Bengio (AISTATS 2010)",
    thresholds={"saturated": SATURATED, "sigmoid": "outside [0.01, 0.99]", "tanh": "|y| > 0.99"},
    check=check,
)

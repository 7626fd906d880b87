"""Unnormalized inputs: features far from zero mean and unit scale, or on wildly different scales.

Thresholds, on the first training batches' per-feature (tables) or per-channel (images) statistics
(``record/inputs.json``): a feature whose \\|mean\\| or std exceeds ``LARGE`` (a warning; ``HUGE``: an error); or
a ratio of the largest to the smallest non-zero feature std above ``SPREAD`` (a warning). Inputs in [0, 1] or
standardized pass. Token ids are not checked. Source: UMLAUT (Schoop et al., CHI 2021) "input data not
normalized"; LeCun et al., "Efficient BackProp" (1998): inputs with zero mean and similar variances.
"""

from __future__ import annotations

import numpy as np

from deepkit.doctor.findings import Finding, Rule
from deepkit.doctor.records import RunRecords

LARGE = 5.0
HUGE = 50.0
SPREAD = 1000.0


def check(rec: RunRecords) -> Finding | None:
    inp = rec.inputs
    if not inp.get("mean"):
        return None
    mean, std = np.array(inp["mean"], dtype=float), np.array(inp["std"], dtype=float)
    scale = np.maximum(np.abs(mean), std)
    worst = int(np.nanargmax(scale))
    positive = std[std > 1e-12]
    spread = float(positive.max() / positive.min()) if len(positive) >= 2 else 1.0
    if scale[worst] <= LARGE and spread <= SPREAD:
        return None
    severity = "error" if scale[worst] > HUGE else "warning"
    axis = inp.get("axis", "feature")
    evidence = {
        "axis": axis,
        "features": int(len(mean)),
        "largest_feature": worst,
        "its_mean": float(mean[worst]),
        "its_std": float(std[worst]),
        "over_large": int((scale > LARGE).sum()),
        "std_spread": round(spread, 1),
        "range": [float(min(inp["min"])), float(max(inp["max"]))],
    }
    if scale[worst] > LARGE:
        summary = (
            f"{axis} {worst} of the training inputs has mean {mean[worst]:.4g} and std {std[worst]:.4g} "
            f"({int((scale > LARGE).sum())} of {len(mean)} {axis}s beyond ±{LARGE:g}); inputs range "
            f"{evidence['range'][0]:.4g} to {evidence['range'][1]:.4g}"
        )
    else:
        summary = f"the {axis}s' standard deviations differ by a factor of {spread:.0f}"
    change = (
        "data.normalize=feature (tables: each feature standardized with the training split's mean and std) or "
        "data.normalize=channel (images); images stored as 0-255 integers are divided by 255 first"
    )

    def draw(ax):
        idx = np.arange(len(mean))
        ax.bar(idx, np.abs(mean) + 1e-12, alpha=0.6, label="|mean|")
        ax.plot(idx, std + 1e-12, "o", ms=3, c="tab:red", label="std")
        ax.axhline(LARGE, c="grey", ls="--", lw=0.8, label=f"±{LARGE:g}")
        ax.set_yscale("log")
        ax.set_xlabel(axis)
        ax.set_ylabel("input statistics (first batches)")
        ax.legend(fontsize=8)

    return RULE.finding(severity, summary + ".", evidence, change, draw)


RULE = Rule(
    kind="unnormalized_inputs",
    title="unnormalized inputs",
    priority=3,
    source="UMLAUT (CHI 2021) input not normalized; LeCun et al., Efficient BackProp (1998)",
    thresholds={"large": LARGE, "huge": HUGE, "spread": SPREAD},
    check=check,
)

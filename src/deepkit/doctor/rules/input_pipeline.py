"""Input-pipeline bottleneck: the training loop waits for the data loader a large part of the time.

Thresholds, on ``record/timing.csv`` (host seconds between a step's end and the next batch's arrival vs inside
the step), over the run without its first interval: the loader's share of the time at ``SHARE`` or more (a
warning; ``SEVERE``: an error). Source: the "data-loading bottleneck" checks of PyTorch's profiler recipes and
Lightning's SimpleProfiler; Mohan et al., "Analyzing and mitigating data stalls in DNN training" (VLDB 2021).
"""

from __future__ import annotations

import numpy as np

from deepkit.doctor.findings import Finding, Rule
from deepkit.doctor.records import RunRecords

SHARE = 0.3
SEVERE = 0.6


def check(rec: RunRecords) -> Finding | None:
    t = rec.timing
    data, compute = t.get("data_s", np.array([])), t.get("compute_s", np.array([]))
    if len(data) < 2:
        return None
    data, compute, s0, s1 = data[1:], compute[1:], t["step_from"][1:], t["step_to"][1:]
    total = data.sum() + compute.sum()
    if total <= 0:
        return None
    share = float(data.sum() / total)
    if share < SHARE:
        return None
    steps = float((s1 - s0).sum())
    evidence = {
        "data_share": round(share, 4),
        "data_ms_per_step": round(1000 * data.sum() / steps, 3),
        "compute_ms_per_step": round(1000 * compute.sum() / steps, 3),
        "steps": int(steps),
    }
    summary = (
        f"the loop waited for the data loader {share:.0%} of the time: {evidence['data_ms_per_step']:.3g} ms per "
        f"step for the next batch vs {evidence['compute_ms_per_step']:.3g} ms computing"
    )
    change = (
        "prepare batches ahead: decode and transform the data once before training and keep the tensors in memory "
        "(deepkit's in-memory loaders), move per-batch Python work out of the loader, a larger data.batch_size"
    )
    mid = (s0 + s1) / 2
    width = np.maximum(1, (s1 - s0) * 0.9)
    per = np.maximum(1, s1 - s0)

    def draw(ax):
        ax.bar(mid, 1000 * compute / per, width=width, label="computing (ms/step)")
        ax.bar(mid, 1000 * data / per, width=width, bottom=1000 * compute / per, label="waiting for data (ms/step)")
        ax.set_xlabel("step")
        ax.set_ylabel("ms per step")
        ax.legend(fontsize=8)

    severity = "error" if share >= SEVERE else "warning"
    return RULE.finding(severity, summary + ".", evidence, change, draw)


RULE = Rule(
    kind="input_pipeline",
    title="input-pipeline bottleneck",
    priority=5,
    source="PyTorch profiler / Lightning profiler data-loading checks; Mohan et al. (VLDB 2021) data stalls",
    thresholds={"share": SHARE, "severe": SEVERE},
    check=check,
)

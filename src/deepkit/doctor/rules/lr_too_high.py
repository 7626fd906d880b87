"""Learning rate too high: the loss diverges (NaN/Inf), blows up far above where it started, or climbs back after
progress.

Thresholds: a non-finite loss (error); a loss spike above ``BLOWUP`` × the initial loss after the first ``SETTLE``
steps (error when the run ends near where it started, at >= ``NO_PROGRESS`` × the initial loss, else a warning;
measured against the first step's loss when the median of the first three steps is already a blow-up); inside the
first ``SETTLE`` steps, a spike above ``BLOWUP`` × the first step's loss counts only when the run then learned
nothing (ended at >= ``NO_PROGRESS`` × that loss: an error): a first jolt that training recovers from is common, one
it never recovers from is the learning rate (the MNIST CNN at lr 1.0 of the first held-out evaluation: 46× at step
2, then the loss sat at chance); the smoothed loss ending ``REBOUND`` × above its minimum and ``CLIMBED`` of the way
back to its start (warning). Rules of this kind: AUTOTRAINER (Zhang et al., ICSE 2021: "oscillating loss",
"exploding" on NaN), UMLAUT (Schoop et al., CHI 2021: suspicious learning rates), DeepDiagnosis (Wardat et al., ICSE
2022: lr·‖Δw‖/‖w‖ too large). The change points to fastai's learning-rate range test (``deepkit lr-find``, Smith
2017).
"""

from __future__ import annotations

import math

import numpy as np

import deepkit.doctor.signals as signals
from deepkit.doctor.findings import Finding, Rule
from deepkit.doctor.records import RunRecords

BLOWUP = 3.0  # a loss above 3× its starting value: the steps overshoot
SETTLE = 3  # steps ignored at the start (the first updates may jolt the loss)
NO_PROGRESS = 0.9  # ending at >= 90% of the initial loss: nothing learned
REBOUND = 1.5  # the smoothed loss ends 50% above its minimum: it climbed back ...
CLIMBED = 0.25  # ... by at least a quarter of the way back to where it started
SHOWN_SPIKES = 500  # the evidence lists the steps of at most this many spikes


def check(rec: RunRecords) -> Finding | None:
    loss, steps, lr = rec.steps.get("loss"), rec.steps.get("step"), rec.steps.get("lr")
    if loss is None or len(loss) < 5:
        return None
    l0, l_end = signals.initial_loss(rec), signals.final_loss(rec)
    bad_step = signals.first_nonfinite(rec)
    evidence: dict = {"initial_loss": _r(l0), "final_loss": _r(l_end), "lr": rec.lr}
    failed = str(rec.status.get("error", ""))
    severity = None
    if bad_step is not None or ("became nan" in failed or "became inf" in failed):
        severity = "error"
        evidence["nonfinite_at_step"] = bad_step
        summary = f"the training loss became NaN/Inf at step {bad_step}" if bad_step else f"the run failed: {failed}"
    elif rec.loss_falls and math.isfinite(l0) and l0 > 0:
        first = float(loss[0]) if math.isfinite(loss[0]) and loss[0] > 0 else l0
        if l0 > BLOWUP * first:  # it blew up within the first steps: measure against the loss before any update
            l0 = first
            evidence["initial_loss"] = _r(first)
        after = np.isfinite(loss) & (steps > SETTLE)
        peak_i = int(np.argmax(np.where(after, loss, -np.inf))) if after.any() else 0
        peak = float(loss[peak_i]) if after.any() else math.nan
        smooth = signals.ema(loss)
        best_i = int(np.nanargmin(smooth))
        rebound = smooth[-1] / smooth[best_i] if smooth[best_i] > 0 else math.nan
        early = np.isfinite(loss) & (steps <= SETTLE) & (steps > steps[0])
        early_i = int(np.argmax(np.where(early, loss, -np.inf))) if early.any() else 0
        if (
            not (math.isfinite(peak) and peak > BLOWUP * l0)
            and early.any()
            and loss[early_i] > BLOWUP * first
            and l_end >= NO_PROGRESS * first
        ):
            peak_i, peak, l0 = early_i, float(loss[early_i]), first  # the spike, against the first step's loss
            evidence["initial_loss"] = _r(first)
        if math.isfinite(peak) and peak > BLOWUP * l0:
            severity = "error" if l_end >= NO_PROGRESS * l0 else "warning"
            evidence.update(peak_loss=_r(peak), peak_step=int(steps[peak_i]), peak_over_initial=_r(peak / l0))
            spikes = steps[np.isfinite(loss) & (loss > BLOWUP * l0)].astype(int)
            evidence["spike_steps"] = spikes[:SHOWN_SPIKES].tolist()  # every step above BLOWUP x (the first ones)
            summary = (
                f"the loss jumped to {peak:.3g} at step {int(steps[peak_i])}, {peak / l0:.1f}× its initial {l0:.3g}"
                + (f", and ended at {l_end:.3g}: nothing was learned" if severity == "error" else "")
            )
        climbed = (smooth[-1] - smooth[best_i]) / (l0 - smooth[best_i]) if l0 > smooth[best_i] else math.inf
        if severity is None and math.isfinite(rebound) and rebound > REBOUND and climbed >= CLIMBED:
            severity = "warning"
            evidence.update(min_loss=_r(smooth[best_i]), min_step=int(steps[best_i]), rebound=_r(rebound))
            summary = (
                f"the smoothed loss reached {smooth[best_i]:.3g} at step {int(steps[best_i])} and climbed back to "
                f"{smooth[-1]:.3g} ({rebound:.1f}×)"
            )
    if severity is None:
        return None
    upd = signals.update_ratio(rec)
    if math.isfinite(upd):
        evidence["update_ratio_median"] = _r(upd)
    target = signals.fmt_lr(rec.lr / 10) if rec.lr else "10× lower"
    change = (
        f"trainer.optimizer.lr={target} (10× lower than {rec.lr:g}); measure it: deepkit lr-find {rec.run_dir}"
        if rec.lr
        else f"a 10× lower trainer.optimizer.lr; measure it: deepkit lr-find {rec.run_dir}"
    ) + "; trainer.grad_clip=1.0 caps single bad steps"

    def draw(ax):
        ax.plot(steps, loss, lw=0.6, alpha=0.5, label="loss per step")
        ax.plot(steps, signals.ema(loss), lw=1.5, label="smoothed")
        ax.axhline(l0, ls="--", c="grey", lw=0.8, label="initial loss")
        if bad_step is not None:
            ax.axvline(bad_step, c="red", lw=1, label=f"NaN/Inf at step {bad_step}")
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
        ax2 = ax.twinx()
        ax2.plot(steps, lr, c="tab:green", lw=0.8, alpha=0.6)
        ax2.set_ylabel("learning rate", color="tab:green")
        ax.legend(loc="best", fontsize=8)

    return RULE.finding(severity, summary + ".", evidence, change, draw)


def _r(v: float) -> float | None:
    return round(float(v), 6) if v is not None and math.isfinite(v) else None


RULE = Rule(
    kind="lr_too_high",
    title="learning rate too high",
    priority=10,
    source="AUTOTRAINER (ICSE 2021) oscillating/exploding loss; UMLAUT (CHI 2021); DeepDiagnosis (ICSE 2022)",
    thresholds={
        "blowup": BLOWUP,
        "settle": SETTLE,
        "no_progress": NO_PROGRESS,
        "rebound": REBOUND,
        "climbed": CLIMBED,
    },
    check=check,
)

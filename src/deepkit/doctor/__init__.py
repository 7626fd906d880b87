"""The training doctor: what went wrong in a run, the plot that shows it, and what to change.

``diagnose(run_dir)`` reads a run directory and its recordings (``RUN_DIR/record/``, written by the Trainer's
:class:`~deepkit.train.record.Recorder`, on by default: ``trainer.record``), runs every rule of
:mod:`deepkit.doctor.rules` and ranks the findings by severity (causes before symptoms). It works on finished,
failed (NaN), interrupted and still-running runs, reading without taking the run's lock, and writes only
``RUN_DIR/doctor/`` (or ``out``): ``report.html``, ``findings.json`` and one PNG per finding.
``lr_find(recipe, ...)`` is the learning-rate range test (``deepkit lr-find``).

Example:
    >>> from deepkit.doctor import diagnose
    >>> d = diagnose("runs/demo")              # doctest: +SKIP
    >>> d.healthy, [f.kind for f in d.findings]  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepkit.doctor.findings import SEVERITIES, Finding, rank

if TYPE_CHECKING:
    from deepkit.doctor.range_test import LRFind

__all__ = ["Diagnosis", "Finding", "diagnose", "lr_find"]


@dataclass
class Diagnosis:
    """The doctor's verdict on one run: its findings (ranked), notes, and where the report is."""

    run_dir: Path
    name: str
    state: str  # finished, failed: ..., interrupted, running (step N)
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    report: Path | None = None

    @property
    def healthy(self) -> bool:
        """No warning- or error-level finding."""
        return not any(f.severity in ("error", "warning") for f in self.findings)

    @property
    def headline(self) -> str:
        if self.healthy:
            extra = f" ({len(self.findings)} note{'s' * (len(self.findings) != 1)})" if self.findings else ""
            return "healthy: no problem found" + extra
        counts = {s: sum(f.severity == s for f in self.findings) for s in SEVERITIES}
        said = ", ".join(f"{n} {s}{'s' * (n != 1)}" for s, n in counts.items() if n)
        return f"{said}; first: {self.findings[0].title}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_dir": str(self.run_dir),
            "name": self.name,
            "state": self.state,
            "healthy": self.healthy,
            "headline": self.headline,
            "notes": self.notes,
            "findings": [f.to_dict() for f in self.findings],
        }


def diagnose(run_dir: str | Path, out: str | Path | None = None, write: bool = True) -> Diagnosis:
    """Diagnose a run directory: ranked findings, and (``write``) the report in ``out`` (default RUN_DIR/doctor).

    Args:
        run_dir: a run directory written by ``deepkit train`` (finished, failed, interrupted or still running).
        out: where report.html, findings.json and the plots go.
        write: False to only compute the findings.
    """
    from deepkit.doctor import records
    from deepkit.doctor.rules import RULES

    rec = records.load(run_dir)
    run_dir = Path(run_dir)
    diagnosis = Diagnosis(run_dir, rec.name, _state(rec))
    if not rec.recorded:
        diagnosis.notes.append(
            "this run has no recordings (RUN_DIR/record/: trained with trainer.record.enabled=false, or before "
            "deepkit recorded runs); only the per-epoch metrics were checked"
        )
    findings = []
    for rule in RULES:
        try:
            found = rule.check(rec)
        except Exception as e:  # one broken rule must not hide the others' findings
            diagnosis.notes.append(f"rule {rule.kind} could not run: {type(e).__name__}: {e}")
            continue
        if found is not None:
            findings.append(found)
    diagnosis.findings = rank(interactions(findings))
    if write:
        target = Path(out) if out is not None else run_dir / "doctor"
        from deepkit.doctor import report

        report.write(diagnosis, target)
        diagnosis.report = target / "report.html"
    return diagnosis


def interactions(findings: list[Finding]) -> list[Finding]:
    """Findings that explain or weaken another's evidence.

    - An overfitting model's confident mistakes are no evidence of wrong labels (confident learning assumes a model
      that generalizes), so label noise becomes a note beside it.
    - ReLUs alive at one recording step and dead at the next, with a loss spike (or NaN) of ``lr_too_high`` between
      the two (``spike_steps``: the steps whose loss exceeded its blow-up threshold): the large step killed them
      (a unit whose bias is pushed below all of its inputs never comes back), so the learning rate is the cause.
      ``lr_too_high`` then ranks first (at least the dead ReLUs' severity), and both findings say so in their
      evidence (``caused_by`` / ``explains``).
    """
    kinds = {f.kind: f for f in findings if f.severity != "info"}
    noise = kinds.get("label_noise")
    if noise is not None and "overfitting" in kinds:
        noise.severity = "info"
        noise.summary += (
            " The model overfits, so its confident mistakes are weak evidence of wrong labels: fix that first."
        )
    dead, high = kinds.get("dead_relus"), kinds.get("lr_too_high")
    if dead is not None and high is not None and "dead_from_step" in dead.evidence:
        alive, died = dead.evidence.get("alive_until_step") or 0, dead.evidence["dead_from_step"]
        spikes = [*high.evidence.get("spike_steps", []), high.evidence.get("nonfinite_at_step")]
        spike = next((s for s in spikes if s is not None and alive <= s <= died), None)
        if spike is not None:
            high.severity = min(high.severity, dead.severity, key=SEVERITIES.index)
            high.priority = min(high.priority, dead.priority - 1)
            high.evidence["explains"] = "dead_relus"
            high.summary += f" The ReLUs of {dead.evidence['layer']} died right after the loss spike at step {spike}."
            dead.evidence["caused_by"] = "lr_too_high"
            dead.summary += f" They died right after the loss spike at step {spike}: the learning rate is the cause."
    return findings


def _state(rec: Any) -> str:
    status = rec.status.get("status", "unknown")
    steps = rec.steps.get("step")
    last = int(steps[-1]) if steps is not None and len(steps) else None
    if rec.running:
        return f"still training (recorded up to step {last})" if last else "still training"
    if status == "failed":
        return f"failed: {rec.status.get('error', '')}".strip()
    if status == "running":  # the lock is free: the process died without saying so (SIGKILL, a crash)
        return f"stopped without finishing (killed?) after step {last}" if last else "stopped without finishing"
    return status + (f" after step {last}" if last and status == "interrupted" else "")


def lr_find(recipe: str | Path | dict, *overrides: str, **options: Any) -> LRFind:
    """The learning-rate range test of a recipe (see :func:`deepkit.doctor.range_test.lr_find`)."""
    from deepkit.doctor.range_test import lr_find as run

    return run(recipe, *overrides, **options)

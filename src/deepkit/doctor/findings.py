"""A finding: what a rule found in a run, how bad it is, the evidence, the plot and the change to make."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from deepkit.doctor.records import RunRecords

SEVERITIES = ("error", "warning", "info")  # error: the run failed or is badly hurt; warning: likely hurting; info


@dataclass
class Finding:
    """One diagnosis.

    Attributes:
        kind: the rule's name (``lr_too_high``, ``dead_relus``, ...).
        severity: ``error``, ``warning`` or ``info``.
        title: a short headline.
        summary: one or two sentences: what was seen, with numbers.
        evidence: the numbers behind it (step ranges, layer names, counts), JSON-safe.
        change: the concrete change to make (a recipe override, a command, example ids).
        source: where the rule and its thresholds come from.
        plot: the PNG's file name under ``doctor/`` once the report is written.
    """

    kind: str
    severity: str
    title: str
    summary: str
    evidence: dict[str, Any]
    change: str
    source: str = ""
    plot: str | None = None
    priority: int = 99  # the rule's rank among causes (lower first) at equal severity
    draw: Callable[[Axes], None] | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "severity": self.severity,
            "title": self.title,
            "summary": self.summary,
            "evidence": self.evidence,
            "change": self.change,
            "source": self.source,
            "plot": self.plot,
        }


@dataclass
class Rule:
    """A rule module's description: its name, what it checks, its thresholds and sources, and the check itself."""

    kind: str
    title: str
    priority: int
    source: str
    thresholds: dict[str, Any]
    check: Callable[[RunRecords], Finding | None]

    def finding(
        self,
        severity: str,
        summary: str,
        evidence: dict[str, Any],
        change: str,
        draw: Callable[[Axes], None] | None = None,
    ) -> Finding:
        """A finding of this rule: its kind, title, source and priority, with what the check found."""
        return Finding(
            self.kind, severity, self.title, summary, evidence, change, self.source, priority=self.priority, draw=draw
        )


def rank(findings: list[Finding]) -> list[Finding]:
    """Errors first, then warnings, then info; at equal severity, root causes (data, architecture) before the
    symptoms they cause (loss curves), by the rules' priority."""
    return sorted(findings, key=lambda f: (SEVERITIES.index(f.severity), f.priority))

"""The doctor's output: ``doctor/findings.json``, one PNG per finding and ``doctor/report.html``."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from deepkit.weights import atomic_write_text

Diagnosis = Any  # deepkit.doctor.Diagnosis, whose module imports this one (so it is not imported here)

COLORS = {"error": "#c0392b", "warning": "#d68910", "info": "#2874a6"}


def write(diagnosis: Diagnosis, out: Path) -> None:
    """Plots, findings.json and report.html under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("[0-9][0-9]_*.png"):  # the plots of an earlier diagnosis of this run
        old.unlink()
    for i, f in enumerate(diagnosis.findings, 1):
        if f.draw is not None:
            f.plot = f"{i:02d}_{f.kind}.png"
            save_plot(f.draw, out / f.plot, f"{f.title} ({f.severity})")
    atomic_write_text(out / "findings.json", json.dumps(diagnosis.to_dict(), indent=1))
    atomic_write_text(out / "report.html", render(diagnosis))


def save_plot(draw, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=100)
    try:
        draw(ax)
        ax.set_title(title, fontsize=10, loc="left")
        fig.tight_layout()
        tmp = path.with_name(path.name + ".tmp.png")
        fig.savefig(tmp)
        tmp.replace(path)
    finally:
        plt.close(fig)


def _evidence_rows(evidence: dict[str, Any]) -> str:
    rows = []
    for k, v in evidence.items():
        if k == "flagged":
            v = f"{len(v)} indices (all in findings.json)"
        text = json.dumps(v) if not isinstance(v, str) else v
        if len(text) > 600:
            text = text[:600] + " ..."
        rows.append(f"<tr><td>{html.escape(k)}</td><td><code>{html.escape(text)}</code></td></tr>")
    return "".join(rows)


def render(d: Diagnosis) -> str:
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>deepkit doctor: {e(str(d.run_dir))}</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}"
        ".f{border:1px solid #ddd;border-radius:6px;padding:1rem;margin:1rem 0}"
        ".sev{color:#fff;border-radius:4px;padding:2px 8px;font-size:.8rem;text-transform:uppercase}"
        "table{border-collapse:collapse;font-size:.85rem}td{border-top:1px solid #eee;padding:3px 8px;"
        "vertical-align:top}code{white-space:pre-wrap;word-break:break-word}img{max-width:100%}"
        ".change{background:#eef7ee;padding:.5rem;border-radius:4px}</style></head><body>",
        f"<h1>deepkit doctor</h1><p><b>{e(str(d.run_dir))}</b> ({e(d.name)}): {e(d.state)}</p>",
        f"<p><b>{e(d.headline)}</b></p>",
    ]
    for note in d.notes:
        parts.append(f"<p><i>{e(note)}</i></p>")
    for i, f in enumerate(d.findings, 1):
        parts.append(
            f"<div class='f'><h2>{i}. {e(f.title)} <span class='sev' style='background:{COLORS[f.severity]}'>"
            f"{e(f.severity)}</span></h2><p>{e(f.summary)}</p>"
            f"<p class='change'><b>Change:</b> {e(f.change)}</p>"
        )
        if f.plot:
            parts.append(f"<img src='{e(f.plot)}' alt='{e(f.title)}'>")
        parts.append(f"<details><summary>evidence</summary><table>{_evidence_rows(f.evidence)}</table></details>")
        parts.append(f"<p style='font-size:.8rem;color:#666'>rule <code>{e(f.kind)}</code>; source: {e(f.source)}</p>")
        parts.append("</div>")
    parts.append("</body></html>")
    return "\n".join(parts)

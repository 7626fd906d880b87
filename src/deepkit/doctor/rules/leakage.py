"""Train/validation/test leakage: the same inputs in two splits, so held-out metrics measure memory.

Thresholds, on the hashes of every split's inputs taken at the start of the run (``record/data.json``): exact
duplicates between training and a held-out split of at least ``SHARE_ERROR`` of that split (an error), or at least
``MIN_COUNT`` examples and ``SHARE_WARN`` of it (a warning); near duplicates (equal after rounding to 0.25 in
normalized units) at ``NEAR_SHARE`` or more (a warning). Validation and test sharing inputs: the same thresholds.
Tasks whose inputs recur across splits by nature (word2vec's (centre, context) pairs, TTS words, recommender ids:
``Task.inputs_identify_examples = False``) are not compared. Sources: UMLAUT (Schoop et al., CHI 2021) "possible
leakage"; duplicate test images in CIFAR (Barz & Denzler 2020).
"""

from __future__ import annotations

from deepkit.doctor.findings import Finding, Rule
from deepkit.doctor.records import RunRecords

SHARE_ERROR = 0.05
SHARE_WARN = 0.005
MIN_COUNT = 3
NEAR_SHARE = 0.05


def check(rec: RunRecords) -> Finding | None:
    data = rec.data
    if not data.get("splits") or not data.get("compared", True):  # inputs that recur by nature: not compared
        return None
    sizes = {k: v["examples"] for k, v in data["splits"].items()}
    found = []
    for kind in ("exact", "near"):
        for pair, info in data.get(kind, {}).items():
            a, b = pair.split("-")
            held = b if b != "train" else a
            n = sizes.get(held, 0)
            if not n or not info["count"]:
                continue
            share = info["count"] / n
            if kind == "exact":
                sev = (
                    "error"
                    if share >= SHARE_ERROR
                    else "warning"
                    if share >= SHARE_WARN and info["count"] >= MIN_COUNT
                    else None
                )
            else:
                sev = "warning" if share >= NEAR_SHARE and info["count"] >= MIN_COUNT else None
            if sev:
                found.append((sev, kind, pair, held, info, share))
    if not found:
        return None
    found.sort(key=lambda f: (f[0] != "error", f[1] != "exact", -f[5]))
    sev, kind, pair, held, info, share = found[0]
    a, b = pair.split("-")
    evidence = {
        "pairs": {f"{k} {p}": {"count": i["count"], "share_of_" + h: round(s, 4)} for _, k, p, h, i, s in found},
        "example_pairs": info["pairs"][:20],
    }
    summary = (
        f"{info['count']} {held} inputs ({share:.1%} of the {held} split) are {'exact' if kind == 'exact' else 'near'} "
        f"duplicates of {a if held == b else b} inputs: {held} metrics are optimistic"
    )
    ids = ", ".join(str(q[1] if held == b else q[0]) for q in info["pairs"][:20])
    change = (
        f"remove the duplicated {held} inputs (indices in the {held} split: {ids}"
        f"{' ...' if info['count'] > 20 else ''}) "
        "or deduplicate the data before splitting it"
    )
    labels = [f"{k} {p}" for _, k, p, _, _, _ in found]
    shares = [s for *_, s in found]

    def draw(ax):
        ax.barh(
            labels, [100 * s for s in shares], color=["tab:red" if k == "exact" else "tab:orange" for _, k, *_ in found]
        )
        ax.set_xlabel("% of the held-out split whose inputs are also in the other split")

    return RULE.finding(sev, summary + ".", evidence, change, draw)


RULE = Rule(
    kind="leakage",
    title="train/validation/test leakage",
    priority=1,
    source="UMLAUT (CHI 2021) possible leakage; duplicate detection by hashing (Barz & Denzler 2020)",
    thresholds={"share_error": SHARE_ERROR, "share_warn": SHARE_WARN, "min_count": MIN_COUNT, "near_share": NEAR_SHARE},
    check=check,
)

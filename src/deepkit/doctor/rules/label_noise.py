"""Label noise: validation examples whose given label the model confidently contradicts (confident learning).

Method (Northcutt, Jiang & Chuang, JAIR 2021; cleanlab's ``find_label_issues``), on the out-of-sample predicted
probabilities recorded at the end of the run (``record/val_predictions.npz``): a class's threshold t_j is the mean
probability of class j over the examples labelled j; an example is counted for every class whose probability
reaches that class's threshold, for the likeliest of them; examples counted for a class other than their label
form the off-diagonal of the confident joint: the flagged labels, ranked by the probability of the given label
(self-confidence, lowest first). Thresholds: a warning at ``SHARE`` or more of the split flagged (and at least
``MIN_FLAGGED`` examples), an info note from ``NOTE``; at least ``MIN_EXAMPLES`` validation examples. Confident
learning needs a model that has learned the task: the validation accuracy must close at least ``LEARNED`` of the
gap between always predicting the majority class and a perfect score, else the flagged examples are just the
model's errors (and another finding explains the run).
"""

from __future__ import annotations

import numpy as np

from deepkit.doctor.findings import Finding, Rule
from deepkit.doctor.records import RunRecords

SHARE = 0.05
NOTE = 0.02
MIN_FLAGGED = 5
MIN_EXAMPLES = 50
LEARNED = 0.4
SHOWN = 20


def confident_issues(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Indices of the off-diagonal examples of the confident joint, lowest self-confidence first."""
    n, k = probs.shape
    thresholds = np.full(k, np.inf)
    for j in range(k):
        mine = labels == j
        if mine.any():
            thresholds[j] = probs[mine, j].mean()
    above = probs >= thresholds[None, :] - 1e-12
    likeliest = np.where(above, probs, -1.0).argmax(1)
    issue = above.any(1) & (likeliest != labels)
    idx = np.flatnonzero(issue)
    self_conf = probs[np.arange(n), labels]
    return idx[np.argsort(self_conf[idx], kind="stable")]


def check(rec: RunRecords) -> Finding | None:
    p = rec.predictions
    if p is None or "probs" not in p or len(p["label"]) < MIN_EXAMPLES:
        return None
    labels, probs = p["label"].astype(int), p["probs"].astype(float)
    if probs.ndim != 2 or labels.max() >= probs.shape[1] or labels.min() < 0:
        return None
    majority = np.bincount(labels).max() / len(labels)
    accuracy = float((probs.argmax(1) == labels).mean())
    if accuracy < majority + LEARNED * (1 - majority):
        return None
    flagged = confident_issues(labels, probs)
    share = len(flagged) / len(labels)
    if share < NOTE:
        return None
    severity = "warning" if share >= SHARE and len(flagged) >= MIN_FLAGGED else "info"
    index = p.get("index", np.arange(len(labels)))
    ids = [int(index[i]) for i in flagged]
    predicted = probs.argmax(1)
    top = [
        {
            "id": int(index[i]),
            "label": int(labels[i]),
            "predicted": int(predicted[i]),
            "p_label": round(float(probs[i, labels[i]]), 4),
            "p_predicted": round(float(probs[i, predicted[i]]), 4),
        }
        for i in flagged[:SHOWN]
    ]
    evidence = {
        "split": "val",
        "examples": int(len(labels)),
        "flagged_count": len(ids),
        "flagged_share": round(share, 4),
        "val_accuracy": round(accuracy, 4),
        "most_suspicious": top,
        "flagged": ids[:5000],
    }
    summary = (
        f"{len(ids)} of {len(labels)} validation labels ({share:.1%}) are contradicted by the model with "
        "confidence above its own class thresholds (confident learning)"
    )
    change = (
        f"check and fix these validation examples' labels (indices in the validation split, most suspicious first): "
        f"{', '.join(str(i) for i in ids[:SHOWN])}; the same labelling process likely mislabelled training examples "
        "too (task.label_smoothing=0.1 softens their pull)"
    )
    self_conf = probs[np.arange(len(labels)), labels]

    def draw(ax):
        mask = np.zeros(len(labels), dtype=bool)
        mask[flagged] = True
        bins = np.linspace(0, 1, 41)
        ax.hist(self_conf[~mask], bins=bins, alpha=0.6, label="not flagged")
        ax.hist(self_conf[mask], bins=bins, alpha=0.8, color="tab:red", label=f"flagged ({len(ids)})")
        ax.set_yscale("log")
        ax.set_xlabel("predicted probability of the given label")
        ax.set_ylabel("validation examples")
        ax.legend(fontsize=8)

    return RULE.finding(severity, summary + ".", evidence, change, draw)


RULE = Rule(
    kind="label_noise",
    title="label noise",
    priority=2,
    source="confident learning (Northcutt et al., JAIR 2021; cleanlab find_label_issues)",
    thresholds={
        "share": SHARE,
        "note": NOTE,
        "min_flagged": MIN_FLAGGED,
        "min_examples": MIN_EXAMPLES,
        "learned": LEARNED,
    },
    check=check,
)

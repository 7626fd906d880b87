"""Class imbalance hidden by accuracy: one class dominates, so accuracy is high even where a class is missed.

Thresholds, on the training split's class counts (``record/data.json``) and the per-class recall of the end-of-run
validation predictions: the majority class at ``MAJORITY`` or more of the training examples (a warning: always
predicting it scores that accuracy); or at ``SKEWED`` or more with a class recalled below ``RECALL`` (a warning).
Source: He & Garcia, "Learning from imbalanced data" (IEEE TKDE 2009); balanced accuracy (Brodersen et al., 2010).
"""

from __future__ import annotations

import numpy as np

from deepkit.doctor.findings import Finding, Rule
from deepkit.doctor.records import RunRecords

MAJORITY = 0.9
SKEWED = 0.7
RECALL = 0.5


def check(rec: RunRecords) -> Finding | None:
    counts = rec.data.get("splits", {}).get("train", {}).get("labels")
    if not counts or len(counts) < 2:
        return None
    classes = sorted(counts, key=lambda k: -counts[k])
    total = sum(counts.values())
    share = counts[classes[0]] / total
    if share < SKEWED:
        return None
    evidence = {"train_counts": counts, "majority_class": int(classes[0]), "majority_share": round(share, 4)}
    recall = {}
    p = rec.predictions
    if p is not None and "probs" in p:
        y, pred = p["label"].astype(int), p["probs"].argmax(1)
        for c in np.unique(y):
            recall[int(c)] = float((pred[y == c] == c).mean())
        evidence.update(
            val_accuracy=round(float((pred == y).mean()), 4),
            balanced_accuracy=round(float(np.mean(list(recall.values()))), 4),
            recall=recall,
        )
    worst = min(recall, key=recall.get) if recall else None
    missed = worst is not None and recall[worst] < RECALL
    if share < MAJORITY and not missed:
        return None
    summary = (
        f"class {classes[0]} is {share:.0%} of the training examples, so always predicting it scores {share:.0%} "
        "accuracy"
    )
    if recall:
        summary += (
            f"; validation accuracy {evidence['val_accuracy']:.1%} but balanced accuracy "
            f"{evidence['balanced_accuracy']:.1%}, class {worst} recalled {recall[worst]:.0%}"
        )
    change = (
        "judge the run by macro-F1 or balanced accuracy (trainer.monitor=val_f1), not accuracy; rebalance the "
        "training data (data.per_class=N) or weight the rare class (task.pos_weight for binary tasks); collect more "
        "examples of the rare class"
    )

    def draw(ax):
        xs = np.arange(len(classes))
        ax.bar(xs, [counts[c] / total for c in classes], alpha=0.6, label="share of training examples")
        if recall:
            ax.plot(xs, [recall.get(int(c), np.nan) for c in classes], "o-", c="tab:red", label="validation recall")
        ax.set_xticks(xs, classes)
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("class")
        ax.legend(fontsize=8)

    return RULE.finding("warning", summary + ".", evidence, change, draw)


RULE = Rule(
    kind="class_imbalance",
    title="class imbalance hidden by accuracy",
    priority=4,
    source="He & Garcia (IEEE TKDE 2009); balanced accuracy (Brodersen et al., ICPR 2010)",
    thresholds={"majority": MAJORITY, "skewed": SKEWED, "recall": RECALL},
    check=check,
)

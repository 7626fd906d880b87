"""Label noise: validation examples whose given label the model confidently contradicts (confident learning).

Method (Northcutt, Jiang & Chuang, JAIR 2021; cleanlab's ``find_label_issues`` with
``filter_by="low_self_confidence"``), on the out-of-sample predicted probabilities recorded at the end of the run
(``record/val_predictions.npz``): a class's threshold t_j is the mean probability of class j over the examples
labelled j; an example counts in the confident joint C[given, j] for the likeliest class j whose probability
reaches t_j. Each row of C is calibrated to its class's count; its off-diagonal sum estimates how many examples of
that given class are mislabelled, and that many of them, by lowest self-confidence p(given | x), are flagged
(ranked lowest self-confidence first). The first held-out evaluation flagged only C's off-diagonal examples
themselves (4.15% flagged, 74.7% of 5% flipped labels found); the calibrated count with the self-confidence rank
finds 88% at 5.3% on the same run (now the dev set).

Thresholds: a warning at ``SHARE`` or more of the split flagged (and at least ``MIN_FLAGGED`` examples), an info
note from ``NOTE``; at least ``MIN_EXAMPLES`` validation examples. Confident learning needs a model that has
learned the task, else the flagged examples are just the model's errors (and another finding explains the run):
its validation accuracy must be above always predicting the majority class by ``Z`` binomial standard errors
(sqrt(m(1 − m)/n), a three-sigma test that it learned anything), else no finding; and close at least ``LEARNED``
of the gap between the majority class and a perfect score, else only an info note (with the count) that says the
model learned too little to tell wrong labels from its own mistakes. A gate against the best accuracy possible on
noisy labels (1 − the flagged share) was tried on the dev set and rejected: for a weak model the flagged share is
about its error rate, so that gate always opens; a healthy 2-epoch SST-2 BiLSTM (68% accuracy, clean labels) then
had 26% of its labels "flagged", against 40% for the same model on 20% flipped labels. With a model that weak,
label noise cannot be told from the model's errors by its own predictions.

Still learning. Confident learning assumes out-of-sample probabilities from a model that has converged, so that its
confident disagreements with a label are about the label and not about what the model has not learned yet
(Northcutt et al. 2021 take the out-of-sample probabilities of a trained model; the per-class thresholds are its
average self-confidence, which on a model still climbing its learning curve move with every epoch). A run whose
last epoch still improved validation markedly ended before that point: its validation loss fell by ``STILL_LOSS``
(10%) or more of its value, or its validation accuracy rose by ``STILL_ACC`` (5 points) or more, in the last epoch.
Then the estimate is reported at info level only, with the reason and the advice to train longer (an underfitting
finding, where that rule applies, is the one to act on). Both figures are this rule's own choice, not from a
source: they sit far above the last-epoch changes of the planted label-noise runs of the tune/dev/dev2 sets (at
most a 5.2% loss fall and 2.5 points of accuracy in their last epoch) and far below that of the run that prompted
the check (dev2's healthy ``fsdd_digits_cnn``, 4 of its recipe's 20 epochs: the validation loss fell 38% and the
accuracy rose 36 points in the last epoch, and 11.7% of its clean labels were "flagged").

Confidently contradicted. Confident learning's premise is that a flagged label is one the model confidently puts
in another class. A model that has only partly learned a two-class task meets the ``LEARNED`` gate and has settled,
yet its "confident" joint is built on per-class thresholds near 0.6: its flagged examples are its own hesitant
mistakes. Round 3's one false warning was such a run (a healthy 3-epoch SST-2 BiLSTM, 74.8% accuracy, 18.8% of its
clean labels flagged). So a warning also needs the median flagged example's given label to have probability at
most ``CONTRADICT`` (0.1: the other classes together hold 90% or more); else the estimate is an info note that says
the model contradicts the flagged labels too weakly to tell wrong labels from hard examples. On the kept runs of the
development sets (tune, dev, dev2, dev3) the medians separate cleanly: 0.004-0.037 on every planted label-noise run
whose model learned the task (digits, MNIST; flips of 5-30%), 0.29-0.34 on the three healthy SST-2 BiLSTMs, 0.27
on the SST-2 leakage run whose false label-noise warning came second, 0.165 on dev2's still-learning healthy
``fsdd_digits_cnn``, 0.44 and 0.36 on the two SST-2 label-noise runs and 0.145 on dev's breast-cancer one (weak
models on noisy labels: those labels cannot be told from the models' errors either, and these become notes). 0.1 is
this rule's own choice between the two groups, not from a source.
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
Z = 3.0
STILL_LOSS = 0.10
STILL_ACC = 0.05
CONTRADICT = 0.1
SHOWN = 20


def still_learning(rec: RunRecords) -> str | None:
    """Why the run was still learning at its end (its last epoch improved validation markedly), or None."""
    loss, acc = rec.column("val_loss"), rec.column("val_accuracy")
    if len(loss) < 2:
        return None
    if np.isfinite(loss[-2:]).all() and loss[-2] > 0 and (loss[-2] - loss[-1]) / loss[-2] >= STILL_LOSS:
        return f"its validation loss still fell {(loss[-2] - loss[-1]) / loss[-2]:.0%} in the last epoch"
    if np.isfinite(acc[-2:]).all() and acc[-1] - acc[-2] >= STILL_ACC:
        return f"its validation accuracy still rose {100 * (acc[-1] - acc[-2]):.1f} points in the last epoch"
    return None


def confident_joint(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The confident joint C[given, true] (k, k) and the per-class thresholds t_j (mean self-confidence of class j):
    an example counts in row ``given`` and the column of the likeliest class whose probability reaches its
    threshold (examples with no class at its threshold are not counted)."""
    n, k = probs.shape
    thresholds = np.full(k, np.inf)
    for j in range(k):
        mine = labels == j
        if mine.any():
            thresholds[j] = probs[mine, j].mean()
    above = probs >= thresholds[None, :] - 1e-12
    likeliest = np.where(above, probs, -1.0).argmax(1)
    counted = above.any(1)
    joint = np.zeros((k, k))
    np.add.at(joint, (labels[counted], likeliest[counted]), 1)
    return joint, thresholds


def confident_issues(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """The label issues, lowest self-confidence first: per given class i, as many examples as the calibrated
    confident joint estimates to be wrongly labelled i (row i rescaled to the class's count, minus its diagonal),
    taken by lowest self-confidence p(i | x) among the examples labelled i (cleanlab's ``find_label_issues`` with
    ``filter_by="low_self_confidence"``)."""
    n, k = probs.shape
    joint, _ = confident_joint(labels, probs)
    counts = np.bincount(labels, minlength=k).astype(float)
    rows = joint.sum(1)
    calibrated = np.divide(joint * counts[:, None], rows[:, None], out=np.zeros_like(joint), where=rows[:, None] > 0)
    self_conf = probs[np.arange(n), labels]
    picked = []
    for i in range(k):
        wrong = int(round(calibrated[i].sum() - calibrated[i, i]))
        if wrong <= 0:
            continue
        mine = np.flatnonzero(labels == i)
        picked.append(mine[np.argsort(self_conf[mine], kind="stable")[:wrong]])
    idx = np.concatenate(picked) if picked else np.array([], dtype=int)
    return idx[np.argsort(self_conf[idx], kind="stable")]


def check(rec: RunRecords) -> Finding | None:
    p = rec.predictions
    if p is None or "probs" not in p or len(p["label"]) < MIN_EXAMPLES:
        return None
    labels, probs = p["label"].astype(int), p["probs"].astype(float)
    if probs.ndim != 2 or labels.max() >= probs.shape[1] or labels.min() < 0:
        return None
    n = len(labels)
    majority = np.bincount(labels).max() / n
    accuracy = float((probs.argmax(1) == labels).mean())
    flagged = confident_issues(labels, probs)
    share = len(flagged) / n
    if accuracy < majority + Z * np.sqrt(majority * (1 - majority) / n):
        return None  # no better than the majority class: its "confident" errors are no evidence
    learned = accuracy >= majority + LEARNED * (1 - majority)
    if share < NOTE:
        return None
    unsettled = still_learning(rec)
    self_conf = probs[np.arange(len(labels)), labels]
    contradiction = float(np.median(self_conf[flagged])) if len(flagged) else 1.0
    # the reason a settled model that learned the task still gets only a note (said once, in summary and change)
    hesitant = learned and not unsettled and contradiction > CONTRADICT
    severity = (
        "warning"
        if learned and not unsettled and not hesitant and share >= SHARE and len(flagged) >= MIN_FLAGGED
        else "info"
    )
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
        "still_learning": unsettled,
        "median_p_label_flagged": round(contradiction, 4),
        "most_suspicious": top,
        "flagged": ids[:5000],
    }
    summary = (
        (
            f"{len(ids)} of {len(labels)} validation labels ({share:.1%}) look wrong: the confident joint of the "
            "model's out-of-sample probabilities estimates that many mislabelled, and these are the ones it believes "
            "least (confident learning)"
        )
        + (
            ""
            if learned
            else f"; but the model learned too little (validation accuracy {accuracy:.1%}, majority class "
            f"{majority:.1%}) to tell wrong labels from its own mistakes"
        )
        + (
            f"; but the run was still learning when it ended ({unsettled}), so its probabilities are not yet the "
            "converged, out-of-sample ones confident learning needs: this estimate is not trustworthy"
            if unsettled
            else ""
        )
        + (
            f"; but the model contradicts them only weakly (the median flagged example still gives its label "
            f"{contradiction:.0%}, above {CONTRADICT:.0%}): its flagged examples look like its own hesitant mistakes "
            "on hard examples as much as wrong labels"
            if hesitant
            else ""
        )
    )
    change = (
        (
            "train until validation stops improving (more trainer.epochs), then run the doctor again; "
            if unsettled
            else ""
        )
        + (
            "a model that learns the task better (more data, epochs or capacity) separates wrong labels from hard "
            "examples; meanwhile "
            if hesitant
            else ""
        )
        + (
            "check and fix these validation examples' labels (indices in the validation split, most suspicious "
            f"first): {', '.join(str(i) for i in ids[:SHOWN])}; the same labelling process likely mislabelled "
            "training examples too (task.label_smoothing=0.1 softens their pull)"
        )
    )

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
        "z": Z,
        "still_loss": STILL_LOSS,
        "still_acc": STILL_ACC,
        "contradict": CONTRADICT,
    },
    check=check,
)

"""Each rule on synthetic records: it fires on the pattern it names, at its documented threshold, and stays quiet
on a healthy pattern next to it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deepkit.doctor import interactions, rank
from deepkit.doctor.findings import Finding
from deepkit.doctor.range_test import smooth_centered, valley
from deepkit.doctor.records import Activation, Layer, RunRecords
from deepkit.doctor.rules import (
    RULES,
    class_imbalance,
    dead_relus,
    exploding_gradients,
    input_pipeline,
    label_noise,
    leakage,
    lr_too_high,
    lr_too_low,
    overfitting,
    saturated_activations,
    underfitting,
    unnormalized_inputs,
    vanishing_gradients,
)

STEPS = np.arange(1, 301, dtype=float)
REC_STEPS = np.array([1, *range(10, 301, 10)], dtype=float)


def run(loss=None, lr=1e-3, **kw) -> RunRecords:
    """Records of a 300-step run: a loss falling from 2.3 to ~0.3 unless given, a constant learning rate."""
    if loss is None:
        loss = 0.3 + 2.0 * np.exp(-STEPS / 60)
    rec = RunRecords(Path("runs/x"), config={"trainer": {"optimizer": {"lr": lr}, "epochs": 10}})
    rec.steps = {"step": STEPS[: len(loss)], "epoch": STEPS[: len(loss)] // 30, "loss": np.asarray(loss, float)}
    rec.steps["lr"] = np.full(len(loss), lr)
    rec.meta = {"every": 10}
    for k, v in kw.items():
        setattr(rec, k, v)
    return rec


def layer(name, grad=0.1, upd=1e-3, zero=0.0, shape=(64, 64)) -> Layer:
    n = len(REC_STEPS)
    col = lambda v: np.broadcast_to(np.asarray(v, float), (n,)).copy()  # noqa: E731
    return Layer(name, list(shape), REC_STEPS, col(grad), col(zero), col(10.0), col(upd))


def act(name, kind="relu", dead=0.0, saturated=np.nan, block_output=False) -> Activation:
    n = len(REC_STEPS)
    col = lambda v: np.broadcast_to(np.asarray(v, float), (n,)).copy()  # noqa: E731
    return Activation(name, kind, block_output, REC_STEPS, col(0.5), col(dead), col(saturated), col(0.1), col(1.0))


def history(train, val, **metrics) -> list[dict[str, float]]:
    rows = [{"epoch": i + 1, "train_loss": t, "val_loss": v} for i, (t, v) in enumerate(zip(train, val, strict=True))]
    for k, values in metrics.items():
        for row, value in zip(rows, values, strict=True):
            row[k] = value
    return rows


HEALTHY = dict(
    layers=[layer("fc1.weight"), layer("fc1.bias", shape=(64,)), layer("fc2.weight"), layer("head.weight")],
    activations=[act("act1"), act("act2")],
)


def test_every_rule_is_documented_and_ordered_causes_first():
    kinds = [r.kind for r in RULES]
    assert len(kinds) == len(set(kinds)) == 13
    assert kinds.index("leakage") < kinds.index("dead_relus") < kinds.index("lr_too_high") < kinds.index("overfitting")
    for r in RULES:
        assert r.source and r.thresholds and r.check.__module__.endswith(r.kind)


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.kind)
def test_no_rule_fires_on_a_healthy_run(rule):
    rec = run(**HEALTHY)
    rec.history = history([1.0, 0.6, 0.45, 0.4, 0.38], [0.9, 0.62, 0.5, 0.47, 0.46])
    rec.inputs = {"axis": "feature", "mean": [0.0, 0.1], "std": [1.0, 0.9], "min": [-3, -3], "max": [3, 3]}
    rec.timing = {"step_from": np.array([0, 100, 200.0]), "step_to": np.array([100, 200, 300.0])}
    rec.timing |= {"data_s": np.array([0.01, 0.01, 0.01]), "compute_s": np.array([0.3, 0.3, 0.3])}
    assert rule.check(rec) is None


def test_lr_too_high_on_nan_on_a_blow_up_and_on_a_rebound():
    loss = 0.3 + 2.0 * np.exp(-STEPS / 60)
    nan = loss.copy()
    nan[150:] = np.nan
    f = lr_too_high.check(run(nan, lr=0.5))
    assert f.severity == "error" and f.evidence["nonfinite_at_step"] == 151 and "trainer.optimizer.lr=0.05" in f.change
    spike = np.full(300, 2.3)
    spike[40] = 2.3 * 3.5  # 3.5x the initial loss, and no progress
    assert lr_too_high.check(run(spike, lr=0.5)).severity == "error"
    spike[40] = 2.3 * 2.9  # under 3x: no blow-up
    assert lr_too_high.check(run(spike, lr=0.5)) is None
    rebound = np.concatenate([2.3 - 2.0 * STEPS[:150] / 150, 0.3 + 1.2 * STEPS[:150] / 150])  # back to 1.5
    assert lr_too_high.check(run(rebound)).severity == "warning"


def test_lr_too_low_needs_tiny_steps_slow_progress_and_live_gradients():
    flat = 2.3 - 0.05 * STEPS / 300  # 2% lower after 300 steps
    tiny = [layer("fc1.weight", upd=5e-5), layer("head.weight", upd=5e-5)]
    f = lr_too_low.check(run(flat, lr=1e-6, layers=tiny))
    assert f.severity == "warning" and "trainer.optimizer.lr=2e-5" in f.change
    assert lr_too_low.check(run(flat, layers=[layer("a.weight", upd=2e-4), layer("b.weight", upd=2e-4)])) is None
    dead = [layer("fc1.weight", upd=5e-6, zero=1.0), layer("head.weight", upd=5e-6, zero=1.0)]
    assert lr_too_low.check(run(flat, layers=dead)) is None  # no gradient: dead units, not the learning rate


def test_vanishing_gradients_at_autotrainers_thresholds():
    def rec(first):
        return run(
            layers=[layer("fc1.weight", grad=first), layer("fc2.weight", grad=0.01), layer("head.weight", grad=0.1)]
        )

    f = vanishing_gradients.check(rec(5e-5))  # ratio 5e-4 < 1e-3 and |g| 5e-5 < 1e-4
    assert f is not None and f.evidence["first_layer"] == "fc1.weight" and f.evidence["last_layer"] == "head.weight"
    assert vanishing_gradients.check(rec(2e-4)) is None  # ratio 2e-3: not vanishing


def test_exploding_gradients_on_a_ratio_above_70_and_on_nan():
    assert exploding_gradients.check(run(layers=[layer("fc1.weight", grad=8.0), layer("head.weight", grad=0.1)]))
    assert (
        exploding_gradients.check(run(layers=[layer("fc1.weight", grad=6.0), layer("head.weight", grad=0.1)])) is None
    )
    bad = layer("fc1.weight")
    bad.grad_norm[5] = np.inf
    f = exploding_gradients.check(run(layers=[bad, layer("head.weight")]))
    assert f.severity == "error" and f.evidence["nonfinite_grad_steps"] == [50]


def test_dead_relus_from_the_start_and_dying_later():
    f = dead_relus.check(run(activations=[act("act1", dead=0.9), act("act2")]))
    assert f.severity == "error" and f.evidence["layer"] == "act1" and "Kaiming" in f.change
    later = act("act1", dead=0.8)
    later.dead[:5] = 0.0
    f = dead_relus.check(run(activations=[later]))
    assert f.severity == "warning" and "lower trainer.optimizer.lr" in f.change
    assert dead_relus.check(run(activations=[act("act1", dead=0.45)])) is None


def test_saturation_of_hidden_sigmoid_and_tanh_but_not_of_an_output_tanh():
    f = saturated_activations.check(run(activations=[act("s1", "sigmoid", saturated=0.6)]))
    assert f is not None and f.evidence["layer"] == "s1"
    assert saturated_activations.check(run(activations=[act("t1", "tanh", saturated=0.4)])) is None
    assert saturated_activations.check(run(activations=[act("out", "tanh", saturated=0.9, block_output=True)])) is None


def test_overfitting_needs_a_rising_validation_loss_and_a_gap():
    train = [1.0, 0.5, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01]
    val = [0.9, 0.6, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75]  # lowest at epoch 3, +50% at the end
    rec = run(
        history=history(
            train,
            val,
            train_accuracy=[0.7, 0.8, 0.9, 0.95, 0.97, 0.99, 1, 1],
            val_accuracy=[0.7, 0.78, 0.82, 0.82, 0.81, 0.81, 0.8, 0.8],
        )
    )
    f = overfitting.check(rec)
    assert f.severity == "warning" and f.evidence["best_epoch"] == 3
    rec.config["trainer"]["early_stopping"] = {"patience": 5}  # stopped before its 10 epochs: handled
    assert overfitting.check(rec).severity == "info"
    small_gap = history(train, val, train_accuracy=[0.8] * 8, val_accuracy=[0.78] * 8)
    assert overfitting.check(run(history=small_gap)) is None


def test_underfitting_on_a_high_plateau_without_a_gap():
    plateau = 2.0 + 0.3 * np.exp(-STEPS / 20)  # 2.3 -> 2.0 (13% lower), flat after step 100
    rec = run(
        plateau, layers=[layer("a.weight"), layer("b.weight")], history=history([2.1, 2.0, 2.0], [2.05, 2.0, 2.0])
    )
    assert underfitting.check(rec).severity == "warning"
    rec.history = history([2.1, 2.0, 1.5], [2.05, 2.0, 2.0])  # validation 33% worse than training: no underfit
    assert underfitting.check(rec) is None


def test_unnormalized_inputs():
    f = unnormalized_inputs.check(
        run(inputs={"axis": "feature", "mean": [0.1, 740.0], "std": [1.0, 320.0], "min": [0, 0], "max": [1, 1700]})
    )
    assert f.severity == "error" and f.evidence["largest_feature"] == 1 and "data.normalize=feature" in f.change
    assert (
        unnormalized_inputs.check(
            run(inputs={"axis": "channel", "mean": [0.13], "std": [0.31], "min": [0], "max": [1]})
        )
        is None
    )
    spread = {"axis": "feature", "mean": [0, 0], "std": [2.0, 1e-3], "min": [0, 0], "max": [1, 1]}
    assert unnormalized_inputs.check(run(inputs=spread)).severity == "warning"
    assert unnormalized_inputs.check(run(inputs={"axis": "ids", "min": [0], "max": [5000]})) is None


def test_label_noise_is_confident_learning():
    rng = np.random.default_rng(0)
    n, k = 400, 4
    true = rng.integers(0, k, n)
    probs = np.full((n, k), 0.02)
    probs[np.arange(n), true] = 0.94
    label = true.copy()
    flipped = rng.choice(n, 40, replace=False)  # 10% wrong labels, confidently contradicted
    label[flipped] = (true[flipped] + 1) % k
    f = label_noise.check(run(predictions={"label": label, "probs": probs, "index": np.arange(n)}))
    assert f.severity == "warning" and sorted(f.evidence["flagged"]) == sorted(flipped.tolist())
    assert f.evidence["most_suspicious"][0]["p_label"] == pytest.approx(0.02)
    assert label_noise.check(run(predictions={"label": true, "probs": probs, "index": np.arange(n)})) is None
    chance = np.full((n, k), 1 / k)  # a model that learned nothing: its errors are no evidence
    assert label_noise.check(run(predictions={"label": label, "probs": chance, "index": np.arange(n)})) is None


def test_an_overfitting_model_makes_label_noise_a_note():
    noise = Finding("label_noise", "warning", "", "", {}, "", priority=2)
    over = Finding("overfitting", "warning", "", "", {}, "", priority=12)
    ranked = rank(interactions([noise, over]))
    assert [f.kind for f in ranked] == ["overfitting", "label_noise"] and noise.severity == "info"


def test_leakage_from_duplicated_inputs():
    data = {"splits": {"train": {"examples": 1000}, "val": {"examples": 100}, "test": {"examples": 200}}}
    data |= {
        "exact": {"train-test": {"count": 30, "pairs": [[5, 7]]}, "train-val": {"count": 0, "pairs": []}},
        "near": {},
    }
    f = leakage.check(run(data=data))
    assert f.severity == "error" and "indices in the test split: 7" in f.change
    data["exact"]["train-test"]["count"] = 2  # 1%, but only 2 inputs
    assert leakage.check(run(data=data)) is None


def test_class_imbalance_hidden_by_accuracy():
    data = {"splits": {"train": {"examples": 1000, "labels": {"0": 950, "1": 50}}}}
    y = np.array([0] * 95 + [1] * 5)
    probs = np.tile([0.9, 0.1], (100, 1))  # always the majority: 95% accuracy, class 1 never found
    f = class_imbalance.check(run(data=data, predictions={"label": y, "probs": probs}))
    assert f.evidence["val_accuracy"] == 0.95 and f.evidence["balanced_accuracy"] == 0.5 and "val_f1" in f.change
    data["splits"]["train"]["labels"] = {"0": 600, "1": 400}
    assert class_imbalance.check(run(data=data, predictions={"label": y, "probs": probs})) is None


def test_input_pipeline_bottleneck():
    rec = run()
    rec.timing = {"step_from": np.array([0, 100, 200.0]), "step_to": np.array([100, 200, 300.0])}
    rec.timing |= {"data_s": np.array([1.0, 0.5, 0.5]), "compute_s": np.array([0.3, 0.3, 0.3])}
    f = input_pipeline.check(rec)
    assert f.severity == "error" and f.evidence["data_share"] == pytest.approx(1.0 / 1.6)
    rec.timing["data_s"] = np.array([1.0, 0.1, 0.1])  # the first interval (start-up) does not count
    assert input_pipeline.check(rec) is None


def test_lr_find_valley_suggestion():
    lrs = np.logspace(-7, 1, 100)
    x = np.log10(lrs)
    loss = 2.3 - 1.5 / (1 + np.exp(-(x + 3) * 3)) + np.where(x > -1.5, 20 * (x + 1.5) ** 2, 0)  # floor near 1e-2
    loss += np.random.default_rng(0).normal(0, 0.02, 100)
    s, e, pick = valley(smooth_centered(list(loss)))
    assert 1e-5 < lrs[s] < lrs[pick] < lrs[e] < 0.1 and 3e-4 < lrs[pick] < 1e-2

"""The doctor's rules: one module each, with its thresholds and sources in its docstring and ``RULE``.

Each rule reads a :class:`~deepkit.doctor.records.RunRecords` and returns one
:class:`~deepkit.doctor.findings.Finding` or None. ``priority`` orders findings of equal severity: causes in the
data (leakage, label noise, scale, imbalance, loading) before causes in the model (dead, vanishing, saturated,
exploding) before the optimization symptoms they produce (learning rate, over/underfitting).
"""

from __future__ import annotations

from deepkit.doctor.findings import Rule
from deepkit.doctor.rules import (
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

RULES: list[Rule] = sorted(
    (
        m.RULE
        for m in (
            leakage,
            label_noise,
            unnormalized_inputs,
            class_imbalance,
            input_pipeline,
            dead_relus,
            vanishing_gradients,
            saturated_activations,
            exploding_gradients,
            lr_too_high,
            lr_too_low,
            overfitting,
            underfitting,
        )
    ),
    key=lambda r: r.priority,
)

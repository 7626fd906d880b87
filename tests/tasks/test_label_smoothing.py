"""Label smoothing of token-prediction tasks: it changes the training loss only, never the reported NLL."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepkit.errors import ConfigError
from deepkit.tasks.classification import ClassificationTask
from deepkit.tasks.sequence import IGNORE, LanguageModelTask


class _Fixed(nn.Module):
    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = nn.Parameter(logits)

    def forward(self, tokens, lengths=None):
        return self.logits


def _batch():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    target = torch.randint(0, 7, (2, 5))
    target[1, 3:] = IGNORE  # padding
    return logits, {"tokens": torch.zeros(2, 5, dtype=torch.long), "target": target}


def test_lm_label_smoothing_changes_the_training_loss_but_not_validation_nll():
    logits, batch = _batch()
    flat_logits, flat_target = logits.reshape(-1, 7), batch["target"].reshape(-1)
    nll = F.cross_entropy(flat_logits, flat_target, ignore_index=IGNORE)
    # smoothed CE by hand over the 8 real positions: (1 - e) * NLL + e * mean over classes of -log p
    real = flat_target != IGNORE
    logp = flat_logits[real].log_softmax(-1)
    uniform = -logp.mean(-1).mean()
    expected = (1 - 0.1) * nll + 0.1 * uniform

    task = LanguageModelTask(_Fixed(logits.clone()), vocab_size=7, label_smoothing=0.1)
    assert math.isclose(float(task.training_step(batch)["loss"].detach()), float(expected), rel_tol=1e-5)
    task.metrics.reset()
    val = task.validation_step(batch)
    assert math.isclose(float(val["loss"]), float(nll), rel_tol=1e-5)  # plain NLL, comparable across runs
    assert math.isclose(task.compute_metrics()["perplexity"], math.exp(float(nll)), rel_tol=1e-4)

    plain = LanguageModelTask(_Fixed(logits.clone()), vocab_size=7)
    assert math.isclose(float(plain.training_step(batch)["loss"].detach()), float(nll), rel_tol=1e-5)


@pytest.mark.parametrize("value", [-0.1, 1.0, 1.5])
def test_label_smoothing_outside_0_1_is_a_config_error(value):
    with pytest.raises(ConfigError, match=r"task.label_smoothing must be in \[0, 1\), got"):
        LanguageModelTask(nn.Linear(2, 2), vocab_size=2, label_smoothing=value)
    with pytest.raises(ConfigError, match="task.label_smoothing"):
        ClassificationTask(nn.Linear(2, 2), num_classes=2, label_smoothing=value)

"""Sampling: greedy/temperature/top-k, the stateful (RNN) and full-context (GPT-style) paths agree."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deepkit import create_model
from deepkit.errors import ConfigError
from deepkit.models.generation import generate, sample_next


class FullContext(nn.Module):
    """Wraps an RNN LM so it exposes only forward(ids) -> logits, as a Transformer does."""

    def __init__(self, lm):
        super().__init__()
        self.lm = lm

    def forward(self, ids):
        return self.lm(ids)


def test_stateful_and_full_context_generation_agree():
    torch.manual_seed(0)
    lm = create_model("gru_lm", vocab_size=20, embed_dim=8, hidden_size=16, num_layers=2)
    prompt = torch.tensor([[4, 5, 6], [7, 8, 9]])
    greedy_state = generate(lm, prompt, 10, temperature=0)
    greedy_full = generate(FullContext(lm), prompt, 10, temperature=0)
    assert torch.equal(greedy_state, greedy_full) and greedy_state.shape == (2, 13)
    a = generate(lm, prompt, 10, 1.0, top_k=5, generator=torch.Generator().manual_seed(3))
    b = generate(FullContext(lm), prompt, 10, 1.0, top_k=5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert lm.training, "generate restores the training mode"


def test_top_k_and_temperature():
    logits = torch.tensor([[0.0, 1.0, 5.0, 2.0]])
    assert sample_next(logits, 0).item() == 2
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([sample_next(logits, 1.0, top_k=2, generator=g) for _ in range(300)])
    assert set(draws.flatten().tolist()) <= {2, 3}
    cold = torch.stack([sample_next(logits, 0.05, generator=g) for _ in range(100)])
    assert (cold == 2).all()
    with pytest.raises(ConfigError, match="temperature"):
        sample_next(logits, -1.0)
    with pytest.raises(ConfigError, match="top_k"):
        sample_next(logits, 1.0, top_k=0)


def test_context_is_cropped_and_stop_token_ends_early():
    seen = []

    class Echo(nn.Module):
        def forward(self, ids):
            seen.append(ids.shape[1])
            out = torch.full((*ids.shape, 6), -10.0)
            out[..., 3] = 10.0  # always predicts token 3
            return out

    out = generate(Echo(), torch.tensor([[1, 2, 4, 5]]), 5, temperature=0, context_len=3, stop_id=3)
    assert out.tolist() == [[1, 2, 4, 5, 3]] and seen == [3]
    with pytest.raises(ConfigError, match="prompt"):
        generate(Echo(), torch.zeros(1, 0, dtype=torch.long), 3)

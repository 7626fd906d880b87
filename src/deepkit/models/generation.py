"""Autoregressive sampling from any model that maps token ids (B, T) to next-token logits (B, T, V).

Works for recurrent language models and Transformers alike. A model with ``step(ids, state) -> (logits, state)``
(the recurrent LMs) is fed one new token per step and carries its state (linear time); any other model is fed the
whole context, cropped to ``context_len`` tokens (a GPT's block size).
"""

from __future__ import annotations

import torch
from torch import nn

from deepkit.errors import ConfigError


def sample_next(
    logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Pick one token per row of ``logits`` (B, V): greedy at temperature 0, else sample from the
    temperature-scaled softmax restricted to the ``top_k`` most likely tokens."""
    if temperature < 0:
        raise ConfigError(f"temperature must be >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ConfigError(f"top_k must be >= 1, got {top_k}")
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = logits.softmax(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate(
    model: nn.Module,
    prompt: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    context_len: int | None = None,
    stop_id: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Continue ``prompt`` (B, T) int64 by ``max_new_tokens`` sampled tokens; returns (B, T + new).

    Args:
        model: returns logits (B, T, V) for ids (B, T); may offer ``step(ids, state)``.
        temperature: 0 = greedy; < 1 sharper, > 1 more random.
        top_k: sample only among the k most likely tokens.
        context_len: feed at most this many last tokens (models with a fixed context).
        stop_id: stop once every row has produced this token (e.g. EOS).
        generator: a seeded ``torch.Generator`` for reproducible samples.

    Example:
        >>> out = generate(lm, torch.tensor([tok.encode("ROMEO:")]), 200, temperature=0.8, top_k=20)  # doctest: +SKIP
    """
    if prompt.ndim != 2 or prompt.shape[1] == 0:
        raise ConfigError(f"prompt must be token ids of shape (B, T) with T >= 1, got {tuple(prompt.shape)}")
    was_training = model.training
    model.eval()
    ids = prompt
    done = torch.zeros(len(prompt), dtype=torch.bool, device=prompt.device)
    try:
        if hasattr(model, "step"):
            logits, state = model.step(prompt)
            for _ in range(max_new_tokens):
                nxt = sample_next(logits[:, -1], temperature, top_k, generator)
                ids = torch.cat([ids, nxt[:, None]], 1)
                if stop_id is not None:
                    done |= nxt == stop_id
                    if bool(done.all()):
                        break
                logits, state = model.step(nxt[:, None], state)
        else:
            for _ in range(max_new_tokens):
                ctx = ids if context_len is None else ids[:, -context_len:]
                nxt = sample_next(model(ctx)[:, -1], temperature, top_k, generator)
                ids = torch.cat([ids, nxt[:, None]], 1)
                if stop_id is not None:
                    done |= nxt == stop_id
                    if bool(done.all()):
                        break
    finally:
        model.train(was_training)
    return ids

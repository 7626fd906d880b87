"""Positional encodings: how a Transformer, which is otherwise order-blind, learns where each token sits.

* :class:`SinusoidalPositionalEncoding` — fixed sin/cos table added to the embeddings (Vaswani et al. 2017).
* :class:`LearnedPositionalEmbedding` — one trained vector per absolute position (GPT-2, BERT, RoBERTa).
* :class:`RotaryEmbedding` + :func:`apply_rotary` — rotate q/k by a position-dependent angle so their dot product
  depends only on the offset (Su et al. 2021, RoFormer; the "rotate half" layout of GPT-NeoX / LLaMA).
* :func:`t5_relative_bucket` + :class:`RelativePositionBias` — a learned per-head scalar per log-spaced distance
  bucket, added to the attention scores (Raffel et al. 2020, T5).
* :func:`deberta_relative_positions` + :func:`disentangled_attention_bias` — DeBERTa's content→position and
  position→content scores from shared relative-position embeddings (He et al. 2021, DeBERTa; v2/v3 log buckets).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class SinusoidalPositionalEncoding(nn.Module):
    """Adds ``PE[pos, 2i] = sin(pos / 10000^(2i/d))``, ``PE[pos, 2i+1] = cos(...)`` to ``x (B, T, d)``."""

    def __init__(self, dim: int, max_len: int = 4096, base: float = 10000.0):
        super().__init__()
        pos = torch.arange(max_len, dtype=torch.float32)[:, None]
        inv_freq = torch.exp(-math.log(base) * torch.arange(0, dim, 2, dtype=torch.float32) / dim)
        table = torch.zeros(max_len, dim)
        table[:, 0::2] = torch.sin(pos * inv_freq)
        table[:, 1::2] = torch.cos(pos * inv_freq[: dim // 2])
        self.register_buffer("table", table, persistent=False)  # a function of the shape, not a weight

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        t = x.shape[1]
        if offset + t > self.table.shape[0]:
            raise ValueError(f"position {offset + t} exceeds the table length {self.table.shape[0]}")
        return x + self.table[offset : offset + t].to(x.dtype)


class LearnedPositionalEmbedding(nn.Embedding):
    """A trained vector per absolute position; ``forward(T, offset)`` returns ``(1, T, d)``.

    A subclass of ``nn.Embedding`` so the parameter is ``<name>.weight``, as in Hugging Face checkpoints.
    """

    def forward(self, length: int, offset: int = 0) -> torch.Tensor:  # type: ignore[override]
        if offset + length > self.num_embeddings:
            raise ValueError(f"position {offset + length} exceeds the {self.num_embeddings} learned positions")
        pos = torch.arange(offset, offset + length, device=self.weight.device)
        return super().forward(pos)[None]


class RotaryEmbedding(nn.Module):
    """cos/sin tables for rotary position embeddings over ``dim`` channels of each head."""

    def __init__(self, dim: int, base: float = 10000.0):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``positions (T,)`` or ``(B, T)`` → ``cos, sin`` of shape ``(..., T, dim)``."""
        freqs = positions.float()[..., None] * self.inv_freq  # (..., T, dim/2)
        emb = torch.cat([freqs, freqs], dim=-1)
        return emb.cos(), emb.sin()


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rotary(
    q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate ``q, k (B, H, T, D)`` by the angles in ``cos, sin ((B,) T, D)``."""
    if cos.ndim == 3:  # (B, T, D) -> (B, 1, T, D) to broadcast over heads
        cos, sin = cos[:, None], sin[:, None]
    cos, sin = cos.to(q.dtype), sin.to(q.dtype)
    return q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin


def t5_relative_bucket(
    relative_position: torch.Tensor, bidirectional: bool = True, num_buckets: int = 32, max_distance: int = 128
) -> torch.Tensor:
    """Map ``key_pos - query_pos`` to a bucket: exact for small distances, log-spaced up to ``max_distance``.

    Bidirectional (encoder) halves the buckets between "before" and "after"; a causal decoder only sees the past.
    """
    buckets = torch.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        buckets = buckets + (relative_position > 0).long() * num_buckets
        distance = relative_position.abs()
    else:
        distance = (-relative_position).clamp_min(0)
    max_exact = num_buckets // 2
    is_small = distance < max_exact
    # log-spaced buckets; clamp_min(1) only keeps log() finite where is_small picks the exact value anyway
    large = (
        max_exact
        + (
            torch.log(distance.clamp_min(1).float() / max_exact)
            / math.log(max_distance / max_exact)
            * (num_buckets - max_exact)
        ).long()
    )
    large = large.clamp_max(num_buckets - 1)
    return buckets + torch.where(is_small, distance, large)


class RelativePositionBias(nn.Embedding):
    """T5's learned scalar per (bucket, head), read as an additive attention bias ``(1, H, Tq, Tk)``.

    A subclass of ``nn.Embedding`` (weight ``(num_buckets, n_heads)``) so a T5 attention module that names it
    ``relative_attention_bias`` has the Hugging Face parameter name.
    """

    def __init__(self, num_buckets: int, n_heads: int, max_distance: int = 128, bidirectional: bool = True):
        super().__init__(num_buckets, n_heads)
        self.max_distance, self.bidirectional = max_distance, bidirectional

    def forward(self, q_len: int, k_len: int, offset: int = 0) -> torch.Tensor:  # type: ignore[override]
        """Bias for queries at positions ``offset .. offset+q_len-1`` over keys ``0 .. k_len-1``."""
        q_pos = torch.arange(offset, offset + q_len, device=self.weight.device)[:, None]
        k_pos = torch.arange(k_len, device=self.weight.device)[None, :]
        buckets = t5_relative_bucket(k_pos - q_pos, self.bidirectional, self.num_embeddings, self.max_distance)
        return super().forward(buckets).permute(2, 0, 1)[None]  # (Tq, Tk, H) -> (1, H, Tq, Tk)


def deberta_log_bucket(relative_pos: torch.Tensor, bucket_size: int, max_position: int) -> torch.Tensor:
    """DeBERTa-v2 log buckets: exact within ``±bucket_size/2``, log-spaced out to ``max_position``."""
    sign = torch.sign(relative_pos)
    mid = bucket_size // 2
    abs_pos = torch.where(
        (relative_pos < mid) & (relative_pos > -mid), torch.full_like(relative_pos, mid - 1), relative_pos.abs()
    )
    log_pos = torch.ceil(torch.log(abs_pos / mid) / math.log((max_position - 1) / mid) * (mid - 1)) + mid
    return torch.where(abs_pos <= mid, relative_pos.to(log_pos.dtype), log_pos * sign).long()


def deberta_relative_positions(
    q_len: int, k_len: int, bucket_size: int = -1, max_position: int = -1, device: torch.device | None = None
) -> torch.Tensor:
    """``query_pos - key_pos`` as ``(Tq, Tk)`` long, log-bucketed when ``bucket_size`` and ``max_position`` > 0."""
    rel = torch.arange(q_len, device=device)[:, None] - torch.arange(k_len, device=device)[None, :]
    if bucket_size > 0 and max_position > 0:
        rel = deberta_log_bucket(rel, bucket_size, max_position)
    return rel.long()


def disentangled_attention_bias(
    q: torch.Tensor,
    k: torch.Tensor,
    pos_key: torch.Tensor | None,
    pos_query: torch.Tensor | None,
    relative_pos: torch.Tensor,
    att_span: int,
    scale: float,
) -> torch.Tensor:
    """DeBERTa's position terms of the attention score, ``(B, H, Tq, Tk)``.

    Args:
        q, k: content queries/keys ``(B, H, T, D)``.
        pos_key: relative-position keys ``(1|B, H, 2*att_span, D)`` for content→position (c2p), or None.
        pos_query: relative-position queries ``(1|B, H, 2*att_span, D)`` for position→content (p2c), or None.
        relative_pos: ``(Tq, Tk)`` from :func:`deberta_relative_positions`.
        att_span: number of relative positions on each side.
        scale: divides each term (``sqrt(D * number_of_score_terms)``).

    c2p[i, j] = q_i · pos_key[δ(i, j)];  p2c[i, j] = k_j · pos_query[δ(i, j)], δ(i, j) = clamp(i - j + span).
    (The paper writes δ(j, i) in p2c; the released code, which checkpoints were trained with, uses δ(i, j).)
    """
    b, h, tq, _ = q.shape
    tk = k.shape[-2]
    score = torch.zeros((), dtype=q.dtype, device=q.device)
    if pos_key is not None:
        c2p = torch.matmul(q, pos_key.transpose(-1, -2))  # (B, H, Tq, 2*span)
        idx = (relative_pos + att_span).clamp(0, 2 * att_span - 1)
        score = score + torch.gather(c2p, -1, idx.expand(b, h, tq, tk)) / scale
    if pos_query is not None:
        p2c = torch.matmul(k, pos_query.transpose(-1, -2))  # (B, H, Tk, 2*span)
        # row j of p2c is key j; entry (j, i) reads position-query -rel[j, i] + span = i - j + span = δ(i, j)
        # (self-attention: Tq == Tk), then the transpose puts queries back on rows
        idx = (-relative_pos + att_span).clamp(0, 2 * att_span - 1)
        score = score + torch.gather(p2c, -1, idx.expand(b, h, tk, tq)).transpose(-1, -2) / scale
    return score

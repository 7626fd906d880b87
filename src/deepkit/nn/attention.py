"""Multi-head attention on ``F.scaled_dot_product_attention`` with a plain-math reference path, and a KV cache.

Conventions used by every Transformer in deepkit:

* tensors are ``(B, H, T, D)`` (batch, heads, positions, head size) inside attention;
* a *mask* is boolean and broadcastable to ``(B, H, Tq, Tk)``; ``True`` means "may attend";
* a *bias* is an additive float tensor broadcastable to ``(B, H, Tq, Tk)`` (T5 relative buckets, DeBERTa c2p/p2c);
* with a KV cache the queries are the *last* ``Tq`` of ``Tk`` positions, so the causal mask is aligned
  bottom-right (query ``i`` sees keys ``0 .. Tk - Tq + i``).

``impl="sdpa"`` lets PyTorch pick the flash / memory-efficient kernel when the inputs allow it;
``impl="math"`` is the textbook ``softmax(QKᵀ·scale + bias) V`` kept as the reference the tests compare against,
and the path that can return the attention weights (for attention maps).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from deepkit.errors import ConfigError, ShapeError
from deepkit.nn.layers import get_act

ATTENTION_IMPLS = ("sdpa", "math")


def padding_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """``(B, Tk)`` 1 = token / 0 = padding  →  boolean key mask ``(B, 1, 1, Tk)``."""
    if attention_mask.ndim != 2:
        raise ShapeError(f"attention_mask must be (batch, length), got shape {tuple(attention_mask.shape)}")
    return attention_mask.bool()[:, None, None, :]


def causal_mask(q_len: int, k_len: int, device: torch.device | None = None) -> torch.Tensor:
    """Boolean ``(1, 1, Tq, Tk)`` lower-triangular mask aligned bottom-right (queries are the last positions)."""
    q_pos = torch.arange(k_len - q_len, k_len, device=device)[:, None]
    k_pos = torch.arange(k_len, device=device)[None, :]
    return (k_pos <= q_pos)[None, None]


def combine_masks(*masks: torch.Tensor | None) -> torch.Tensor | None:
    """Logical AND of the boolean masks that are not None (broadcasting), or None."""
    out = None
    for m in masks:
        if m is not None:
            out = m if out is None else out & m
    return out


def scaled_dot_product(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    is_causal: bool = False,
    scale: float | None = None,
    dropout_p: float = 0.0,
    impl: str = "sdpa",
    return_weights: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Attention of ``q (B, H, Tq, D)`` over ``k, v (B, H, Tk, D)``.

    Args:
        mask: boolean, broadcastable to ``(B, H, Tq, Tk)``, True where attention is allowed.
        bias: additive float scores, broadcastable to ``(B, H, Tq, Tk)``.
        is_causal: add the bottom-right aligned causal mask.
        scale: multiplies ``QKᵀ``; default ``1/sqrt(D)`` (T5 passes 1.0).
        impl: ``"sdpa"`` (fused kernels) or ``"math"`` (reference; can return weights).
        return_weights: also return the ``(B, H, Tq, Tk)`` attention probabilities (forces ``"math"``).

    Returns:
        ``(out (B, H, Tq, Dv), weights or None)``.

    Example:
        >>> q = k = v = torch.randn(2, 4, 5, 8)
        >>> out, _ = scaled_dot_product(q, k, v, is_causal=True)
    """
    if impl not in ATTENTION_IMPLS:
        raise ConfigError(f"unknown attention impl '{impl}' (valid: {', '.join(ATTENTION_IMPLS)})")
    q_len, k_len = q.shape[-2], k.shape[-2]
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    if impl == "sdpa" and not return_weights and mask is None and bias is None and (not is_causal or q_len == k_len):
        # the fast path: no explicit mask lets PyTorch choose the flash kernel
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=is_causal, scale=scale)
        return out, None
    if is_causal:
        mask = combine_masks(mask, causal_mask(q_len, k_len, q.device))
    # masked scores get the most negative finite value, not -inf: a fully masked row (a padding query) then
    # gives uniform weights instead of NaN, which is what the Hugging Face reference does too
    additive = None
    if bias is not None:
        additive = bias.to(q.dtype)
    if mask is not None:
        fill = torch.zeros(mask.shape, dtype=q.dtype, device=q.device).masked_fill(~mask, torch.finfo(q.dtype).min)
        additive = fill if additive is None else (additive + fill).clamp_min(torch.finfo(q.dtype).min)
    if impl == "sdpa" and not return_weights:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=additive, dropout_p=dropout_p, scale=scale)
        return out, None
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale  # (B, H, Tq, Tk)
    if additive is not None:
        scores = scores + additive
    weights = torch.softmax(scores.float(), dim=-1).to(q.dtype)
    probs = F.dropout(weights, p=dropout_p) if dropout_p > 0 else weights
    return torch.matmul(probs, v), (weights if return_weights else None)


class KVCache:
    """Keys and values of the positions already processed, one entry per layer, for incremental decoding.

    Self-attention entries grow by the new positions at each step; cross-attention entries (the encoder's
    keys/values in an encoder–decoder) are computed once and reused.

    Example:
        >>> cache = KVCache()
        >>> logits = model(prompt_ids, cache=cache)          # fills the cache
        >>> logits = model(next_token_ids, cache=cache)      # only the new position is computed
    """

    def __init__(self) -> None:
        self.self_attn: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.cross_attn: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Add this step's ``k, v (B, H, T_new, D)`` for ``layer``; return all keys/values so far."""
        if layer in self.self_attn:
            k0, v0 = self.self_attn[layer]
            k, v = torch.cat([k0, k], dim=-2), torch.cat([v0, v], dim=-2)
        self.self_attn[layer] = (k, v)
        return k, v

    def seq_len(self) -> int:
        """Number of positions cached (0 when empty)."""
        if not self.self_attn:
            return 0
        return next(iter(self.self_attn.values()))[0].shape[-2]

    def reorder(self, index: torch.Tensor) -> None:
        """Keep batch rows ``index`` (beam search reorders hypotheses)."""
        for store in (self.self_attn, self.cross_attn):
            for layer, (k, v) in store.items():
                store[layer] = (k.index_select(0, index), v.index_select(0, index))


def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """``(B, T, H*D)`` → ``(B, H, T, D)``."""
    b, t, _ = x.shape
    return x.view(b, t, n_heads, -1).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """``(B, H, T, D)`` → ``(B, T, H*D)``."""
    b, _, t, _ = x.shape
    return x.transpose(1, 2).reshape(b, t, -1)


class MultiHeadAttention(nn.Module):
    """Multi-head attention (Vaswani et al. 2017): self- or cross-attention, masks, bias and KV cache.

    Args:
        dim: model width.
        n_heads: number of heads (``dim`` must divide evenly).
        bias: biases on the q/k/v/out projections.
        dropout: attention-probability dropout while training.
        impl: ``"sdpa"`` or ``"math"``.
    """

    def __init__(self, dim: int, n_heads: int, bias: bool = True, dropout: float = 0.0, impl: str = "sdpa"):
        super().__init__()
        if dim % n_heads:
            raise ConfigError(f"model width {dim} is not divisible by the number of heads {n_heads}")
        self.n_heads, self.dropout, self.impl = n_heads, dropout, impl
        self.q_proj = nn.Linear(dim, dim, bias=bias)
        self.k_proj = nn.Linear(dim, dim, bias=bias)
        self.v_proj = nn.Linear(dim, dim, bias=bias)
        self.out_proj = nn.Linear(dim, dim, bias=bias)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        bias: torch.Tensor | None = None,
        is_causal: bool = False,
        cache: KVCache | None = None,
        layer_idx: int = 0,
        return_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``x (B, Tq, C)`` attends over itself, or over ``context (B, Tk, C)`` (cross-attention).

        With ``cache``, self-attention appends this step's keys/values to the cache; cross-attention computes
        the context's keys/values once and reuses them.
        """
        q = split_heads(self.q_proj(x), self.n_heads)
        if context is None:
            k, v = split_heads(self.k_proj(x), self.n_heads), split_heads(self.v_proj(x), self.n_heads)
            if cache is not None:
                k, v = cache.append(layer_idx, k, v)
        elif cache is not None and layer_idx in cache.cross_attn:
            k, v = cache.cross_attn[layer_idx]
        else:
            k, v = split_heads(self.k_proj(context), self.n_heads), split_heads(self.v_proj(context), self.n_heads)
            if cache is not None:
                cache.cross_attn[layer_idx] = (k, v)
        out, weights = scaled_dot_product(
            q,
            k,
            v,
            mask=mask,
            bias=bias,
            is_causal=is_causal,
            dropout_p=self.dropout if self.training else 0.0,
            impl=self.impl,
            return_weights=return_weights,
        )
        return self.out_proj(merge_heads(out)), weights


class TransformerBlock(nn.Module):
    """Self-attention + feed-forward with residuals; ``norm_position`` "pre" (GPT-2) or "post" (BERT, 2017 paper).

    Pre-LN: ``x + f(LN(x))`` — trains stably without warm-up in deep stacks (Xiong et al. 2020).
    Post-LN: ``LN(x + f(x))`` — the original Transformer.
    With ``cross_attention=True`` a cross-attention sub-layer over ``context`` sits between the two (decoder).
    """

    def __init__(
        self,
        dim: int,
        n_heads: int,
        ffn_dim: int | None = None,
        act: str = "gelu",
        norm_position: str = "pre",
        dropout: float = 0.0,
        cross_attention: bool = False,
        layer_norm_eps: float = 1e-5,
        impl: str = "sdpa",
    ):
        super().__init__()
        if norm_position not in ("pre", "post"):
            raise ConfigError(f"norm_position must be 'pre' or 'post', got '{norm_position}'")
        self.norm_position = norm_position
        self.attn = MultiHeadAttention(dim, n_heads, dropout=dropout, impl=impl)
        self.norm1 = nn.LayerNorm(dim, eps=layer_norm_eps)
        self.cross_attn = MultiHeadAttention(dim, n_heads, dropout=dropout, impl=impl) if cross_attention else None
        self.norm_cross = nn.LayerNorm(dim, eps=layer_norm_eps) if cross_attention else None
        ffn_dim = ffn_dim or 4 * dim
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), get_act(act), nn.Dropout(dropout), nn.Linear(ffn_dim, dim))
        self.norm2 = nn.LayerNorm(dim, eps=layer_norm_eps)
        self.drop = nn.Dropout(dropout)

    def _sublayer(self, x: torch.Tensor, norm: nn.Module, fn) -> torch.Tensor:
        if self.norm_position == "pre":
            return x + self.drop(fn(norm(x)))
        return norm(x + self.drop(fn(x)))

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        is_causal: bool = False,
        context: torch.Tensor | None = None,
        context_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        layer_idx: int = 0,
    ) -> torch.Tensor:
        x = self._sublayer(
            x, self.norm1, lambda h: self.attn(h, mask=mask, is_causal=is_causal, cache=cache, layer_idx=layer_idx)[0]
        )
        if self.cross_attn is not None:
            if context is None:
                raise ShapeError("this block has cross-attention and needs a context (encoder output)")
            x = self._sublayer(
                x,
                self.norm_cross,
                lambda h: self.cross_attn(h, context=context, mask=context_mask, cache=cache, layer_idx=layer_idx)[0],
            )
        return self._sublayer(x, self.norm2, self.ffn)

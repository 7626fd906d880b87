"""GPT-2 (Radford et al. 2019): a decoder-only, pre-LayerNorm Transformer language model.

Parameter names equal Hugging Face's ``GPT2LMHeadModel`` (``transformer.h.0.attn.c_attn.weight``, ...), so its
checkpoints load as they are. As in the original TF checkpoint the projections are :class:`Conv1D` — a linear
layer whose weight is stored ``(in, out)``. The LM head reuses the token embedding (weight tying), so it has no
parameter of its own, exactly like the files ``save_pretrained`` writes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from deepkit.models.registry import register_model
from deepkit.models.token_model import TokenModel, check_head, hf_activation
from deepkit.nn.attention import KVCache, merge_heads, padding_mask, scaled_dot_product, split_heads


@dataclass
class GPT2Config:
    vocab_size: int = 50257
    n_positions: int = 1024  # context length
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    n_inner: int | None = None  # MLP width; None = 4 * n_embd
    activation_function: str = "gelu_new"
    resid_pdrop: float = 0.1
    embd_pdrop: float = 0.1
    attn_pdrop: float = 0.1
    layer_norm_epsilon: float = 1e-5
    scale_attn_weights: bool = True
    scale_attn_by_inverse_layer_idx: bool = False
    tie_word_embeddings: bool = True
    head: Literal["lm", "none"] = "lm"  # lm: GPT2LMHeadModel; none: GPT2Model (returns hidden states)
    attn_impl: Literal["sdpa", "math"] = "sdpa"


class Conv1D(nn.Module):
    """``y = x @ W + b`` with ``W`` of shape ``(in, out)`` — GPT-2's projection layout."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out).normal_(std=0.02))
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).view(*x.shape[:-1], -1)


class GPT2Attention(nn.Module):
    def __init__(self, cfg: GPT2Config, layer_idx: int):
        super().__init__()
        self.cfg, self.layer_idx = cfg, layer_idx
        self.c_attn = Conv1D(cfg.n_embd, 3 * cfg.n_embd)  # q, k, v in one matmul
        self.c_proj = Conv1D(cfg.n_embd, cfg.n_embd)
        self.resid_dropout = nn.Dropout(cfg.resid_pdrop)
        head_dim = cfg.n_embd // cfg.n_head
        self.scale = head_dim**-0.5 if cfg.scale_attn_weights else 1.0
        if cfg.scale_attn_by_inverse_layer_idx:
            self.scale /= layer_idx + 1

    def forward(self, x, mask, cache: KVCache | None, return_weights: bool = False):
        q, k, v = self.c_attn(x).split(self.cfg.n_embd, dim=-1)  # (B, T, C) each
        q, k, v = (split_heads(t, self.cfg.n_head) for t in (q, k, v))  # (B, H, T, D)
        if cache is not None:
            k, v = cache.append(self.layer_idx, k, v)
        out, weights = scaled_dot_product(
            q,
            k,
            v,
            mask=mask,
            is_causal=True,
            scale=self.scale,
            dropout_p=self.cfg.attn_pdrop if self.training else 0.0,
            impl=self.cfg.attn_impl,
            return_weights=return_weights,
        )
        return self.resid_dropout(self.c_proj(merge_heads(out))), weights


class GPT2MLP(nn.Module):
    def __init__(self, cfg: GPT2Config):
        super().__init__()
        inner = cfg.n_inner or 4 * cfg.n_embd
        self.c_fc = Conv1D(cfg.n_embd, inner)
        self.c_proj = Conv1D(inner, cfg.n_embd)
        self.act = hf_activation(cfg.activation_function)
        self.dropout = nn.Dropout(cfg.resid_pdrop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))


class GPT2Block(nn.Module):
    """Pre-LN block: ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))``."""

    def __init__(self, cfg: GPT2Config, layer_idx: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon)
        self.attn = GPT2Attention(cfg, layer_idx)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon)
        self.mlp = GPT2MLP(cfg)

    def forward(self, x, mask, cache, return_weights=False):
        a, weights = self.attn(self.ln_1(x), mask, cache, return_weights)
        x = x + a
        return x + self.mlp(self.ln_2(x)), weights


class GPT2Model(nn.Module):
    """Embeddings + blocks + final LayerNorm: ids ``(B, T)`` → hidden states ``(B, T, C)``."""

    def __init__(self, cfg: GPT2Config):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.n_positions, cfg.n_embd)
        self.drop = nn.Dropout(cfg.embd_pdrop)
        self.h = nn.ModuleList(GPT2Block(cfg, i) for i in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon)
        nn.init.normal_(self.wte.weight, std=0.02)
        nn.init.normal_(self.wpe.weight, std=0.01)
        for name, p in self.named_parameters():  # GPT-2's scaled init of residual projections
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * cfg.n_layer))

    def forward(self, input_ids, attention_mask=None, cache=None, position_ids=None, attentions=None):
        offset = cache.seq_len() if cache is not None else 0
        t = input_ids.shape[1]
        if position_ids is None:
            position_ids = torch.arange(offset, offset + t, device=input_ids.device)[None]
        x = self.drop(self.wte(input_ids) + self.wpe(position_ids))  # (B, T, C)
        # attention_mask covers every position seen so far (cached + new) when decoding with a cache
        mask = padding_mask(attention_mask) if attention_mask is not None else None
        for block in self.h:
            x, w = block(x, mask, cache, attentions is not None)
            if attentions is not None:
                attentions.append(w)
        return self.ln_f(x)


@register_model("gpt2", GPT2Config, description="GPT-2 small (124M): decoder-only pre-LN Transformer LM")
class GPT2(TokenModel):
    """GPT-2 language model; ``forward(input_ids)`` returns next-token logits ``(B, T, vocab_size)``.

    Example:
        >>> model = create_model("gpt2", n_layer=2, n_embd=64, n_head=2)
        >>> cache = KVCache()
        >>> logits = model(prompt_ids, cache=cache)          # (B, T, V), fills the cache
        >>> logits = model(next_ids, cache=cache)            # one new position per step
    """

    hf_model_type = "gpt2"
    base_prefix = "transformer"
    hf_architectures = {"lm": "GPT2LMHeadModel", "none": "GPT2Model"}

    def __init__(self, cfg: GPT2Config):
        super().__init__()
        check_head(cfg.head, GPT2)
        self.cfg = cfg
        self.transformer = GPT2Model(cfg)
        if cfg.head == "lm" and not cfg.tie_word_embeddings:
            self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
            nn.init.normal_(self.lm_head.weight, std=0.02)

    @property
    def context_length(self) -> int:
        return self.cfg.n_positions

    def forward_features(self, input_ids, attention_mask=None, cache=None, position_ids=None, attentions=None):
        """Final hidden states ``(B, T, n_embd)``; ``attentions`` (a list) collects per-layer weights if given."""
        self.check_ids(input_ids, self.cfg.n_positions, cache.seq_len() if cache is not None else 0)
        return self.transformer(input_ids, attention_mask, cache, position_ids, attentions)

    def forward_head(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.cfg.head == "none":
            return hidden
        weight = self.lm_head.weight if hasattr(self, "lm_head") else self.transformer.wte.weight
        return F.linear(hidden, weight)  # (B, T, V)

    def forward(self, input_ids, attention_mask=None, cache=None, position_ids=None):
        return self.forward_head(self.forward_features(input_ids, attention_mask, cache, position_ids))


register_model("gpt2-medium", GPT2Config, description="GPT-2 medium (355M)", n_layer=24, n_embd=1024, n_head=16)(GPT2)
register_model("gpt2-large", GPT2Config, description="GPT-2 large (774M)", n_layer=36, n_embd=1280, n_head=20)(GPT2)
register_model("gpt2-xl", GPT2Config, description="GPT-2 XL (1.5B)", n_layer=48, n_embd=1600, n_head=25)(GPT2)

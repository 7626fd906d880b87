"""T5 (Raffel et al. 2020): an encoder–decoder Transformer that casts every task as text-to-text.

Pre-LayerNorm blocks with RMS norms and no biases; no absolute positions — each stack's first layer learns a
scalar per (relative-distance bucket, head) that is added to the attention scores of every layer
(:class:`deepkit.nn.positional.RelativePositionBias`); attention scores are not scaled by ``1/sqrt(d)``
(the initialisation absorbs it). With tied embeddings the decoder output is scaled by ``d_model**-0.5`` before
the LM head. Parameter names equal Hugging Face's ``T5ForConditionalGeneration``
(``encoder.block.0.layer.0.SelfAttention.q.weight``, ...); ``feed_forward_proj="gated-gelu"`` gives T5 v1.1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from deepkit.errors import ConfigError, ShapeError
from deepkit.models.base import example_generator, random_ids
from deepkit.models.generation import encoder_decoder_beam
from deepkit.models.registry import register_model
from deepkit.models.token_model import TokenModel, check_head, hf_activation
from deepkit.nn.attention import KVCache, merge_heads, padding_mask, scaled_dot_product, split_heads
from deepkit.nn.positional import RelativePositionBias


@dataclass
class T5Config:
    vocab_size: int = 32128
    d_model: int = 768
    d_kv: int = 64  # size of each head
    d_ff: int = 3072
    num_layers: int = 12
    num_decoder_layers: int | None = None  # None: num_layers
    num_heads: int = 12
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    dropout_rate: float = 0.1
    layer_norm_epsilon: float = 1e-6
    feed_forward_proj: str = "relu"  # "relu" (T5), "gated-gelu" (T5 v1.1), "gated-silu", ...
    tie_word_embeddings: bool = True
    # scale the decoder output by d_model**-0.5 before the LM head (original T5); None: only when tied.
    # transformers 5 writes it explicitly (T5 v1.1: tied embeddings in its files, no scaling)
    scale_decoder_outputs: bool | None = None
    pad_token_id: int = 0
    eos_token_id: int = 1
    decoder_start_token_id: int = 0
    head: Literal["lm"] = "lm"
    attn_impl: Literal["sdpa", "math"] = "sdpa"


class T5Attention(nn.Module):
    """Multi-head attention without biases; the first layer of each stack owns the relative-position bias."""

    def __init__(self, cfg: T5Config, has_relative_attention_bias: bool, bidirectional: bool, layer_idx: int):
        super().__init__()
        self.cfg, self.layer_idx = cfg, layer_idx
        inner = cfg.num_heads * cfg.d_kv
        self.q = nn.Linear(cfg.d_model, inner, bias=False)
        self.k = nn.Linear(cfg.d_model, inner, bias=False)
        self.v = nn.Linear(cfg.d_model, inner, bias=False)
        self.o = nn.Linear(inner, cfg.d_model, bias=False)
        if has_relative_attention_bias:
            self.relative_attention_bias = RelativePositionBias(
                cfg.relative_attention_num_buckets, cfg.num_heads, cfg.relative_attention_max_distance, bidirectional
            )

    def forward(self, x, context=None, mask=None, bias=None, is_causal=False, cache=None, return_weights=False):
        h = self.cfg.num_heads
        q = split_heads(self.q(x), h)  # (B, H, Tq, D)
        if context is None:  # self-attention
            k, v = split_heads(self.k(x), h), split_heads(self.v(x), h)
            if cache is not None:
                k, v = cache.append(self.layer_idx, k, v)
        elif cache is not None and self.layer_idx in cache.cross_attn:
            k, v = cache.cross_attn[self.layer_idx]  # the encoder's keys/values, computed at the first step
        else:
            k, v = split_heads(self.k(context), h), split_heads(self.v(context), h)
            if cache is not None:
                cache.cross_attn[self.layer_idx] = (k, v)
        out, weights = scaled_dot_product(
            q,
            k,
            v,
            mask=mask,
            bias=bias,
            is_causal=is_causal,
            scale=1.0,  # T5 does not scale scores
            dropout_p=self.cfg.dropout_rate if self.training else 0.0,
            impl=self.cfg.attn_impl,
            return_weights=return_weights,
        )
        return self.o(merge_heads(out)), weights


class T5LayerSelfAttention(nn.Module):
    def __init__(self, cfg: T5Config, has_bias: bool, bidirectional: bool, layer_idx: int):
        super().__init__()
        self.SelfAttention = T5Attention(cfg, has_bias, bidirectional, layer_idx)
        self.layer_norm = nn.RMSNorm(cfg.d_model, eps=cfg.layer_norm_epsilon)
        self.dropout = nn.Dropout(cfg.dropout_rate)

    def forward(self, x, mask, bias, is_causal, cache, return_weights=False):
        a, w = self.SelfAttention(
            self.layer_norm(x), mask=mask, bias=bias, is_causal=is_causal, cache=cache, return_weights=return_weights
        )
        return x + self.dropout(a), w


class T5LayerCrossAttention(nn.Module):
    def __init__(self, cfg: T5Config, layer_idx: int):
        super().__init__()
        self.EncDecAttention = T5Attention(cfg, False, True, layer_idx)
        self.layer_norm = nn.RMSNorm(cfg.d_model, eps=cfg.layer_norm_epsilon)
        self.dropout = nn.Dropout(cfg.dropout_rate)

    def forward(self, x, context, mask, cache, return_weights=False):
        a, w = self.EncDecAttention(
            self.layer_norm(x), context=context, mask=mask, cache=cache, return_weights=return_weights
        )
        return x + self.dropout(a), w


class T5DenseReluDense(nn.Module):
    """``wo(act(wi x))``, or the gated ``wo(act(wi_0 x) * wi_1 x)`` of T5 v1.1."""

    def __init__(self, cfg: T5Config):
        super().__init__()
        parts = cfg.feed_forward_proj.split("-")
        if len(parts) > 2 or (len(parts) == 2 and parts[0] != "gated"):
            raise ConfigError(f"feed_forward_proj must be 'ACT' or 'gated-ACT', got '{cfg.feed_forward_proj}'")
        self.gated = len(parts) == 2
        act = "gelu_new" if cfg.feed_forward_proj == "gated-gelu" else parts[-1]  # HF's historical choice
        if self.gated:
            self.wi_0 = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
            self.wi_1 = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        else:
            self.wi = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.wo = nn.Linear(cfg.d_ff, cfg.d_model, bias=False)
        self.act = hf_activation(act)
        self.dropout = nn.Dropout(cfg.dropout_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.wi_0(x)) * self.wi_1(x) if self.gated else self.act(self.wi(x))
        return self.wo(self.dropout(h))


class T5LayerFF(nn.Module):
    def __init__(self, cfg: T5Config):
        super().__init__()
        self.DenseReluDense = T5DenseReluDense(cfg)
        self.layer_norm = nn.RMSNorm(cfg.d_model, eps=cfg.layer_norm_epsilon)
        self.dropout = nn.Dropout(cfg.dropout_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.dropout(self.DenseReluDense(self.layer_norm(x)))


class T5Block(nn.Module):
    def __init__(self, cfg: T5Config, is_decoder: bool, layer_idx: int):
        super().__init__()
        self.is_decoder = is_decoder
        layers: list[nn.Module] = [T5LayerSelfAttention(cfg, layer_idx == 0, not is_decoder, layer_idx)]
        if is_decoder:
            layers.append(T5LayerCrossAttention(cfg, layer_idx))
        layers.append(T5LayerFF(cfg))
        self.layer = nn.ModuleList(layers)

    def forward(self, x, mask, bias, context=None, context_mask=None, cache=None, attentions=None):
        want = attentions is not None
        x, w = self.layer[0](x, mask, bias, self.is_decoder, cache, want)
        if want:
            attentions.append(w)
        if self.is_decoder:
            x, w = self.layer[1](x, context, context_mask, cache, want)
            if want:
                attentions.append(w)
        return self.layer[-1](x)


class T5Stack(nn.Module):
    """Encoder (bidirectional) or decoder (causal + cross-attention) stack over the shared embedding."""

    def __init__(self, cfg: T5Config, is_decoder: bool, n_layers: int):
        super().__init__()
        self.is_decoder = is_decoder
        self.block = nn.ModuleList(T5Block(cfg, is_decoder, i) for i in range(n_layers))
        self.final_layer_norm = nn.RMSNorm(cfg.d_model, eps=cfg.layer_norm_epsilon)
        self.dropout = nn.Dropout(cfg.dropout_rate)

    def forward(self, x, attention_mask=None, context=None, context_mask=None, cache=None, attentions=None):
        t = x.shape[1]
        offset = cache.seq_len() if cache is not None else 0
        # the relative-position bias of layer 0 is shared by every layer of the stack: (1, H, Tq, Tk)
        bias = self.block[0].layer[0].SelfAttention.relative_attention_bias(t, offset + t, offset)
        mask = padding_mask(attention_mask) if attention_mask is not None else None
        cmask = padding_mask(context_mask) if context_mask is not None else None
        x = self.dropout(x)
        for block in self.block:
            x = block(x, mask, bias, context, cmask, cache, attentions)
        return self.dropout(self.final_layer_norm(x))


@register_model("t5", T5Config, description="T5-base (220M): encoder–decoder with relative position buckets")
class T5(TokenModel):
    """T5 encoder–decoder; ``forward(input_ids, decoder_input_ids)`` returns logits ``(B, T_dec, vocab_size)``.

    Example:
        >>> model = create_model("t5-small")
        >>> memory = model.encode(src_ids, src_mask)
        >>> cache = KVCache()
        >>> logits = model(src_ids, start_ids, attention_mask=src_mask, encoder_out=memory, cache=cache)
    """

    hf_model_type = "t5"
    base_prefix = ""
    hf_architectures = {"lm": "T5ForConditionalGeneration"}

    def __init__(self, cfg: T5Config):
        super().__init__()
        check_head(cfg.head, T5)
        self.cfg = cfg
        self.shared = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.encoder = T5Stack(cfg, False, cfg.num_layers)
        self.decoder = T5Stack(cfg, True, cfg.num_decoder_layers or cfg.num_layers)
        if not cfg.tie_word_embeddings:
            self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self._init_weights()

    def _init_weights(self) -> None:
        """Mesh-TensorFlow's initialisation, which replaces the missing ``1/sqrt(d)`` attention scaling."""
        c = self.cfg
        nn.init.normal_(self.shared.weight, std=1.0)
        for m in self.modules():
            if isinstance(m, T5Attention):
                nn.init.normal_(m.q.weight, std=(c.d_model * c.d_kv) ** -0.5)
                for lin in (m.k, m.v):
                    nn.init.normal_(lin.weight, std=c.d_model**-0.5)
                nn.init.normal_(m.o.weight, std=(c.num_heads * c.d_kv) ** -0.5)
                if hasattr(m, "relative_attention_bias"):
                    nn.init.normal_(m.relative_attention_bias.weight, std=c.d_model**-0.5)
            elif isinstance(m, T5DenseReluDense):
                for name in ("wi", "wi_0", "wi_1"):
                    if hasattr(m, name):
                        nn.init.normal_(getattr(m, name).weight, std=c.d_model**-0.5)
                nn.init.normal_(m.wo.weight, std=c.d_ff**-0.5)
        if hasattr(self, "lm_head"):
            nn.init.normal_(self.lm_head.weight, std=1.0)

    def example_input(self, batch_size: int = 2, seq_len: int = 8) -> dict[str, torch.Tensor]:
        """The encoder's ``input_ids``/``attention_mask`` and ``decoder_input_ids`` of half the length."""
        inputs = super().example_input(batch_size, seq_len)
        dec = random_ids(example_generator(1), self.cfg.vocab_size, (batch_size, max(1, seq_len // 2)))
        inputs["decoder_input_ids"] = dec.to(inputs["input_ids"].device)
        return inputs

    def shift_right(self, labels: torch.Tensor) -> torch.Tensor:
        """Decoder inputs for teacher forcing: ``decoder_start_token_id`` then the labels minus the last one."""
        start = torch.full_like(labels[:, :1], self.cfg.decoder_start_token_id)
        shifted = torch.cat([start, labels[:, :-1]], dim=1)
        return shifted.masked_fill(shifted == -100, self.cfg.pad_token_id)  # -100 = ignored label

    def encode(self, input_ids, attention_mask=None, attentions=None) -> torch.Tensor:
        """Encoder hidden states ``(B, T_src, d_model)``."""
        self.check_ids(input_ids)
        return self.encoder(self.shared(input_ids), attention_mask, attentions=attentions)

    def decode(
        self,
        decoder_input_ids,
        encoder_out,
        attention_mask=None,
        decoder_attention_mask=None,
        cache=None,
        attentions=None,
    ) -> torch.Tensor:
        """Decoder hidden states ``(B, T_dec, d_model)``; ``attention_mask`` is the encoder's padding mask.

        With ``cache`` only the new decoder positions are computed; ``decoder_attention_mask`` (if given) must cover
        the cached positions too.
        """
        self.check_ids(decoder_input_ids)
        if encoder_out.shape[0] != decoder_input_ids.shape[0]:
            raise ShapeError(
                f"encoder output has batch {encoder_out.shape[0]} but decoder_input_ids batch "
                f"{decoder_input_ids.shape[0]}"
            )
        return self.decoder(
            self.shared(decoder_input_ids), decoder_attention_mask, encoder_out, attention_mask, cache, attentions
        )

    def forward_head(self, hidden: torch.Tensor) -> torch.Tensor:
        scale = self.cfg.scale_decoder_outputs
        if scale if scale is not None else self.cfg.tie_word_embeddings:
            hidden = hidden * self.cfg.d_model**-0.5
        if self.cfg.tie_word_embeddings:
            return F.linear(hidden, self.shared.weight)  # (B, T, V)
        return self.lm_head(hidden)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_out: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """Logits ``(B, T_dec, V)``. Pass ``encoder_out`` to reuse an encoding (generation), else ``input_ids``."""
        if decoder_input_ids is None:
            raise ShapeError("T5 needs decoder_input_ids (use model.shift_right(labels) for teacher forcing)")
        if encoder_out is None:
            if input_ids is None:
                raise ShapeError("T5 needs input_ids or a precomputed encoder_out")
            encoder_out = self.encode(input_ids, attention_mask)
        hidden = self.decode(decoder_input_ids, encoder_out, attention_mask, decoder_attention_mask, cache)
        return self.forward_head(hidden)

    # --- decoding (text-to-text evaluation) ------------------------------------------------------------------------
    def _source_mask(self, input_ids: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        if lengths is None:
            return (input_ids != self.cfg.pad_token_id).long()
        return (
            torch.arange(input_ids.shape[1], device=input_ids.device)[None] < lengths.to(input_ids.device)[:, None]
        ).long()

    @torch.no_grad()
    def greedy_decode(
        self, input_ids: torch.Tensor, lengths: torch.Tensor | None = None, max_len: int = 50
    ) -> list[list[int]]:
        """Greedy decoding of a batch ``(B, S)``; returns the generated ids of each row, without the start
        token and ``<eos>``. ``lengths`` (B,) marks padding (default: every ``pad_token_id``)."""
        mask = self._source_mask(input_ids, lengths)
        enc = self.encode(input_ids, mask)
        cache = KVCache()
        b = input_ids.shape[0]
        cur = torch.full((b, 1), self.cfg.decoder_start_token_id, dtype=torch.long, device=input_ids.device)
        done = torch.zeros(b, dtype=torch.bool, device=input_ids.device)
        steps = []
        for _ in range(max_len):
            nxt = self(decoder_input_ids=cur, attention_mask=mask, encoder_out=enc, cache=cache)[:, -1].argmax(-1)
            nxt = nxt.masked_fill(done, self.cfg.pad_token_id)
            steps.append(nxt)
            done |= nxt == self.cfg.eos_token_id
            if bool(done.all()):
                break
            cur = nxt[:, None]
        out = torch.stack(steps, 1).tolist() if steps else [[] for _ in range(b)]
        return [_until_eos(row, self.cfg.eos_token_id) for row in out]

    @torch.no_grad()
    def beam_search(
        self,
        input_ids: torch.Tensor,
        lengths: torch.Tensor | None = None,
        beam_size: int = 5,
        max_len: int = 50,
        length_penalty: float = 1.0,
    ) -> list[list[int]]:
        """Beam search, one source at a time; hypotheses ranked by log-prob / length**length_penalty."""
        mask = self._source_mask(input_ids, lengths)
        return [
            self._beam_one(input_ids[i : i + 1, : int(mask[i].sum())], beam_size, max_len, length_penalty)
            for i in range(input_ids.shape[0])
        ]

    def _beam_one(self, src: torch.Tensor, k: int, max_len: int, alpha: float) -> list[int]:
        enc = self.encode(src)
        cache = KVCache()

        def step(y: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
            if keep is not None:
                cache.reorder(keep)
            out = self(decoder_input_ids=y[:, None], encoder_out=enc.expand(len(y), -1, -1), cache=cache)
            return out[:, -1].log_softmax(-1)

        cfg = self.cfg
        return encoder_decoder_beam(step, cfg.decoder_start_token_id, cfg.eos_token_id, k, max_len, alpha, src.device)


def _until_eos(ids: list[int], eos: int) -> list[int]:
    return ids[: ids.index(eos)] if eos in ids else ids


register_model("t5-small", T5Config, description="T5-small (60M)", d_model=512, d_ff=2048, num_layers=6, num_heads=8)(
    T5
)
register_model(
    "t5-large", T5Config, description="T5-large (770M)", d_model=1024, d_ff=4096, num_layers=24, num_heads=16
)(T5)

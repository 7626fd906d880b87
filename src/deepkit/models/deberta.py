"""DeBERTa-v2 / v3 (He et al. 2021, 2023): BERT-style encoder with disentangled attention.

Each token has a content vector and, separately, relative-position embeddings shared by all layers; the
attention score adds content→position (c2p) and position→content (p2c) terms to content→content
(:func:`deepkit.nn.positional.disentangled_attention_bias`). v2 adds log-bucketed relative positions, a
LayerNorm on the relative embeddings, shared q/k projections for positions and (xlarge) a convolution after the
first layer; v3 is the v2 architecture pretrained ELECTRA-style. Parameter names equal Hugging Face's
``DebertaV2*`` classes (``deberta.encoder.layer.0.attention.self.query_proj.weight``, ...).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from deepkit.errors import ConfigError
from deepkit.models.bert import BertIntermediate, BertSelfOutput, head_modules, init_bert_weights, token_head
from deepkit.models.registry import register_model
from deepkit.models.token_model import TokenModel, check_head, hf_activation
from deepkit.nn.attention import merge_heads, scaled_dot_product, split_heads
from deepkit.nn.positional import deberta_relative_positions, disentangled_attention_bias


@dataclass
class DebertaConfig:
    vocab_size: int = 128100
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 0
    layer_norm_eps: float = 1e-7
    pad_token_id: int = 0
    embedding_size: int | None = None  # None: hidden_size; otherwise embeddings are projected up
    position_biased_input: bool = False  # also add absolute position embeddings (DeBERTa v1 style)
    relative_attention: bool = True
    max_relative_positions: int = -1  # -1: max_position_embeddings
    position_buckets: int = 256  # log buckets of relative distance; -1: none (v1 style)
    pos_att_type: list[str] = field(default_factory=lambda: ["p2c", "c2p"])
    share_att_key: bool = True  # position keys/queries reuse the content key/query projections
    norm_rel_ebd: str = "layer_norm"  # "layer_norm" or "none"
    conv_kernel_size: int = 0  # > 0: the xlarge models' convolution after the first layer
    conv_act: str = "tanh"
    conv_groups: int = 1
    pooler_hidden_act: str = "gelu"
    pooler_dropout: float = 0.0
    cls_dropout: float | None = None  # classifier dropout; None: hidden_dropout_prob
    legacy: bool = True  # MLM head layout: True = HF's cls.predictions, False = lm_predictions.lm_head
    num_classes: int = 2
    head: Literal["mlm", "classification", "token_classification", "question_answering", "none"] = "mlm"
    attn_impl: Literal["sdpa", "math"] = "sdpa"

    @property
    def max_relative(self) -> int:
        """Largest relative distance modelled (``max_relative_positions``, or the absolute context if unset)."""
        return self.max_relative_positions if self.max_relative_positions > 0 else self.max_position_embeddings

    @property
    def att_span(self) -> int:
        """Relative positions on each side that get their own embedding."""
        return self.position_buckets if self.position_buckets > 0 else self.max_relative


class DebertaEmbeddings(nn.Module):
    def __init__(self, cfg: DebertaConfig):
        super().__init__()
        emb = cfg.embedding_size or cfg.hidden_size
        self.word_embeddings = nn.Embedding(cfg.vocab_size, emb, padding_idx=cfg.pad_token_id)
        if cfg.position_biased_input:
            self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, emb)
        if cfg.type_vocab_size > 0:
            self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, emb)
        if emb != cfg.hidden_size:
            self.embed_proj = nn.Linear(emb, cfg.hidden_size, bias=False)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, input_ids, token_type_ids, keep):
        x = self.word_embeddings(input_ids)
        if hasattr(self, "position_embeddings"):
            x = x + self.position_embeddings(torch.arange(input_ids.shape[1], device=input_ids.device))[None]
        if hasattr(self, "token_type_embeddings"):
            tt = token_type_ids if token_type_ids is not None else torch.zeros_like(input_ids)
            x = x + self.token_type_embeddings(tt)
        if hasattr(self, "embed_proj"):
            x = self.embed_proj(x)
        x = self.LayerNorm(x) * keep[..., None].to(x.dtype)  # padding positions start at zero
        return self.dropout(x)


class DisentangledSelfAttention(nn.Module):
    def __init__(self, cfg: DebertaConfig):
        super().__init__()
        self.cfg = cfg
        h = cfg.hidden_size
        self.query_proj, self.key_proj, self.value_proj = nn.Linear(h, h), nn.Linear(h, h), nn.Linear(h, h)
        self.types = set(cfg.pos_att_type) if cfg.relative_attention else set()
        if cfg.relative_attention and not cfg.share_att_key:
            if "c2p" in self.types:
                self.pos_key_proj = nn.Linear(h, h)
            if "p2c" in self.types:
                self.pos_query_proj = nn.Linear(h, h)
        self.pos_dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, x, mask, rel_embeddings, relative_pos, return_weights=False):
        n_heads = self.cfg.num_attention_heads
        q, k, v = (split_heads(f(x), n_heads) for f in (self.query_proj, self.key_proj, self.value_proj))
        head_dim = q.shape[-1]
        # every score term (c2p, p2c, c2c) is divided by sqrt(head_dim * number_of_terms)
        scale = math.sqrt(head_dim * (1 + len(self.types & {"c2p", "p2c"})))
        bias = None
        if self.cfg.relative_attention:
            rel = self.pos_dropout(rel_embeddings)[None]  # (1, 2*span, C)
            if self.cfg.share_att_key:
                pos_key = split_heads(self.key_proj(rel), n_heads) if "c2p" in self.types else None
                pos_query = split_heads(self.query_proj(rel), n_heads) if "p2c" in self.types else None
            else:
                pos_key = split_heads(self.pos_key_proj(rel), n_heads) if "c2p" in self.types else None
                pos_query = split_heads(self.pos_query_proj(rel), n_heads) if "p2c" in self.types else None
            bias = disentangled_attention_bias(q, k, pos_key, pos_query, relative_pos, self.cfg.att_span, scale)
        out, weights = scaled_dot_product(
            q,
            k,
            v,
            mask=mask,
            bias=bias,
            scale=1.0 / scale,
            dropout_p=self.cfg.attention_probs_dropout_prob if self.training else 0.0,
            impl=self.cfg.attn_impl,
            return_weights=return_weights,
        )
        return merge_heads(out), weights


class DebertaAttention(nn.Module):
    def __init__(self, cfg: DebertaConfig):
        super().__init__()
        self.self = DisentangledSelfAttention(cfg)
        self.output = BertSelfOutput(cfg, cfg.hidden_size)

    def forward(self, x, mask, rel_embeddings, relative_pos, return_weights=False):
        h, w = self.self(x, mask, rel_embeddings, relative_pos, return_weights)
        return self.output(h, x), w


class DebertaLayer(nn.Module):
    def __init__(self, cfg: DebertaConfig):
        super().__init__()
        self.attention = DebertaAttention(cfg)
        self.intermediate = BertIntermediate(cfg)
        self.output = BertSelfOutput(cfg, cfg.intermediate_size)

    def forward(self, x, mask, rel_embeddings, relative_pos, return_weights=False):
        x, w = self.attention(x, mask, rel_embeddings, relative_pos, return_weights)
        return self.output(self.intermediate(x), x), w


class ConvLayer(nn.Module):
    """DeBERTa-v2-xlarge's n-gram convolution over the embeddings, merged into the first layer's output."""

    def __init__(self, cfg: DebertaConfig):
        super().__init__()
        k = cfg.conv_kernel_size
        self.conv = nn.Conv1d(cfg.hidden_size, cfg.hidden_size, k, padding=(k - 1) // 2, groups=cfg.conv_groups)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)
        self.act = hf_activation(cfg.conv_act)

    def forward(self, embeddings, layer_out, keep):
        out = self.conv(embeddings.transpose(1, 2)).transpose(1, 2)  # (B, T, C)
        out = self.act(self.dropout(out * keep[..., None]))
        return self.LayerNorm(layer_out + out) * keep[..., None]


class DebertaEncoder(nn.Module):
    def __init__(self, cfg: DebertaConfig):
        super().__init__()
        self.cfg = cfg
        self.layer = nn.ModuleList(DebertaLayer(cfg) for _ in range(cfg.num_hidden_layers))
        if cfg.relative_attention:
            self.rel_embeddings = nn.Embedding(2 * cfg.att_span, cfg.hidden_size)
        if "layer_norm" in cfg.norm_rel_ebd:
            self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        if cfg.conv_kernel_size > 0:
            self.conv = ConvLayer(cfg)

    def forward(self, x, keep, attentions=None):
        cfg = self.cfg
        # DeBERTa masks both directions: padding queries and padding keys
        mask = (keep[:, None, :, None] & keep[:, None, None, :]).bool()  # (B, 1, T, T)
        rel_embeddings = relative_pos = None
        if cfg.relative_attention:
            rel_embeddings = self.rel_embeddings.weight
            if hasattr(self, "LayerNorm"):
                rel_embeddings = self.LayerNorm(rel_embeddings)
            t = x.shape[1]
            relative_pos = deberta_relative_positions(t, t, cfg.position_buckets, cfg.max_relative, x.device)
        embeddings = x
        for i, layer in enumerate(self.layer):
            x, w = layer(x, mask, rel_embeddings, relative_pos, attentions is not None)
            if i == 0 and hasattr(self, "conv"):
                x = self.conv(embeddings, x, keep.to(x.dtype))
            if attentions is not None:
                attentions.append(w)
        return x


class DebertaModel(nn.Module):
    def __init__(self, cfg: DebertaConfig):
        super().__init__()
        self.embeddings = DebertaEmbeddings(cfg)
        self.encoder = DebertaEncoder(cfg)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, attentions=None):
        keep = attention_mask.bool() if attention_mask is not None else torch.ones_like(input_ids, dtype=torch.bool)
        return self.encoder(self.embeddings(input_ids, token_type_ids, keep), keep, attentions)


class DebertaMLMHead(nn.Module):
    """dense → act → LayerNorm → logits against the tied word embeddings + bias (both HF layouts)."""

    def __init__(self, cfg: DebertaConfig, out_dim: int):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, out_dim)
        self.act = hf_activation(cfg.hidden_act)
        self.LayerNorm = nn.LayerNorm(out_dim, eps=cfg.layer_norm_eps)

    def forward(self, hidden, word_embeddings, bias):
        return F.linear(self.LayerNorm(self.act(self.dense(hidden))), word_embeddings, bias)


class ContextPooler(nn.Module):
    def __init__(self, cfg: DebertaConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.dropout = nn.Dropout(cfg.pooler_dropout)
        self.act = hf_activation(cfg.pooler_hidden_act)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(self.dropout(hidden[:, 0])))


@register_model("deberta", DebertaConfig, description="DeBERTa-v3-base (184M): disentangled-attention encoder, MLM")
class Deberta(TokenModel):
    """DeBERTa-v2/v3 with an MLM head (``"mlm"``), a sequence classifier (``"classification"``) or none."""

    hf_model_type = "deberta-v2"
    base_prefix = "deberta"
    hf_architectures = {
        "mlm": "DebertaV2ForMaskedLM",
        "classification": "DebertaV2ForSequenceClassification",
        "token_classification": "DebertaV2ForTokenClassification",
        "question_answering": "DebertaV2ForQuestionAnswering",
        "none": "DebertaV2Model",
    }

    def __init__(self, cfg: DebertaConfig):
        super().__init__()
        check_head(cfg.head, Deberta)
        for t in cfg.pos_att_type:
            if t not in ("c2p", "p2c"):
                raise ConfigError(f"pos_att_type entries must be 'c2p' or 'p2c', got '{t}'")
        if cfg.hidden_size % cfg.num_attention_heads:
            raise ConfigError(f"hidden_size {cfg.hidden_size} is not divisible by {cfg.num_attention_heads} heads")
        self.cfg = cfg
        self.deberta = DebertaModel(cfg)
        self.build_head(cfg)
        init_bert_weights(self)

    def build_head(self, cfg: DebertaConfig) -> None:
        emb = cfg.embedding_size or cfg.hidden_size
        if cfg.head == "mlm" and cfg.legacy:
            self.cls = nn.Module()
            self.cls.predictions = nn.Module()
            self.cls.predictions.transform = DebertaMLMHead(cfg, emb)
            self.cls.predictions.bias = nn.Parameter(torch.zeros(cfg.vocab_size))
        elif cfg.head == "mlm":
            if emb != cfg.hidden_size:
                raise ConfigError("the non-legacy DeBERTa MLM head needs embedding_size == hidden_size")
            self.lm_predictions = nn.Module()
            self.lm_predictions.lm_head = DebertaMLMHead(cfg, emb)
            self.lm_predictions.lm_head.bias = nn.Parameter(torch.zeros(cfg.vocab_size))
        elif cfg.head == "classification":
            self.pooler = ContextPooler(cfg)
            self.classifier = nn.Linear(cfg.hidden_size, cfg.num_classes)
            self.dropout = nn.Dropout(cfg.cls_dropout if cfg.cls_dropout is not None else cfg.hidden_dropout_prob)
        elif cfg.head == "token_classification":
            self.dropout = nn.Dropout(cfg.hidden_dropout_prob)
            self.classifier = nn.Linear(cfg.hidden_size, cfg.num_classes)
        elif cfg.head == "question_answering":
            self.qa_outputs = nn.Linear(cfg.hidden_size, 2)

    @property
    def context_length(self) -> int:
        # relative attention has no absolute-position table; HF still documents max_position_embeddings
        return self.cfg.max_position_embeddings if self.cfg.position_biased_input else 1 << 30

    def forward_features(self, input_ids, attention_mask=None, token_type_ids=None, attentions=None):
        """Last hidden states ``(B, T, hidden_size)``; ``attentions`` (a list) collects per-layer weights."""
        self.check_ids(input_ids, self.context_length)
        return self.deberta(input_ids, attention_mask, token_type_ids, attentions)

    def forward_head(self, hidden: torch.Tensor) -> torch.Tensor:
        words = self.deberta.embeddings.word_embeddings.weight
        if self.cfg.head == "mlm" and self.cfg.legacy:
            return self.cls.predictions.transform(hidden, words, self.cls.predictions.bias)
        if self.cfg.head == "mlm":
            head = self.lm_predictions.lm_head
            return head(hidden, words, head.bias)
        if self.cfg.head == "classification":
            return self.classifier(self.dropout(self.pooler(hidden)))
        return token_head(self, hidden)

    def get_classifier(self) -> nn.Module:
        return head_modules(self, [])

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        return self.forward_head(self.forward_features(input_ids, attention_mask, token_type_ids))

    def reset_classifier(self, num_classes: int) -> None:
        self.cfg.num_classes, self.cfg.head = num_classes, "classification"
        for name in ("cls", "lm_predictions", "pooler", "classifier", "dropout", "qa_outputs"):
            if hasattr(self, name):
                delattr(self, name)
        self.build_head(self.cfg)
        init_bert_weights(self.pooler)
        init_bert_weights(self.classifier)


_LARGE = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)
register_model("deberta-v3-large", DebertaConfig, description="DeBERTa-v3-large (435M)", **_LARGE)(Deberta)
register_model(
    "deberta-v2-xlarge",
    DebertaConfig,
    description="DeBERTa-v2-xlarge (900M): adds a convolution after the first layer",
    hidden_size=1536,
    num_hidden_layers=24,
    num_attention_heads=24,
    intermediate_size=6144,
    conv_kernel_size=3,
    conv_act="gelu",
)(Deberta)

"""BERT (Devlin et al. 2019): a bidirectional, post-LayerNorm Transformer encoder pretrained by masked LM.

Parameter names equal Hugging Face's (``bert.encoder.layer.0.attention.self.query.weight``, ...). The heads are
those of ``BertForMaskedLM`` (``cls.predictions``, decoder tied to the word embeddings),
``BertForSequenceClassification`` (``bert.pooler`` + ``classifier``), ``BertForTokenClassification``
(``classifier`` on every position), ``BertForQuestionAnswering`` (``qa_outputs``: start/end logits) and
``BertModel`` (head "none": hidden states). RoBERTa (roberta.py) reuses the encoder defined here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from deepkit.models.registry import register_model
from deepkit.models.token_model import TokenModel, check_head, hf_activation
from deepkit.nn.attention import merge_heads, padding_mask, scaled_dot_product, split_heads


@dataclass
class BertConfig:
    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    classifier_dropout: float | None = None  # None: hidden_dropout_prob
    num_classes: int = 2  # outputs of the classification head (HF: num_labels)
    head: Literal["mlm", "classification", "token_classification", "question_answering", "none"] = "mlm"
    attn_impl: Literal["sdpa", "math"] = "sdpa"


POOLED_HEADS = ("classification", "none")  # heads whose Hugging Face class has a pooler


class BertEmbeddings(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size, padding_idx=cfg.pad_token_id)
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, input_ids, token_type_ids=None, position_ids=None):
        if position_ids is None:
            position_ids = torch.arange(input_ids.shape[1], device=input_ids.device)[None]
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = self.word_embeddings(input_ids) + self.position_embeddings(position_ids)
        x = x + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(x))  # (B, T, C)


class BertSelfAttention(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.cfg = cfg
        self.query = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.key = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.value = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, x, mask, return_weights=False):
        h = self.cfg.num_attention_heads
        q, k, v = (split_heads(f(x), h) for f in (self.query, self.key, self.value))  # (B, H, T, D)
        out, weights = scaled_dot_product(
            q,
            k,
            v,
            mask=mask,
            dropout_p=self.cfg.attention_probs_dropout_prob if self.training else 0.0,
            impl=self.cfg.attn_impl,
            return_weights=return_weights,
        )
        return merge_heads(out), weights


class BertSelfOutput(nn.Module):
    """Projection, dropout, then the post-LN residual ``LN(x + f(x))``."""

    def __init__(self, cfg: BertConfig, n_in: int):
        super().__init__()
        self.dense = nn.Linear(n_in, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, h: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(h)) + residual)


class BertAttention(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.self = BertSelfAttention(cfg)
        self.output = BertSelfOutput(cfg, cfg.hidden_size)

    def forward(self, x, mask, return_weights=False):
        h, weights = self.self(x, mask, return_weights)
        return self.output(h, x), weights


class BertIntermediate(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.act = hf_activation(cfg.hidden_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(x))


class BertLayer(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.attention = BertAttention(cfg)
        self.intermediate = BertIntermediate(cfg)
        self.output = BertSelfOutput(cfg, cfg.intermediate_size)

    def forward(self, x, mask, return_weights=False):
        x, weights = self.attention(x, mask, return_weights)
        return self.output(self.intermediate(x), x), weights


class BertEncoder(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(cfg) for _ in range(cfg.num_hidden_layers))

    def forward(self, x, mask, attentions=None):
        for layer in self.layer:
            x, w = layer(x, mask, attentions is not None)
            if attentions is not None:
                attentions.append(w)
        return x


class BertPooler(nn.Module):
    """``tanh(W h_[CLS])`` — the sentence vector BERT's next-sentence objective trained."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))


class BertModel(nn.Module):
    """Embeddings + post-LN encoder: ids ``(B, T)`` → hidden states ``(B, T, C)``; optional pooler."""

    def __init__(self, cfg: BertConfig, add_pooling_layer: bool, embeddings: nn.Module | None = None):
        super().__init__()
        self.embeddings = embeddings if embeddings is not None else BertEmbeddings(cfg)
        self.encoder = BertEncoder(cfg)
        self.pooler = BertPooler(cfg) if add_pooling_layer else None

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, attentions=None):
        x = self.embeddings(input_ids, token_type_ids, position_ids)
        mask = padding_mask(attention_mask) if attention_mask is not None else None  # padding keys are ignored
        return self.encoder(x, mask, attentions)


class BertLMPredictionHead(nn.Module):
    """dense → act → LayerNorm, then logits against the (tied) word embeddings plus a per-token bias."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.transform = nn.Module()
        self.transform.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.transform.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.act = hf_activation(cfg.hidden_act)
        self.bias = nn.Parameter(torch.zeros(cfg.vocab_size))

    def forward(self, hidden: torch.Tensor, word_embeddings: torch.Tensor) -> torch.Tensor:
        h = self.transform.LayerNorm(self.act(self.transform.dense(hidden)))
        return F.linear(h, word_embeddings, self.bias)  # (B, T, V)


def init_bert_weights(module: nn.Module, std: float = 0.02) -> None:
    """BERT's initialisation: N(0, 0.02) weights, zero biases, unit LayerNorms."""
    for m in module.modules():
        if isinstance(m, nn.Linear | nn.Embedding):
            nn.init.normal_(m.weight, std=std)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
            if isinstance(m, nn.Embedding) and m.padding_idx is not None:
                nn.init.zeros_(m.weight[m.padding_idx])
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


@register_model("bert", BertConfig, description="BERT-base (110M): bidirectional post-LN encoder, masked-LM head")
class Bert(TokenModel):
    """BERT with a masked-LM head (``head="mlm"``, logits ``(B, T, V)``), a sequence classifier
    (``head="classification"``, logits ``(B, num_classes)``), a token classifier (``"token_classification"``,
    logits ``(B, T, num_classes)``), an extractive-QA head (``"question_answering"``, start/end logits
    ``(B, T, 2)``) or no head (``"none"``, hidden states ``(B, T, C)``).
    """

    hf_model_type = "bert"
    base_prefix = "bert"
    hf_architectures = {
        "mlm": "BertForMaskedLM",
        "classification": "BertForSequenceClassification",
        "token_classification": "BertForTokenClassification",
        "question_answering": "BertForQuestionAnswering",
        "none": "BertModel",
    }

    def __init__(self, cfg: BertConfig):
        super().__init__()
        check_head(cfg.head, type(self))
        self.cfg = cfg
        setattr(self, self.base_prefix, self.build_backbone(cfg))
        self.build_head(cfg)
        init_bert_weights(self)

    def build_backbone(self, cfg: BertConfig) -> nn.Module:
        return BertModel(cfg, add_pooling_layer=cfg.head in POOLED_HEADS)

    def build_head(self, cfg: BertConfig) -> None:
        if cfg.head == "mlm":
            self.cls = nn.Module()
            self.cls.predictions = BertLMPredictionHead(cfg)
        elif cfg.head in ("classification", "token_classification"):
            drop = cfg.classifier_dropout if cfg.classifier_dropout is not None else cfg.hidden_dropout_prob
            self.dropout = nn.Dropout(drop)
            self.classifier = nn.Linear(cfg.hidden_size, cfg.num_classes)
        elif cfg.head == "question_answering":
            self.qa_outputs = nn.Linear(cfg.hidden_size, 2)  # start and end logit per position

    @property
    def backbone(self) -> nn.Module:
        return getattr(self, self.base_prefix)

    @property
    def context_length(self) -> int:
        return self.cfg.max_position_embeddings

    def forward_features(self, input_ids, attention_mask=None, token_type_ids=None, attentions=None):
        """Last hidden states ``(B, T, hidden_size)``; ``attentions`` (a list) collects per-layer weights."""
        self.check_ids(input_ids, self.context_length)
        return self.backbone(input_ids, attention_mask, token_type_ids, attentions=attentions)

    def forward_head(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.cfg.head == "mlm":
            return self.cls.predictions(hidden, self.backbone.embeddings.word_embeddings.weight)
        if self.cfg.head == "classification":
            return self.classifier(self.dropout(self.backbone.pooler(hidden)))  # (B, num_classes)
        return token_head(self, hidden)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        return self.forward_head(self.forward_features(input_ids, attention_mask, token_type_ids))

    def get_classifier(self) -> nn.Module:
        """The task head (trained afresh when fine-tuning); a classifier's pooler counts as head, since an MLM
        checkpoint has none."""
        return head_modules(self, [self.backbone.pooler] if self.cfg.head == "classification" else [])

    def reset_classifier(self, num_classes: int) -> None:
        """Switch to (or re-create) the sequence-classification head with ``num_classes`` outputs."""
        self.cfg.num_classes, self.cfg.head = num_classes, "classification"
        if self.backbone.pooler is None:
            self.backbone.pooler = BertPooler(self.cfg)
            init_bert_weights(self.backbone.pooler)
        for name in ("cls", "lm_head", "qa_outputs"):
            if hasattr(self, name):
                delattr(self, name)
        self.build_head(self.cfg)
        init_bert_weights(self.classifier)


def token_head(model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """The per-position heads shared by BERT, RoBERTa and DeBERTa (same names as Hugging Face's)."""
    if model.cfg.head == "token_classification":
        return model.classifier(model.dropout(hidden))  # (B, T, num_classes)
    if model.cfg.head == "question_answering":
        return model.qa_outputs(hidden)  # (B, T, 2): start, end
    return hidden


def head_modules(model: nn.Module, extra: list[nn.Module | None]) -> nn.Module:
    names = ("cls", "lm_head", "lm_predictions", "pooler", "classifier", "qa_outputs")
    mods = [m for m in extra if m is not None] + [getattr(model, n) for n in names if hasattr(model, n)]
    return nn.ModuleList(mods)


register_model(
    "bert-large",
    BertConfig,
    description="BERT-large (335M)",
    hidden_size=1024,
    num_hidden_layers=24,
    num_attention_heads=16,
    intermediate_size=4096,
)(Bert)
register_model(
    "bert-small",
    BertConfig,
    description="BERT-small (29M; Turc et al. 2019, L=4, H=512, A=8)",
    hidden_size=512,
    num_hidden_layers=4,
    num_attention_heads=8,
    intermediate_size=2048,
)(Bert)

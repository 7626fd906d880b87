"""RoBERTa (Liu et al. 2019): BERT's encoder, trained longer with dynamic masking and no next-sentence task.

Architecturally it differs from BERT (bert.py, whose encoder it reuses) in three places, all mirrored here with
Hugging Face's parameter names: positions start after the padding index and skip padding tokens, the MLM head is
``lm_head`` (dense → gelu → layer_norm → tied decoder), and the classifier reads the ``<s>`` token through its own
dense + tanh layer (``classifier.dense``, ``classifier.out_proj``) instead of BERT's pooler.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from deepkit.models.bert import (
    Bert,
    BertConfig,
    BertEmbeddings,
    BertModel,
    head_modules,
    init_bert_weights,
    token_head,
)
from deepkit.models.registry import register_model
from deepkit.models.token_model import hf_activation


@dataclass
class RobertaConfig(BertConfig):
    vocab_size: int = 50265
    max_position_embeddings: int = 514  # 512 positions + the padding offset
    type_vocab_size: int = 1
    layer_norm_eps: float = 1e-5
    pad_token_id: int = 1
    head: Literal["mlm", "classification", "token_classification", "question_answering", "none"] = "mlm"


class RobertaEmbeddings(BertEmbeddings):
    """BERT embeddings whose positions count only real tokens, starting at ``pad_token_id + 1`` (fairseq)."""

    def __init__(self, cfg: RobertaConfig):
        super().__init__(cfg)
        self.padding_idx = cfg.pad_token_id
        self.position_embeddings = nn.Embedding(
            cfg.max_position_embeddings, cfg.hidden_size, padding_idx=cfg.pad_token_id
        )

    def forward(self, input_ids, token_type_ids=None, position_ids=None):
        if position_ids is None:
            not_pad = (input_ids != self.padding_idx).long()
            position_ids = torch.cumsum(not_pad, dim=1) * not_pad + self.padding_idx
        return super().forward(input_ids, token_type_ids, position_ids)


class RobertaLMHead(nn.Module):
    def __init__(self, cfg: RobertaConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.layer_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.act = hf_activation("gelu")
        self.bias = nn.Parameter(torch.zeros(cfg.vocab_size))

    def forward(self, hidden: torch.Tensor, word_embeddings: torch.Tensor) -> torch.Tensor:
        return F.linear(self.layer_norm(self.act(self.dense(hidden))), word_embeddings, self.bias)  # (B, T, V)


class RobertaClassificationHead(nn.Module):
    def __init__(self, cfg: RobertaConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        drop = cfg.classifier_dropout if cfg.classifier_dropout is not None else cfg.hidden_dropout_prob
        self.dropout = nn.Dropout(drop)
        self.out_proj = nn.Linear(cfg.hidden_size, cfg.num_classes)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        x = self.dropout(hidden[:, 0])  # the <s> token
        return self.out_proj(self.dropout(torch.tanh(self.dense(x))))


@register_model("roberta", RobertaConfig, description="RoBERTa-base (125M): BERT encoder, fairseq positions")
class Roberta(Bert):
    """RoBERTa with an MLM head (``"mlm"``), a sequence classifier (``"classification"``) or none (``"none"``)."""

    hf_model_type = "roberta"
    base_prefix = "roberta"
    hf_architectures = {
        "mlm": "RobertaForMaskedLM",
        "classification": "RobertaForSequenceClassification",
        "token_classification": "RobertaForTokenClassification",
        "question_answering": "RobertaForQuestionAnswering",
        "none": "RobertaModel",
    }

    @property
    def context_length(self) -> int:
        return self.cfg.max_position_embeddings - self.cfg.pad_token_id - 1

    def build_backbone(self, cfg: RobertaConfig) -> nn.Module:
        return BertModel(cfg, add_pooling_layer=cfg.head == "none", embeddings=RobertaEmbeddings(cfg))

    def build_head(self, cfg: RobertaConfig) -> None:
        if cfg.head == "mlm":
            self.lm_head = RobertaLMHead(cfg)
        elif cfg.head == "classification":
            self.classifier = RobertaClassificationHead(cfg)
        else:
            super().build_head(cfg)  # token classification / QA: BERT's layout and names

    def forward_head(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.cfg.head == "mlm":
            return self.lm_head(hidden, self.backbone.embeddings.word_embeddings.weight)
        if self.cfg.head == "classification":
            return self.classifier(hidden)  # (B, num_classes)
        return token_head(self, hidden)

    def get_classifier(self) -> nn.Module:
        return head_modules(self, [])

    def reset_classifier(self, num_classes: int) -> None:
        self.cfg.num_classes, self.cfg.head = num_classes, "classification"
        for name in ("lm_head", "classifier", "qa_outputs"):
            if hasattr(self, name):
                delattr(self, name)
        self.build_head(self.cfg)
        init_bert_weights(self.classifier)


register_model(
    "roberta-large",
    RobertaConfig,
    description="RoBERTa-large (355M)",
    hidden_size=1024,
    num_hidden_layers=24,
    num_attention_heads=16,
    intermediate_size=4096,
)(Roberta)

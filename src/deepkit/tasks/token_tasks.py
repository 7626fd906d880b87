"""Fine-tuning heads of encoder Transformers (BERT, RoBERTa, DeBERTa): sequence classification, token
classification (tagging) and extractive question answering (start/end logits over the context).

Batches carry ``tokens (B, T)`` and ``lengths (B,)``; :func:`encoder_inputs` turns them into the Hugging Face
keyword arguments (``input_ids``, ``attention_mask``, ``token_type_ids``) the models take.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from deepkit.data.preprocess import Preprocessing
from deepkit.tasks.base import Task
from deepkit.tasks.sequence import IGNORE, TextClassificationTask

if TYPE_CHECKING:
    pass


def encoder_inputs(batch: dict[str, Any]) -> dict[str, torch.Tensor]:
    """``{"input_ids", "attention_mask", ["token_type_ids"]}`` of a padded batch (mask from ``lengths``)."""
    ids = batch["tokens"]
    lengths = batch["lengths"].to(ids.device)
    out = {
        "input_ids": ids,
        "attention_mask": (torch.arange(ids.shape[1], device=ids.device)[None] < lengths[:, None]).long(),
    }
    if "token_type_ids" in batch:
        out["token_type_ids"] = batch["token_type_ids"]
    return out


class TextClassifierInference(nn.Module):
    """(token ids (B, T) int64, lengths (B,) int64) -> class probabilities (B, K): what a text classifier's
    ``predict_proba`` computes after tokenizing, as one module for ``deepkit export``. ``token_model``: an
    encoder Transformer (takes ``input_ids``/``attention_mask``), else a recurrent classifier (tokens, lengths)."""

    def __init__(self, model: nn.Module, token_model: bool):
        super().__init__()
        if not token_model and hasattr(model, "export_module"):  # e.g. a recurrent classifier: no packing
            model = model.export_module()
        self.model, self.token_model = model, token_model

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.token_model:
            logits = self.model(**encoder_inputs({"tokens": tokens, "lengths": lengths}))
        else:
            logits = self.model(tokens, lengths)
        return logits.float().softmax(-1)


class SequenceClassificationTask(TextClassificationTask):
    """Text classification with an encoder Transformer (``head="classification"``): logits ``(B, K)``."""

    name = "text_classification"

    def _forward(self, batch):
        return self.model(**encoder_inputs(batch))


class TokenClassificationTask(Task):
    """One label per token (named entities, part of speech): logits ``(B, T, K)``, labels ``(B, T)``; -100 marks
    positions without a label (specials, padding, a word's non-first sub-word pieces). Reports token accuracy and
    macro-F1 over the labelled positions."""

    name = "token_classification"
    monitor = "val_accuracy"
    monitor_mode = "max"

    def __init__(self, model: nn.Module, num_classes: int, preprocessing: Preprocessing | None = None):
        self.num_classes = num_classes
        super().__init__(model, preprocessing)

    def make_metrics(self):
        import torchmetrics
        from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

        k = self.num_classes
        return torchmetrics.MetricCollection(
            {
                "accuracy": MulticlassAccuracy(k, average="micro", ignore_index=IGNORE),
                "f1_macro": MulticlassF1Score(k, average="macro", ignore_index=IGNORE),
            }
        )

    def loss(self, outputs, target):
        return F.cross_entropy(outputs.reshape(-1, outputs.shape[-1]), target.reshape(-1), ignore_index=IGNORE)

    def step_logs(self, outputs, target):
        valid = target != IGNORE
        return {"accuracy": ((outputs.argmax(-1) == target) & valid).sum() / valid.sum().clamp_min(1)}

    def training_step(self, batch):
        out = self.model(**encoder_inputs(batch))
        return {"loss": self.loss(out, batch["target"]), **self.step_logs(out.detach(), batch["target"])}

    @torch.no_grad()
    def validation_step(self, batch):
        out = self.model(**encoder_inputs(batch)).float()
        self.metrics.update(out.reshape(-1, out.shape[-1]), batch["target"].reshape(-1))
        return {"loss": self.loss(out, batch["target"])}

    def postprocess(self, outputs):
        return outputs.softmax(-1)


def best_span(start: torch.Tensor, end: torch.Tensor, first: int, last: int, max_answer_len: int) -> tuple[int, int]:
    """The token pair ``first <= i <= j <= last``, ``j < i + max_answer_len``, maximizing ``start[i] + end[j]``
    (BERT's span decoding)."""
    s, e = start[first : last + 1].float(), end[first : last + 1].float()
    n = len(s)
    i = torch.arange(n, device=s.device)
    valid = (i[None, :] >= i[:, None]) & (i[None, :] < i[:, None] + max_answer_len)  # rows: start, columns: end
    flat = int((s[:, None] + e[None, :]).masked_fill(~valid, float("-inf")).argmax())
    return first + flat // n, first + flat % n


class QuestionAnsweringTask(Task):
    """Extractive QA: logits ``(B, T, 2)`` give each position's start and end score; the loss is the mean of the
    start and end cross-entropies against the gold token span. Validation decodes the best span (at most
    ``max_answer_len`` tokens, inside the context) back to context characters and reports SQuAD exact match and
    F1 (torchmetrics). A long context comes as several windows (``data.text.doc_stride``), always in one batch:
    the question's answer is the best-scoring span over all of them."""

    name = "question_answering"
    monitor = "val_f1"
    monitor_mode = "max"

    def __init__(self, model: nn.Module, max_answer_len: int = 30, preprocessing: Preprocessing | None = None):
        self.max_answer_len = max_answer_len
        super().__init__(model, preprocessing)

    def make_metrics(self):
        import torchmetrics
        from torchmetrics.text import SQuAD

        return torchmetrics.MetricCollection({"squad": SQuAD()})

    def loss(self, outputs, target):
        start, end = target
        return (F.cross_entropy(outputs[..., 0], start) + F.cross_entropy(outputs[..., 1], end)) / 2

    def _forward(self, batch):
        out = self.model(**encoder_inputs(batch))
        # padding can never be an answer boundary
        mask = encoder_inputs(batch)["attention_mask"].bool()
        return out.masked_fill(~mask[..., None], torch.finfo(out.dtype).min)

    def training_step(self, batch):
        out = self._forward(batch)
        return {"loss": self.loss(out, (batch["start"], batch["end"]))}

    def decode(self, outputs: torch.Tensor, meta: list[dict]) -> list[tuple[str, float]]:
        """Each row's best span (cut from its context by character offsets) and its score ``start + end``."""
        answers = []
        for row, m in zip(outputs, meta, strict=True):
            first, last = m["first"], m["first"] + len(m["offsets"]) - 1
            if last < first:
                answers.append(("", float("-inf")))
                continue
            i, j = best_span(row[:, 0], row[:, 1], first, last, self.max_answer_len)
            text = m["context"][m["offsets"][i - first][0] : m["offsets"][j - first][1]]
            answers.append((text, float(row[i, 0] + row[j, 1])))
        return answers

    @staticmethod
    def best_per_question(answers: list[tuple[str, float]], meta: list[dict]) -> dict[str, tuple[str, dict]]:
        """One answer per question id: the highest-scoring span over all of its context windows."""
        best: dict[str, tuple[str, float, dict]] = {}
        for (text, score), m in zip(answers, meta, strict=True):
            if m["id"] not in best or score > best[m["id"]][1]:
                best[m["id"]] = (text, score, m)
        return {qid: (text, m) for qid, (text, _, m) in best.items()}

    @torch.no_grad()
    def validation_step(self, batch):
        out = self._forward(batch).float()
        best = self.best_per_question(self.decode(out, batch["meta"]), batch["meta"])
        self.metrics["squad"].update(
            [{"prediction_text": text, "id": qid} for qid, (text, _) in best.items()],
            [
                {
                    "id": qid,
                    "answers": {
                        "text": [a["text"] for a in m["answers"]],
                        "answer_start": [a["answer_start"] for a in m["answers"]],
                    },
                }
                for qid, (_, m) in best.items()
            ],
        )
        return {"loss": self.loss(out, (batch["start"], batch["end"]))}

    def compute_metrics(self) -> dict[str, float]:
        r = self.metrics["squad"].compute()
        return {"exact_match": float(r["exact_match"]), "f1": float(r["f1"])}

    def describe(self):
        return {"name": self.name, "max_answer_len": self.max_answer_len}

"""CTC speech recognition: waveform batches ``{"audio", "lengths", "targets", "target_lengths"}`` into an encoder
that gives per-frame scores over a vocabulary whose index 0 is the blank (CTC encoders on log-mel, or wav2vec2 on
the normalised waveform: :func:`ctc_forward`); CTC loss (``zero_infinity=True``: a clip
with no valid alignment adds 0, not inf; :func:`deepkit.families.asr.check_ctc_lengths` names such clips before
training); metrics from decoded text: WER and CER (torchmetrics) and, for digit strings, the digit error rate
(``der``), by greedy decoding and, outside training epochs, also by prefix beam search (``*_beam``)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from deepkit.data.asr import Vocabulary
from deepkit.data.preprocess import Preprocessing
from deepkit.nn.ctc import error_rates, greedy_decode, prefix_beam_search
from deepkit.tasks.base import Task


def ctc_forward(model: nn.Module, audio: torch.Tensor, lengths: torch.Tensor,
                call: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """``(logits (B, frames, V), frames (B,))`` of a zero-padded waveform batch. CTC encoders take ``(audio,
    lengths)`` and compute their features; a model with ``raw_waveform`` (wav2vec2) takes what its ``prepare``
    makes of the batch (normalised waveform, attention mask) and gives logits, its frames from ``output_lengths``.
    ``call``: the module to call (``model`` wrapped for distributed training), default ``model``."""
    call = model if call is None else call
    if getattr(model, "raw_waveform", False):
        return call(**model.prepare(audio, lengths)), model.output_lengths(lengths)
    return call(audio, lengths)


class CTCInference(nn.Module):
    """``(audio (B, T), lengths (B,)) -> (log_probs (B, frames, V), frames (B,))``: per-frame CTC log probabilities
    (blank = 0) and each clip's valid frames, as one module for ``deepkit export`` (features, normalisation and
    masks inside; decoding outside)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, audio: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, frames = ctc_forward(self.model, audio, lengths)
        return logits.float().log_softmax(-1), frames


class CTCTask(Task):
    """``model(audio, lengths) -> (logits (B, frames, V), frames (B,))``. ``beam``: the width of the prefix beam
    search whose metrics are added when ``final`` (the family turns it off during training epochs: greedy is
    cheap, the beam is Python)."""

    name = "speech_recognition"
    monitor = "val_cer"
    monitor_mode = "min"

    def __init__(self, model: nn.Module, vocab: Vocabulary, preprocessing: Preprocessing | None = None,
                 beam: int = 8):  # fmt: skip
        super().__init__(model, preprocessing)
        self.encoder = model  # unwrapped (``self.model`` may become a distributed wrapper)
        self.vocab, self.beam = vocab, beam
        self.final = True
        self.hyps: dict[str, list[str]] = {}
        self.refs: list[str] = []

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return ctc_forward(self.encoder, batch["audio"], batch["lengths"], self.model)

    def ctc_loss(self, logits: torch.Tensor, frames: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        log_probs = logits.float().log_softmax(-1).transpose(0, 1)  # (frames, B, V)
        return F.ctc_loss(log_probs, batch["targets"], frames, batch["target_lengths"], blank=0,
                          reduction="mean", zero_infinity=True)  # fmt: skip

    def training_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        logits, frames = self.forward(batch)
        return {"loss": self.ctc_loss(logits, frames, batch)}

    def decode(self, logits: torch.Tensor, frames: torch.Tensor, beam: int = 0) -> list[list[tuple[list[int], float]]]:
        """Per clip, hypotheses ``(token ids, log probability)`` best first: greedy (one, scored 0) or the beam."""
        log_probs = logits.float().log_softmax(-1).cpu()
        out = []
        for lp, n in zip(log_probs, frames.tolist(), strict=True):
            out.append(prefix_beam_search(lp, beam, n) if beam > 0 else [(greedy_decode(lp, n), 0.0)])
        return out

    @torch.no_grad()
    def validation_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        logits, frames = self.forward(batch)
        for t, n in zip(batch["targets"].tolist(), batch["target_lengths"].tolist(), strict=True):
            self.refs.append(self.vocab.decode(t[:n]))
        self.hyps.setdefault("", []).extend(self.vocab.decode(h[0][0]) for h in self.decode(logits, frames))
        if self.final and self.beam > 0:
            self.hyps.setdefault("_beam", []).extend(self.vocab.decode(h[0][0])
                                                     for h in self.decode(logits, frames, self.beam))  # fmt: skip
        return {"loss": self.ctc_loss(logits, frames, batch)}

    @torch.no_grad()
    def predict_step(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.forward(batch)[0].float().log_softmax(-1)

    def compute_metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for suffix, hyps in self.hyps.items():
            rates = error_rates(hyps, self.refs, " " if self.vocab.is_digits else None)
            if "ter" in rates:
                rates["der"] = rates.pop("ter")
            out.update({f"{k}{suffix}": v for k, v in rates.items()})
        return out

    def reset_metrics(self) -> None:
        self.hyps, self.refs = {}, []

    def to(self, device: torch.device | str) -> CTCTask:
        self.model.to(device)
        self._device = device
        return self

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "vocabulary": len(self.vocab), "beam": self.beam}

"""BiLSTM-CTC: log-mel features, a convolutional subsampling (4x fewer frames), a stack of bidirectional LSTMs on
packed sequences (padding never reaches the backward direction), a linear layer to the vocabulary + blank per
frame (Graves et al., 2006; DeepSpeech 2's conv + recurrent layout)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from deepkit.models._ctc import CTCEncoder, CTCEncoderConfig
from deepkit.models.registry import register_model


@dataclass
class CTCLSTMConfig(CTCEncoderConfig):
    input_dim: int = 128  # the subsampling's output width
    hidden_size: int = 128  # per direction
    num_layers: int = 2
    dropout: float = 0.2


@register_model("ctc_lstm", CTCLSTMConfig)
class CTCLSTM(CTCEncoder):
    """Conv subsampling + BiLSTM + linear CTC head over waveforms."""

    def __init__(self, cfg: CTCLSTMConfig):
        super().__init__()
        self.build_front(cfg, cfg.input_dim)
        self.drop = nn.Dropout(cfg.dropout)
        self.rnn = nn.LSTM(cfg.input_dim, cfg.hidden_size, cfg.num_layers, batch_first=True, bidirectional=True,
                           dropout=cfg.dropout if cfg.num_layers > 1 else 0.0)  # fmt: skip
        self.head = nn.Linear(2 * cfg.hidden_size, cfg.num_classes)

    def encode(self, x: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        packed = nn.utils.rnn.pack_padded_sequence(self.drop(x), frames.cpu().clamp(min=1), batch_first=True,
                                                   enforce_sorted=False)  # fmt: skip
        out, _ = self.rnn(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=t)
        return self.drop(out)

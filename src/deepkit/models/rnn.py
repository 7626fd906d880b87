"""Recurrent networks: vanilla RNN (tanh), LSTM and GRU on torch's fused modules, with packed variable-length batches.

Blocks (``RecurrentEncoder``, ``SequencePooling``) → models (sequence classifier / forecaster, tagger, language
model) → registered variants. Every model takes ``(x, lengths=None)``: ``x`` is token ids ``(B, T)`` (int64) or
real-valued steps ``(B, T, F)``; ``lengths`` ``(B,)`` are the true lengths of right-padded sequences. With lengths
the recurrent layers run on a ``PackedSequence``, so padding never enters the state (the outputs equal running each
sequence alone, unpadded).

References: Elman (1990); Hochreiter & Schmidhuber (1997) LSTM; Cho et al. (2014) GRU; Schuster & Paliwal (1997)
bidirectional RNNs; Yang et al. (2016) attention pooling; Press & Wolf (2017) tied input/output embeddings;
Gal & Ghahramani (2016) variational (locked) dropout, as used by Merity et al. (2018) AWD-LSTM.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from deepkit.errors import ConfigError, ShapeError
from deepkit.models.base import Classifier, example_generator, model_device, random_ids
from deepkit.models.registry import register_model

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
POOLS = ("last", "mean", "max", "attention")

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]  # h_n, or (h_n, c_n) for an LSTM


def length_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """``(B,)`` lengths -> ``(B, max_len)`` bool mask, True on real (non-padding) steps."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def _check_cell(cell: str) -> None:
    if cell not in CELLS:
        raise ConfigError(f"model.cell: unknown recurrent cell '{cell}'; expected one of {', '.join(CELLS)}")


class RecurrentEncoder(nn.Module):
    """A stacked, optionally bidirectional ``nn.RNN``/``nn.LSTM``/``nn.GRU`` that packs padded batches.

    Args:
        cell: ``rnn`` (tanh), ``lstm`` or ``gru``.
        input_size: features per step.
        hidden_size: units per direction.
        num_layers: stacked layers.
        bidirectional: also run right-to-left; outputs concatenate both directions.
        dropout: dropout between stacked layers (torch applies it to every layer's output but the last).
    """

    def __init__(
        self,
        cell: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__()
        _check_cell(cell)
        kw = {"nonlinearity": "tanh"} if cell == "rnn" else {}
        self.rnn = CELLS[cell](
            input_size,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,
            **kw,
        )
        self.cell = cell
        self.num_directions = 2 if bidirectional else 1
        self.output_size = hidden_size * self.num_directions

    def forward(
        self, x: torch.Tensor, lengths: torch.Tensor | None = None, state: State | None = None
    ) -> tuple[torch.Tensor, State]:
        """``x`` (B, T, C) -> outputs (B, T, D*H) (zeros past each length) and the final state (L*D, B, H)."""
        if lengths is None:
            return self.rnn(x, state)
        if (lengths < 1).any() or (lengths > x.shape[1]).any():
            raise ShapeError(f"sequence lengths must be in [1, {x.shape[1]}], got {lengths.min()}..{lengths.max()}")
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, state = self.rnn(packed, state)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return out, state  # torch returns the state in the original batch order (unsorted_indices)

    def last_hidden(self, state: State) -> torch.Tensor:
        """Top layer's final hidden state, both directions concatenated: (B, D*H)."""
        h = state[0] if isinstance(state, tuple) else state  # (L*D, B, H)
        return torch.cat(list(h[-self.num_directions :]), dim=-1)


class UnpackedRecurrent(nn.Module):
    """A :class:`RecurrentEncoder`'s computation on a padded batch without packing, for ``deepkit export``
    (``pack_padded_sequence`` takes the lengths as data, which ``torch.export`` cannot trace).

    Each layer and direction runs as a one-layer RNN sharing the encoder's own parameters, over the whole padded
    width: left to right, a sequence's steps come before its padding, so they are what packing gives; right to
    left, each sequence is reversed within its own length by an index gather (padding stays at the end), run, and
    reversed back. Outputs past a length are zeros, as ``pad_packed_sequence`` gives; the top layer's final hidden
    state is the left-to-right output at the last real step and the right-to-left output at the first. Eval only.
    """

    def __init__(self, encoder: RecurrentEncoder):
        super().__init__()
        rnn = encoder.rnn
        kw = {"nonlinearity": rnn.nonlinearity} if encoder.cell == "rnn" else {}
        self.layers = nn.ModuleList()
        for layer in range(rnn.num_layers):
            size = rnn.input_size if layer == 0 else rnn.hidden_size * encoder.num_directions
            directions = nn.ModuleList()
            for d in range(encoder.num_directions):
                one = type(rnn)(size, rnn.hidden_size, batch_first=True, bias=rnn.bias, **kw)
                suffix = f"_l{layer}" + ("_reverse" if d else "")
                for name in ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if rnn.bias else ()):
                    setattr(one, f"{name}_l0", getattr(rnn, name + suffix))  # the same Parameter objects
                directions.append(one)
            self.layers.append(directions)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` (B, T, C), ``lengths`` (B,) -> outputs (B, T, D*H) (zeros past each length), last hidden (B, D*H)."""
        steps = torch.arange(x.shape[1], device=x.device)[None, :]
        lengths = lengths.to(x.device)[:, None]
        real = steps < lengths  # (B, T)
        flip = torch.where(real, lengths - 1 - steps, steps)  # reverses each sequence within its length

        def along_time(t: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
            return t.gather(1, index[..., None].expand(-1, -1, t.shape[-1]))

        last: list[torch.Tensor] = []
        for directions in self.layers:
            outs, last = [], []
            for d, one in enumerate(directions):
                if d == 0:
                    out, _ = one(x)
                    last.append(along_time(out, lengths - 1)[:, 0])
                else:
                    out, _ = one(along_time(x, flip))
                    out = along_time(out, flip)
                    last.append(out[:, 0])
                outs.append(out)
            x = torch.cat(outs, -1) * real[..., None]
        return x, torch.cat(last, -1)


RNN_EXPORT = (
    "a plain (tanh) RNN cannot be exported yet: the ONNX exporter unrolls nn.RNN over the traced sequence length, "
    "so the graph would take one length only; train with model.cell=gru or lstm to export"
)


class RecurrentClassifierExport(nn.Module):
    """``RNNClassifier.forward(x, lengths)`` through :class:`UnpackedRecurrent` (no packing), for export."""

    def __init__(self, model: RNNClassifier):
        super().__init__()
        self.model = model
        self.encoder = UnpackedRecurrent(model.encoder)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        m = self.model
        out, last = self.encoder(m.inputs(x), lengths)
        return m.forward_head(m.pool(out, length_mask(lengths.to(out.device), out.shape[1]), last))


class LockedDropout(nn.Module):
    """Variational ("locked") dropout on (B, T, C): one mask per sequence and channel, shared by every time step.

    Per-step dropout draws a fresh mask at each step, so a recurrent model sees the same unit sometimes present and
    sometimes not within one sequence; a locked mask drops a unit for the whole sequence (Gal & Ghahramani, 2016),
    which regularizes language models better at the same rate. Identity in eval mode.
    """

    def __init__(self, p: float):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        mask = x.new_empty(x.shape[0], 1, x.shape[-1]).bernoulli_(1.0 - self.p) / (1.0 - self.p)  # (B, 1, C)
        return x * mask

    def extra_repr(self) -> str:
        return f"p={self.p}"


class SequencePooling(nn.Module):
    """Per-step outputs (B, T, C) -> one vector (B, C): last state, masked mean, masked max, or attention.

    Attention pooling scores each step with ``v·tanh(W h_t)`` and takes the softmax-weighted sum over real steps
    (Yang et al. 2016); the weights of the last call are kept in ``last_weights`` for plotting.
    """

    def __init__(self, mode: str, dim: int):
        super().__init__()
        if mode not in POOLS:
            raise ConfigError(f"model.pool: unknown pooling '{mode}'; expected one of {', '.join(POOLS)}")
        self.mode = mode
        if mode == "attention":
            self.proj = nn.Linear(dim, dim)
            self.score = nn.Linear(dim, 1, bias=False)
        self.last_weights: torch.Tensor | None = None

    def forward(self, out: torch.Tensor, mask: torch.Tensor | None, last: torch.Tensor) -> torch.Tensor:
        if self.mode == "last":
            return last
        if mask is None:
            mask = torch.ones(out.shape[:2], dtype=torch.bool, device=out.device)
        m = mask.unsqueeze(-1)  # (B, T, 1)
        if self.mode == "mean":
            return (out * m).sum(1) / m.sum(1).clamp_min(1)
        if self.mode == "max":
            return out.masked_fill(~m, float("-inf")).amax(1)
        scores = self.score(torch.tanh(self.proj(out))).squeeze(-1)  # (B, T)
        weights = scores.masked_fill(~mask, float("-inf")).softmax(-1)
        self.last_weights = weights.detach()
        return torch.einsum("bt,btc->bc", weights, out)


class _InputLayer(nn.Module):
    """Token ids (B, T) -> embeddings (B, T, E), or real-valued steps (B, T, F) passed through."""

    def __init__(self, vocab_size: int, embed_dim: int, in_features: int, padding_idx: int, dropout: float):
        super().__init__()
        self.vocab_size = vocab_size
        if vocab_size > 0:
            self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=padding_idx)
            self.size = embed_dim
        elif in_features > 0:
            self.embedding = None
            self.size = in_features
        else:
            raise ConfigError("model: set vocab_size (token inputs) or in_features (real-valued steps); both are 0")
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.embedding is not None:
            if x.dtype.is_floating_point:
                raise ShapeError(
                    f"this model takes token ids (int64, shape (B, T)); got {x.dtype} of shape {tuple(x.shape)}"
                )
            # checked outside training only: the check synchronizes with the device, and training ids come
            # from the run's own tokenizer; not while torch.export traces (no graph op; `deepkit serve` checks ids)
            check = not self.training and not torch.compiler.is_exporting()
            if check and x.numel() and (int(x.max()) >= self.vocab_size or int(x.min()) < 0):
                raise ShapeError(
                    f"token id {int(x.max())} is outside the model's vocabulary of {self.vocab_size}; "
                    "was the text encoded with the tokenizer the model was trained with?"
                )
            return self.dropout(self.embedding(x))
        if x.ndim == 2:
            x = x.unsqueeze(-1)  # (B, T) univariate series -> (B, T, 1)
        if x.ndim != 3 or x.shape[-1] != self.size:
            raise ShapeError(f"this model takes (B, T, {self.size}) real-valued steps; got shape {tuple(x.shape)}")
        return self.dropout(x.float())

    def example(self, batch_size: int, seq_len: int) -> torch.Tensor:
        """Token ids (B, T) in [1, vocab_size), or standard-normal steps (B, T, in_features)."""
        g = example_generator()
        if self.embedding is not None:
            return random_ids(g, self.vocab_size, (batch_size, seq_len), low=1)  # 1: skip the usual padding id 0
        return torch.randn(batch_size, seq_len, self.size, generator=g, device="cpu")


def _sequence_example(model: nn.Module, batch_size: int, seq_len: int) -> dict[str, torch.Tensor]:
    """``{"x": ...}`` for the models that take ``(x, lengths=None)``; every sequence has the full length."""
    return {"x": model.inputs.example(batch_size, seq_len).to(model_device(model))}


# --- sequence classification / regression ------------------------------------------------------------------------
@dataclass
class RNNClassifierConfig:
    vocab_size: int = 20000  # token inputs; 0 = real-valued steps with in_features features
    in_features: int = 0
    num_classes: int = 2  # classes, or forecast values per sequence (regression)
    cell: Literal["rnn", "lstm", "gru"] = "lstm"
    embed_dim: int = 128
    hidden_size: int = 256
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0  # between stacked recurrent layers
    embed_dropout: float = 0.0
    head_dropout: float = 0.0
    pool: Literal["last", "mean", "max", "attention"] = "last"
    padding_idx: int = 0


class RNNClassifier(Classifier):
    """Recurrent sequence classifier/regressor: embed → RNN/LSTM/GRU → pool (last/mean/max/attention) → Linear."""

    def __init__(self, cfg: RNNClassifierConfig):
        super().__init__()
        self.cfg = cfg
        self.inputs = _InputLayer(cfg.vocab_size, cfg.embed_dim, cfg.in_features, cfg.padding_idx, cfg.embed_dropout)
        self.encoder = RecurrentEncoder(
            cfg.cell, self.inputs.size, cfg.hidden_size, cfg.num_layers, cfg.bidirectional, cfg.dropout
        )
        self.num_features = self.encoder.output_size
        self.pool = SequencePooling(cfg.pool, self.num_features)
        self.head_dropout = nn.Dropout(cfg.head_dropout)
        self.head = nn.Linear(self.num_features, cfg.num_classes)

    def forward_features(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        out, state = self.encoder(self.inputs(x), lengths)  # (B, T, D*H)
        mask = None if lengths is None else length_mask(lengths.to(out.device), out.shape[1])
        return self.pool(out, mask, self.encoder.last_hidden(state))  # (B, D*H)

    def forward_head(self, feats: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        feats = self.head_dropout(feats)
        return feats if pre_logits else self.head(feats)  # (B, num_classes)

    def example_input(self, batch_size: int = 2, seq_len: int = 8) -> dict[str, torch.Tensor]:
        """``{"x": token ids (B, seq_len)}``, or real-valued steps (B, seq_len, in_features) for forecasters."""
        return _sequence_example(self, batch_size, seq_len)

    def export_module(self) -> nn.Module:
        """``forward(x, lengths)`` as a graph ``torch.export`` traces: the recurrence without packing. A plain (tanh)
        RNN is refused: the ONNX exporter unrolls ``nn.RNN`` step by step over the traced length, so its graph would
        take that one sequence length only (LSTM and GRU become ONNX ``LSTM``/``GRU`` operators, any length)."""
        if self.cfg.cell == "rnn":
            from deepkit.errors import ExportError

            raise ExportError(RNN_EXPORT)
        return RecurrentClassifierExport(self).eval()

    def reset_classifier(self, num_classes: int) -> None:
        self.head = nn.Linear(self.num_features, num_classes)
        self.cfg.num_classes = num_classes

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_head(self.forward_features(x, lengths))


register_model("rnn_classifier", RNNClassifierConfig, cell="rnn")(RNNClassifier)
register_model("lstm_classifier", RNNClassifierConfig, cell="lstm")(RNNClassifier)
register_model("gru_classifier", RNNClassifierConfig, cell="gru")(RNNClassifier)
register_model(
    "bilstm_classifier",
    RNNClassifierConfig,
    "Bidirectional LSTM sentence classifier (max pooling over both directions' outputs).",
    cell="lstm",
    bidirectional=True,
    pool="max",
)(RNNClassifier)
register_model(
    "lstm_forecaster",
    RNNClassifierConfig,
    "LSTM on a window of real-valued steps (B, T, F) -> the next num_classes values (time-series forecasting).",
    cell="lstm",
    vocab_size=0,
    in_features=1,
    num_classes=1,
    hidden_size=64,
)(RNNClassifier)
register_model(
    "gru_forecaster",
    RNNClassifierConfig,
    "GRU on a window of real-valued steps (B, T, F) -> the next num_classes values (time-series forecasting).",
    cell="gru",
    vocab_size=0,
    in_features=1,
    num_classes=1,
    hidden_size=64,
)(RNNClassifier)


# --- sequence tagging --------------------------------------------------------------------------------------------
@dataclass
class RNNTaggerConfig:
    vocab_size: int = 20000
    num_classes: int = 17  # tags per token (17 = Universal Dependencies POS tags)
    cell: Literal["rnn", "lstm", "gru"] = "lstm"
    embed_dim: int = 128
    hidden_size: int = 256
    num_layers: int = 2
    bidirectional: bool = True
    dropout: float = 0.0
    embed_dropout: float = 0.0
    padding_idx: int = 0


@register_model("bilstm_tagger", RNNTaggerConfig)
class RNNTagger(nn.Module):
    """Sequence tagger: one label per token from a (bidirectional) recurrent encoder; logits (B, T, num_classes)."""

    def __init__(self, cfg: RNNTaggerConfig):
        super().__init__()
        self.cfg = cfg
        self.inputs = _InputLayer(cfg.vocab_size, cfg.embed_dim, 0, cfg.padding_idx, cfg.embed_dropout)
        self.encoder = RecurrentEncoder(
            cfg.cell, self.inputs.size, cfg.hidden_size, cfg.num_layers, cfg.bidirectional, cfg.dropout
        )
        self.head = nn.Linear(self.encoder.output_size, cfg.num_classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        out, _ = self.encoder(self.inputs(x), lengths)
        return self.head(out)  # (B, T, num_classes); rows past each length are padding

    def example_input(self, batch_size: int = 2, seq_len: int = 8) -> dict[str, torch.Tensor]:
        """``{"x": token ids (B, seq_len)}``."""
        return _sequence_example(self, batch_size, seq_len)


# --- language model ----------------------------------------------------------------------------------------------
@dataclass
class RNNLanguageModelConfig:
    vocab_size: int = 10000
    cell: Literal["rnn", "lstm", "gru"] = "lstm"
    embed_dim: int = 512
    hidden_size: int = 512
    num_layers: int = 2
    dropout: float = 0.2  # between layers and on the top layer's output
    embed_dropout: float = 0.0
    tie_weights: bool = False  # output layer reuses the embedding matrix (Press & Wolf 2017)
    padding_idx: int = 0
    # embedding and output dropout with one mask per sequence (LockedDropout) instead of one per step; the dropout
    # between stacked layers stays torch's per-step one (it lives inside the fused nn.LSTM)
    locked_dropout: bool = False


class RNNLanguageModel(nn.Module):
    """Next-token language model: embed → stacked RNN/LSTM/GRU → logits over the vocabulary, (B, T, V).

    With ``tie_weights`` the output layer is the transposed embedding (no second V×E matrix); when
    ``hidden_size != embed_dim`` a linear projection maps the hidden state to ``embed_dim`` first.
    ``step(ids, state)`` continues from a carried state, which makes generation linear in the length.
    """

    def __init__(self, cfg: RNNLanguageModelConfig):
        super().__init__()
        self.cfg = cfg
        if cfg.vocab_size < 2:
            raise ConfigError(f"model.vocab_size must be >= 2, got {cfg.vocab_size}")
        self.inputs = _InputLayer(cfg.vocab_size, cfg.embed_dim, 0, cfg.padding_idx, cfg.embed_dropout)
        self.encoder = RecurrentEncoder(cfg.cell, cfg.embed_dim, cfg.hidden_size, cfg.num_layers, False, cfg.dropout)
        self.out_dropout = LockedDropout(cfg.dropout) if cfg.locked_dropout else nn.Dropout(cfg.dropout)
        if cfg.locked_dropout:  # same state dict either way: dropout modules hold no tensors
            self.inputs.dropout = LockedDropout(cfg.embed_dropout)
        out_dim = cfg.hidden_size
        self.proj = None
        if cfg.tie_weights and cfg.hidden_size != cfg.embed_dim:
            self.proj = nn.Linear(cfg.hidden_size, cfg.embed_dim)
            out_dim = cfg.embed_dim
        if cfg.tie_weights:
            self.decoder = None
            self.decoder_bias = nn.Parameter(torch.zeros(cfg.vocab_size))
        else:
            self.decoder = nn.Linear(out_dim, cfg.vocab_size)

    @property
    def output_weight(self) -> torch.Tensor:
        """The (V, E) matrix that maps features to logits: the embedding itself when weights are tied."""
        return self.inputs.embedding.weight if self.decoder is None else self.decoder.weight

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        h = self.out_dropout(h)
        if self.proj is not None:
            h = self.proj(h)
        if self.decoder is None:
            return F.linear(h, self.inputs.embedding.weight, self.decoder_bias)
        return self.decoder(h)

    def step(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """Continue from ``state``: ids (B, T) -> logits (B, T, V) and the new state."""
        out, state = self.encoder(self.inputs(x), None, state)
        return self.logits(out), state

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        out, _ = self.encoder(self.inputs(x), lengths)
        return self.logits(out)  # (B, T, V)

    def example_input(self, batch_size: int = 2, seq_len: int = 8) -> dict[str, torch.Tensor]:
        """``{"x": token ids (B, seq_len)}``."""
        return _sequence_example(self, batch_size, seq_len)

    def export_module(self) -> nn.Module:
        """``step`` as a graph for ``deepkit export``: token ids + the state in, logits + the next state out, states
        batch first ``(B, num_layers, hidden_size)`` (:class:`RecurrentStepExport`), so generation runs outside."""
        return (LSTMStepExport if self.cfg.cell == "lstm" else RecurrentStepExport)(self).eval()


class RecurrentStepExport(nn.Module):
    """A recurrent language model's ``step``: ``tokens (B, T)``, ``h (B, L, H)`` -> ``logits (B, T, V)``, ``h_next``.

    ``any_length``: the graph takes any ``T``; a plain (tanh) RNN is unrolled step by step by the ONNX exporter, so
    its graph takes one token per call (``T = 1``; feed a prompt token by token)."""

    def __init__(self, model: RNNLanguageModel):
        super().__init__()
        self.model = model
        self.any_length = model.cfg.cell != "rnn"

    def forward(self, tokens: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, state = self.model.step(tokens, h.transpose(0, 1).contiguous())
        return logits, state.transpose(0, 1)


class LSTMStepExport(RecurrentStepExport):
    """:class:`RecurrentStepExport` of an LSTM: the cell state ``c`` travels beside ``h``."""

    def forward(  # type: ignore[override]
        self, tokens: torch.Tensor, h: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        state = (h.transpose(0, 1).contiguous(), c.transpose(0, 1).contiguous())
        logits, (h, c) = self.model.step(tokens, state)
        return logits, h.transpose(0, 1), c.transpose(0, 1)


register_model("lstm_lm", RNNLanguageModelConfig, cell="lstm")(RNNLanguageModel)
register_model("gru_lm", RNNLanguageModelConfig, cell="gru")(RNNLanguageModel)
register_model("rnn_lm", RNNLanguageModelConfig, cell="rnn")(RNNLanguageModel)
register_model(
    "char_lstm_lm",
    RNNLanguageModelConfig,
    "Character-level LSTM language model (char-rnn sizes: 2×512, vocabulary from the text).",
    vocab_size=128,
    embed_dim=64,
    hidden_size=512,
    num_layers=2,
    dropout=0.2,
)(RNNLanguageModel)

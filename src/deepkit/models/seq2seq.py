"""Encoder–decoder (seq2seq) with attention, teacher forcing, greedy and beam-search decoding.

The encoder is a (bidirectional) recurrent stack over the packed source; the decoder is a recurrent stack that
attends over the encoder outputs at every step:

- ``bahdanau``: additive attention scored from the previous decoder state, context fed into the RNN input
  (Bahdanau, Cho & Bengio 2015, "Neural Machine Translation by Jointly Learning to Align and Translate");
- ``luong``: multiplicative ("general") attention scored from the current decoder output, then
  ``h̃ = tanh(W_c [c; h])`` (Luong, Pham & Manning 2015). Under full teacher forcing its decoder RNN runs as one
  fused call over the whole target;
- ``none``: the plain encoder–decoder of Sutskever et al. (2014), the final encoder state is all it sees.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from deepkit.errors import ConfigError
from deepkit.models.base import example_generator, model_device, random_ids
from deepkit.models.generation import encoder_decoder_beam
from deepkit.models.registry import register_model
from deepkit.models.rnn import CELLS, RecurrentEncoder, State, length_mask

ATTENTIONS = ("bahdanau", "luong", "none")


@dataclass
class Seq2SeqConfig:
    src_vocab_size: int = 8000
    tgt_vocab_size: int = 8000
    cell: Literal["rnn", "lstm", "gru"] = "gru"
    embed_dim: int = 256
    hidden_size: int = 512
    num_layers: int = 1
    bidirectional_encoder: bool = True
    attention: Literal["bahdanau", "luong", "none"] = "bahdanau"
    dropout: float = 0.1
    teacher_forcing: float = 1.0  # probability of feeding the true previous token while training
    padding_idx: int = 0
    bos_id: int = 2
    eos_id: int = 3


class Seq2Seq(nn.Module):
    """Recurrent encoder–decoder with Bahdanau or Luong attention; ``forward(src, src_lengths, tgt_in)`` -> logits."""

    def __init__(self, cfg: Seq2SeqConfig):
        super().__init__()
        if cfg.attention not in ATTENTIONS:
            raise ConfigError(f"model.attention: expected one of {', '.join(ATTENTIONS)}, got '{cfg.attention}'")
        if cfg.cell not in CELLS:
            raise ConfigError(f"model.cell: expected one of {', '.join(CELLS)}, got '{cfg.cell}'")
        self.cfg = cfg
        e, h = cfg.embed_dim, cfg.hidden_size
        self.src_embedding = nn.Embedding(cfg.src_vocab_size, e, padding_idx=cfg.padding_idx)
        self.tgt_embedding = nn.Embedding(cfg.tgt_vocab_size, e, padding_idx=cfg.padding_idx)
        self.dropout = nn.Dropout(cfg.dropout)
        self.encoder = RecurrentEncoder(cfg.cell, e, h, cfg.num_layers, cfg.bidirectional_encoder, cfg.dropout)
        enc_dim = self.encoder.output_size
        # encoder final state (per layer, both directions) -> decoder initial state
        self.bridge = nn.Linear(enc_dim, h)
        self.bridge_c = nn.Linear(enc_dim, h) if cfg.cell == "lstm" else None
        dec_in = e + (enc_dim if cfg.attention == "bahdanau" else 0)
        self.decoder = RecurrentEncoder(cfg.cell, dec_in, h, cfg.num_layers, False, cfg.dropout)
        if cfg.attention == "bahdanau":
            self.att_query = nn.Linear(h, h, bias=False)  # W s_{t-1}
            self.att_key = nn.Linear(enc_dim, h)  # U h_j
            self.att_v = nn.Linear(h, 1, bias=False)
            out_in = h + enc_dim + e
        elif cfg.attention == "luong":
            self.att_general = nn.Linear(enc_dim, h, bias=False)  # score = h_t · W_a h_s
            self.att_combine = nn.Linear(h + enc_dim, h, bias=False)  # h̃ = tanh(W_c [c; h])
            out_in = h
        else:
            out_in = h
        self.out = nn.Linear(out_in, cfg.tgt_vocab_size)
        self.last_attention: torch.Tensor | None = None  # (B, T_tgt, T_src) of the last forward, for plots

    # --- encoder -------------------------------------------------------------------------------------------------
    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, State]:
        """src (B, S) -> encoder outputs (B, S, D*H), source mask (B, S), decoder initial state."""
        out, state = self.encoder(self.dropout(self.src_embedding(src)), src_lengths)
        if src_lengths is None:
            mask = torch.ones(src.shape, dtype=torch.bool, device=src.device)
        else:
            mask = length_mask(src_lengths.to(src.device), src.shape[1])
        return out, mask, self._bridge(state)

    def _bridge(self, state: State) -> State:
        d, layers = self.encoder.num_directions, self.cfg.num_layers

        def merge(s: torch.Tensor, proj: nn.Linear) -> torch.Tensor:
            s = s.view(layers, d, s.shape[1], s.shape[2])  # (L, D, B, H)
            s = torch.cat(list(s.unbind(1)), dim=-1)  # (L, B, D*H)
            return torch.tanh(proj(s)).contiguous()

        if isinstance(state, tuple):
            return merge(state[0], self.bridge), merge(state[1], self.bridge_c)
        return merge(state, self.bridge)

    # --- decoder -------------------------------------------------------------------------------------------------
    def _top(self, state: State) -> torch.Tensor:
        return (state[0] if isinstance(state, tuple) else state)[-1]  # (B, H)

    def _attend_bahdanau(self, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor):
        scores = self.att_v(torch.tanh(self.att_query(query)[:, None, :] + keys)).squeeze(-1)  # (B, S)
        weights = scores.masked_fill(~mask, float("-inf")).softmax(-1)
        return torch.einsum("bs,bsc->bc", weights, values), weights

    def _attend_luong(self, h: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor):
        # h (B, T, H), keys = W_a h_s (B, S, H) -> context (B, T, C), weights (B, T, S)
        scores = torch.einsum("bth,bsh->bts", h, keys)
        weights = scores.masked_fill(~mask[:, None, :], float("-inf")).softmax(-1)
        context = torch.einsum("bts,bsc->btc", weights, values)
        return torch.tanh(self.att_combine(torch.cat([h, context], -1))), weights

    def prepare(self, enc_out: torch.Tensor) -> torch.Tensor | None:
        """Attention keys computed once per source: (B, S, H)."""
        if self.cfg.attention == "bahdanau":
            return self.att_key(enc_out)
        if self.cfg.attention == "luong":
            return self.att_general(enc_out)
        return None

    def decode_step(
        self, y_prev: torch.Tensor, state: State, enc_out: torch.Tensor, keys, mask: torch.Tensor
    ) -> tuple[torch.Tensor, State, torch.Tensor | None]:
        """One decoder step: previous tokens (B,) -> logits (B, V), new state, attention weights (B, S)."""
        emb = self.dropout(self.tgt_embedding(y_prev))  # (B, E)
        weights = None
        if self.cfg.attention == "bahdanau":
            context, weights = self._attend_bahdanau(self._top(state), keys, enc_out, mask)
            out, state = self.decoder(torch.cat([emb, context], -1)[:, None], None, state)
            feats = torch.cat([out[:, 0], context, emb], -1)
        elif self.cfg.attention == "luong":
            out, state = self.decoder(emb[:, None], None, state)
            feats, w = self._attend_luong(out, keys, enc_out, mask)
            feats, weights = feats[:, 0], w[:, 0]
        else:
            out, state = self.decoder(emb[:, None], None, state)
            feats = out[:, 0]
        return self.out(self.dropout(feats)), state, weights

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor | None, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher-forced decoding: ``tgt_in`` = BOS + target[:-1] (B, T) -> logits (B, T, V).

        While training, each step feeds the model's own previous prediction with probability
        ``1 - teacher_forcing`` (scheduled sampling, Bengio et al. 2015).
        """
        enc_out, mask, state = self.encode(src, src_lengths)
        keys = self.prepare(enc_out)
        tf = self.cfg.teacher_forcing if self.training else 1.0
        if tf >= 1.0 and self.cfg.attention != "bahdanau":  # the whole target in one fused RNN call
            out, _ = self.decoder(self.dropout(self.tgt_embedding(tgt_in)), None, state)
            if self.cfg.attention == "luong":
                out, self.last_attention = self._attend_luong(out, keys, enc_out, mask)
            return self.out(self.dropout(out))
        logits, attn = [], []
        y = tgt_in[:, 0]
        for t in range(tgt_in.shape[1]):
            step_logits, state, w = self.decode_step(y, state, enc_out, keys, mask)
            logits.append(step_logits)
            attn.append(w)
            if t + 1 < tgt_in.shape[1]:
                y = tgt_in[:, t + 1]
                if tf < 1.0:
                    own = step_logits.argmax(-1)
                    use_own = torch.rand(y.shape, device=y.device) >= tf
                    y = torch.where(use_own, own, y)
        if attn[0] is not None:
            self.last_attention = torch.stack(attn, 1).detach()
        return torch.stack(logits, 1)

    def example_input(self, batch_size: int = 2, seq_len: int = 8) -> dict[str, torch.Tensor]:
        """``{"src": (B, seq_len), "src_lengths": (B,), "tgt_in": (B, seq_len - 3)}``: right-padded sources of
        decreasing lengths (the first is full) and targets that start with BOS; ids from 4 (past pad/unk/BOS/EOS)."""
        g, c = example_generator(), self.cfg
        src = random_ids(g, c.src_vocab_size, (batch_size, seq_len), low=4)
        # lengths seq_len, seq_len - 1, ... (cycling through the upper half of the range)
        lengths = seq_len - torch.arange(batch_size, device="cpu") % max(1, (seq_len + 1) // 2)
        src = src.masked_fill(~length_mask(lengths, seq_len), c.padding_idx)
        tgt_in = random_ids(g, c.tgt_vocab_size, (batch_size, max(1, seq_len - 3)), low=4)
        tgt_in[:, 0] = c.bos_id
        device = model_device(self)
        return {"src": src.to(device), "src_lengths": lengths.to(device), "tgt_in": tgt_in.to(device)}

    # --- inference -----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def greedy_decode(self, src: torch.Tensor, src_lengths: torch.Tensor | None, max_len: int = 50) -> list[list[int]]:
        """Most likely token at every step until EOS (or ``max_len``); returns token ids without BOS/EOS."""
        enc_out, mask, state = self.encode(src, src_lengths)
        keys = self.prepare(enc_out)
        y = torch.full((src.shape[0],), self.cfg.bos_id, dtype=torch.long, device=src.device)
        done = torch.zeros_like(y, dtype=torch.bool)
        steps = []
        for _ in range(max_len):
            logits, state, _ = self.decode_step(y, state, enc_out, keys, mask)
            y = logits.argmax(-1)
            steps.append(y)
            done |= y == self.cfg.eos_id
            if bool(done.all()):
                break
        ids = torch.stack(steps, 1).tolist()
        return [_strip(seq, self.cfg.eos_id) for seq in ids]

    @torch.no_grad()
    def beam_search(
        self,
        src: torch.Tensor,
        src_lengths: torch.Tensor | None,
        beam_size: int = 5,
        max_len: int = 50,
        length_penalty: float = 1.0,
    ) -> list[list[int]]:
        """Beam search, one source at a time; hypotheses ranked by log-prob / length**length_penalty."""
        results = []
        for i in range(src.shape[0]):
            n = int(src_lengths[i]) if src_lengths is not None else src.shape[1]
            results.append(self._beam_one(src[i : i + 1, :n], beam_size, max_len, length_penalty))
        return results

    def _beam_one(self, src: torch.Tensor, k: int, max_len: int, alpha: float) -> list[int]:
        enc_out, mask, state = self.encode(src, None)
        keys = self.prepare(enc_out)

        def step(y: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
            nonlocal state
            if keep is not None:
                state = (state[0][:, keep], state[1][:, keep]) if isinstance(state, tuple) else state[:, keep]
            b = len(y)
            logp, state, _ = self.decode_step(
                y, state, _expand(enc_out, b), None if keys is None else _expand(keys, b), _expand(mask, b)
            )
            return logp.log_softmax(-1)

        return encoder_decoder_beam(step, self.cfg.bos_id, self.cfg.eos_id, k, max_len, alpha, src.device)


def _expand(t: torch.Tensor, b: int) -> torch.Tensor:
    return t.expand(b, *t.shape[1:])  # one source shared by b hypotheses (a view, no copy)


def _strip(seq: list[int], eos: int) -> list[int]:
    return seq[: seq.index(eos)] if eos in seq else seq


register_model("seq2seq_bahdanau", Seq2SeqConfig, attention="bahdanau")(Seq2Seq)
register_model("seq2seq_luong", Seq2SeqConfig, attention="luong")(Seq2Seq)

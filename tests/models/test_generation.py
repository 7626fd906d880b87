"""Decoding: greedy/temperature/top-k/top-p, repetition penalty, beam search, KV cache, stop strings, streaming;
the stateful (RNN), cached (GPT) and full-context paths agree."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from deepkit import create_model
from deepkit.errors import ConfigError, DataError
from deepkit.models.generation import (
    apply_repetition_penalty,
    beam_search,
    generate,
    sample_next,
    stream_text,
    top_p_mask,
)


class FullContext(nn.Module):
    """Wraps an LM so it exposes only forward(ids) -> logits (no step, no cache)."""

    def __init__(self, lm):
        super().__init__()
        self.lm = lm

    def forward(self, ids):
        return self.lm(ids)


class Table(nn.Module):
    """A bigram 'model' with fixed next-token log-probabilities: row = previous token."""

    def __init__(self, logp: torch.Tensor):
        super().__init__()
        self.register_buffer("logp", logp)

    def forward(self, ids):
        return self.logp[ids]  # (B, T, V)


class CharTok:
    """Characters 'a'.. as ids 0..; enough of a tokenizer for stream_text."""

    bos_id = 0

    def __init__(self, alphabet: str):
        self.alphabet = alphabet

    def encode(self, text):
        return [self.alphabet.index(c) for c in text]

    def decode(self, ids):
        return "".join(self.alphabet[i] for i in ids)


def tiny_gpt(context: int = 16):
    torch.manual_seed(0)
    return create_model("gpt2", vocab_size=11, n_layer=2, n_head=2, n_embd=16, n_positions=context)


def test_stateful_and_full_context_generation_agree():
    torch.manual_seed(0)
    lm = create_model("gru_lm", vocab_size=20, embed_dim=8, hidden_size=16, num_layers=2)
    prompt = torch.tensor([[4, 5, 6], [7, 8, 9]])
    greedy_state = generate(lm, prompt, 10, temperature=0)
    greedy_full = generate(FullContext(lm), prompt, 10, temperature=0)
    assert torch.equal(greedy_state, greedy_full) and greedy_state.shape == (2, 13)
    a = generate(lm, prompt, 10, 1.0, top_k=5, generator=torch.Generator().manual_seed(3))
    b = generate(FullContext(lm), prompt, 10, 1.0, top_k=5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert lm.training, "generate restores the training mode"


def test_kv_cache_gives_the_same_tokens_within_and_past_the_context():
    gpt = tiny_gpt(context=16)
    prompt = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    for n in (8, 30):  # 30 new tokens run past the 16-position context: the window slides
        cached = generate(gpt, prompt, n, temperature=0, use_cache=True)
        plain = generate(gpt, prompt, n, temperature=0, use_cache=False)
        assert torch.equal(cached, plain) and cached.shape == (2, 4 + n)
        g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
        a = generate(gpt, prompt, n, 1.0, top_p=0.9, generator=g1, use_cache=True)
        b = generate(gpt, prompt, n, 1.0, top_p=0.9, generator=g2, use_cache=False)
        assert torch.equal(a, b)
    calls = []
    gpt.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[1]))
    generate(gpt, prompt, 6, temperature=0)
    assert calls == [4, 1, 1, 1, 1, 1], "with the cache each step feeds one new position"


def test_seeded_sampling_is_reproducible():
    gpt = tiny_gpt()
    prompt = torch.tensor([[1, 2]])
    runs = [generate(gpt, prompt, 12, 1.0, top_k=8, generator=torch.Generator().manual_seed(7)) for _ in range(2)]
    other = generate(gpt, prompt, 12, 1.0, top_k=8, generator=torch.Generator().manual_seed(8))
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], other)


def test_top_k_and_temperature():
    logits = torch.tensor([[0.0, 1.0, 5.0, 2.0]])
    assert sample_next(logits, 0).item() == 2
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([sample_next(logits, 1.0, top_k=2, generator=g) for _ in range(300)])
    assert set(draws.flatten().tolist()) <= {2, 3}
    cold = torch.stack([sample_next(logits, 0.05, generator=g) for _ in range(100)])
    assert (cold == 2).all()
    with pytest.raises(ConfigError, match="temperature"):
        sample_next(logits, -1.0)
    with pytest.raises(ConfigError, match="top_k"):
        sample_next(logits, 1.0, top_k=0)
    with pytest.raises(ConfigError, match="top_p"):
        sample_next(logits, 1.0, top_p=1.5)


def test_top_p_keeps_the_smallest_set_with_enough_mass():
    probs = torch.tensor([[0.1, 0.4, 0.05, 0.3, 0.15]])  # sorted: 0.4 (1), 0.3 (3), 0.15 (4), 0.1 (0), 0.05 (2)
    expect = {
        0.3: {1},  # 0.4 alone covers 0.3
        0.4: {1},  # exactly 0.4: still one token
        0.5: {1, 3},  # 0.4 < 0.5 <= 0.7
        0.7: {1, 3},
        0.71: {1, 3, 4},  # 0.85
        0.9: {1, 3, 4, 0},  # 0.95
        1.0: {0, 1, 2, 3, 4},
    }
    for p, kept in expect.items():
        assert set(top_p_mask(probs, p)[0].nonzero().flatten().tolist()) == kept, p
    g = torch.Generator().manual_seed(0)
    draws = {int(sample_next(probs.log(), 1.0, generator=g, top_p=0.5)) for _ in range(300)}
    assert draws == {1, 3}


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits():
    logits = torch.tensor([[2.0, -1.0, 0.5, -3.0, 4.0]])
    seen = torch.tensor([[0, 1, 1]])  # tokens 0 and 1 already present (1 twice: penalized once)
    out = apply_repetition_penalty(logits, seen, 2.0)
    assert out.tolist() == [[1.0, -2.0, 0.5, -3.0, 4.0]]
    assert logits.tolist() == [[2.0, -1.0, 0.5, -3.0, 4.0]], "the input is not modified"
    assert apply_repetition_penalty(logits, seen, 1.0) is logits
    # a model that always prefers token 3 repeats it greedily; a strong penalty moves to the runner-up
    table = torch.full((5, 5), -5.0)
    table[:, 3], table[:, 2] = 3.0, 2.0
    plain = generate(Table(table), torch.tensor([[0]]), 3, temperature=0)
    penalized = generate(Table(table), torch.tensor([[0]]), 3, temperature=0, repetition_penalty=2.0)
    assert plain.tolist() == [[0, 3, 3, 3]]
    assert penalized.tolist() == [[0, 3, 2, 3]]  # 3/2 = 1.5 < 2, then 2/2 = 1 < 1.5
    with pytest.raises(ConfigError, match="repetition_penalty"):
        generate(Table(table), torch.tensor([[0]]), 3, repetition_penalty=0)


def _trap_table() -> torch.Tensor:
    """From token 0: 1 (p .6) then at best p .3 vs 2 (p .4) then 4 (p .99).

    Greedy takes 1 first: log .6 + log .3 = -1.71; beam finds 2, 4: log .4 + log .99 = -0.93."""
    p = torch.full((5, 5), 1e-6)
    p[0, 1], p[0, 2] = 0.6, 0.4
    p[1] = torch.tensor([0.3, 0.2, 0.2, 0.15, 0.15])
    p[2, 4] = 0.99
    p[3:] = 0.2
    return (p / p.sum(1, keepdim=True)).log()


def _logprob(table: torch.Tensor, seq: list[int]) -> float:
    return sum(float(table[a, b]) for a, b in zip(seq[:-1], seq[1:], strict=False))


def test_beam_search_finds_a_more_likely_sequence_than_greedy():
    table = _trap_table()
    model, prompt = Table(table), torch.tensor([[0]])
    greedy = generate(model, prompt, 2, temperature=0)[0].tolist()
    beam = generate(model, prompt, 2, num_beams=3)[0].tolist()
    assert greedy[:2] == [0, 1] and beam == [0, 2, 4]
    assert _logprob(table, beam) > _logprob(table, greedy) + 0.5
    assert beam_search(model, prompt, 2, num_beams=1)[0].tolist() == greedy, "one beam = greedy"


def test_beam_search_equals_greedy_with_one_beam_on_a_gpt_and_an_rnn():
    for model in (tiny_gpt(), create_model("lstm_lm", vocab_size=11, embed_dim=8, hidden_size=16, num_layers=2)):
        prompt = torch.tensor([[1, 2, 3]])
        greedy = generate(model, prompt, 25, temperature=0)
        assert torch.equal(beam_search(model, prompt, 25, num_beams=1), greedy)
        wide = beam_search(model, prompt, 25, num_beams=4)
        assert wide.shape == (1, 28)


def test_beam_search_stop_token_and_length_penalty():
    # from 0: stop (token 4) at once with p .5, or 1 then 1, 1, ... each p .9 (and .1 to stop later)
    p = torch.full((5, 5), 1e-9)
    p[0, 4], p[0, 1] = 0.5, 0.5
    p[1, 1], p[1, 4] = 0.9, 0.1
    p[4, 4] = 1.0
    table = Table((p / p.sum(1, keepdim=True)).log())
    short = beam_search(table, torch.tensor([[0]]), 6, num_beams=2, stop_id=4, length_penalty=0.0)
    assert short[0].tolist() == [0, 4], "without length normalization the 1-token hypothesis wins"
    long = beam_search(table, torch.tensor([[0]]), 6, num_beams=2, stop_id=4, length_penalty=2.0)
    assert long[0].tolist()[:3] == [0, 1, 1], "a strong length penalty favours the longer hypothesis"


def test_context_is_cropped_and_stop_token_ends_early():
    seen = []

    class Echo(nn.Module):
        def forward(self, ids):
            seen.append(ids.shape[1])
            out = torch.full((*ids.shape, 6), -10.0)
            out[..., 3] = 10.0  # always predicts token 3
            return out

    out = generate(Echo(), torch.tensor([[1, 2, 4, 5]]), 5, temperature=0, context_len=4, stop_id=3)
    assert out.tolist() == [[1, 2, 4, 5, 3]] and seen == [4]
    with pytest.raises(ConfigError, match="prompt"):
        generate(Echo(), torch.zeros(1, 0, dtype=torch.long), 3)


def test_long_prompt_truncates_with_a_warning_or_errors():
    gpt = tiny_gpt(context=8)
    prompt = torch.arange(1, 11)[None] % 11  # 10 tokens > 8
    with pytest.warns(UserWarning, match="10 tokens, more than the model's context of 8"):
        out = generate(gpt, prompt, 3, temperature=0)
    assert out.shape == (1, 13)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        same = generate(gpt, prompt[:, -8:], 3, temperature=0)
    assert torch.equal(out[:, 10:], same[:, 8:]), "the model saw only the last 8 tokens"
    with pytest.raises(DataError, match="more than the model's context of 8"):
        generate(gpt, prompt, 3, on_long_prompt="error")
    with pytest.raises(ConfigError, match="on_long_prompt"):
        generate(gpt, prompt, 3, on_long_prompt="drop")


def _cycle_model(alphabet: str, text: str) -> Table:
    """Greedy continuation follows ``text`` cyclically (next char after each char is fixed)."""
    table = torch.full((len(alphabet), len(alphabet)), -9.0)
    for a, b in zip(text, text[1:] + text[0], strict=True):
        table[alphabet.index(a), alphabet.index(b)] = 9.0
    return Table(table)


def test_stop_strings_cut_the_text_and_streaming_pieces_add_up():
    alphabet = "abcdefgh\n"
    tok = CharTok(alphabet)
    model = _cycle_model(alphabet, "abcdefgh\n")
    full = "".join(stream_text(model, tok, "a", 20, temperature=0))
    assert full == "bcdefgh\nabcdefgh\nabc"
    pieces = list(stream_text(model, tok, "a", 20, stop=["fgh\n"], temperature=0))
    assert "".join(pieces) == "bcde", pieces
    assert all(pieces), "no empty pieces"
    # "fg" could begin the stop string "fgX" but does not: it is held back, then released
    pieces = list(stream_text(model, tok, "a", 12, stop=["fga"], temperature=0))
    assert "".join(pieces) == "bcdefgh\nabcd" and len(pieces) > 3
    # the earliest of several stop strings wins; a stop string in the prompt does not count
    assert "".join(stream_text(model, tok, "ab", 20, stop=["h", "d"], temperature=0)) == "c"
    assert "".join(stream_text(model, tok, "a", 5, stop=["a"], temperature=0)) == "bcdef"
    beam = list(stream_text(model, tok, "a", 20, stop=["fgh\n"], num_beams=2))
    assert beam == ["bcde"]


def test_streaming_sampled_text_equals_generate():
    gpt = tiny_gpt()
    tok = CharTok("abcdefghij\n")
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    pieces = list(stream_text(gpt, tok, "abc", 15, temperature=1.0, top_k=5, generator=g1))
    ids = generate(gpt, torch.tensor([tok.encode("abc")]), 15, 1.0, top_k=5, generator=g2)
    assert "".join(pieces) == tok.decode(ids[0, 3:].tolist()) and len(pieces) == 15


def test_beam_search_with_as_many_beams_as_tokens_is_exhaustive():
    torch.manual_seed(0)
    table = torch.randn(5, 5).log_softmax(-1)
    out = beam_search(Table(table), torch.tensor([[0]]), 2, num_beams=5)[0].tolist()
    best = max(([0, a, b] for a in range(5) for b in range(5)), key=lambda s: _logprob(table, s))
    assert out == best


def test_encoder_decoder_beam_finds_the_likelier_sequence_that_greedy_misses():
    from deepkit.models.generation import encoder_decoder_beam

    # tokens: 0 start, 1 eos, 2 "a", 3 "b"; the next-token distribution depends only on the last token
    table = {0: [0.0, 0.0, 0.6, 0.4], 2: [0.3, 0.0, 0.35, 0.35], 3: [0.95, 0.0, 0.025, 0.025]}
    # eos is index 1 in the vocabulary: move each row's first entry (p(eos)) there
    probs = {k: [1e-9, v[0], v[2], v[3]] for k, v in table.items()}
    seen_keep = []

    def step(y, keep):
        seen_keep.append(None if keep is None else keep.tolist())
        return torch.tensor([probs[int(t)] for t in y]).log()

    best = encoder_decoder_beam(step, 0, 1, beam_size=2, max_len=5, length_penalty=0.0, device=torch.device("cpu"))
    assert best == [3]  # p(b, eos) = 0.38 beats greedy's p(a, eos) = 0.18 and every longer "a ..." path
    assert seen_keep[:3] == [None, [0, 0], [0]]  # "a" and "b" both extend the start; then only "a ..." is live
    greedy = encoder_decoder_beam(step, 0, 1, beam_size=1, max_len=5, length_penalty=0.0, device=torch.device("cpu"))
    assert greedy[0] == 2  # greedy commits to "a" (0.6) and never sees "b eos"

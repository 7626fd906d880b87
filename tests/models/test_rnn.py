"""Recurrent models: packed batches equal unpadded runs, pooling ignores padding, tied weights, seq2seq decoding."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deepkit import create_model
from deepkit.errors import ConfigError, ShapeError
from deepkit.models.rnn import LockedDropout, RecurrentEncoder

SMALL = {"vocab_size": 40, "embed_dim": 8, "hidden_size": 12}


def _padded_batch(seed=0, lengths=(7, 3, 5, 1), vocab=40):
    g = torch.Generator().manual_seed(seed)
    seqs = [torch.randint(1, vocab, (n,), generator=g) for n in lengths]
    x = torch.zeros(len(seqs), max(lengths), dtype=torch.long)
    for i, s in enumerate(seqs):
        x[i, : len(s)] = s
    return seqs, x, torch.tensor(lengths)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_packed_encoder_equals_each_sequence_alone(cell, bidirectional):
    torch.manual_seed(0)
    enc = RecurrentEncoder(cell, 5, 6, num_layers=2, bidirectional=bidirectional).eval()
    lengths = torch.tensor([6, 2, 4])
    x = torch.randn(3, 6, 5)
    out, state = enc(x, lengths)
    h = state[0] if isinstance(state, tuple) else state
    for i, n in enumerate(lengths.tolist()):
        alone, alone_state = enc(x[i : i + 1, :n])
        torch.testing.assert_close(out[i, :n], alone[0], atol=1e-6, rtol=1e-5)
        assert out[i, n:].abs().max() == 0 if n < 6 else True  # padding positions are zero
        ah = alone_state[0] if isinstance(alone_state, tuple) else alone_state
        torch.testing.assert_close(h[:, i], ah[:, 0], atol=1e-6, rtol=1e-5)


def test_encoder_matches_torch_module_and_inter_layer_dropout():
    enc = RecurrentEncoder("lstm", 4, 8, num_layers=3, bidirectional=True, dropout=0.3)
    assert isinstance(enc.rnn, nn.LSTM) and enc.rnn.dropout == 0.3 and enc.rnn.num_layers == 3
    assert enc.rnn.bidirectional and enc.output_size == 16
    assert RecurrentEncoder("rnn", 4, 8).rnn.nonlinearity == "tanh"
    assert RecurrentEncoder("gru", 4, 8, num_layers=1, dropout=0.5).rnn.dropout == 0.0  # torch warns otherwise
    with pytest.raises(ConfigError, match="unknown recurrent cell 'lstn'"):
        RecurrentEncoder("lstn", 4, 8)
    enc.train()
    x = torch.randn(2, 5, 4)
    assert not torch.equal(enc(x)[0], enc(x)[0]), "dropout between layers is active in training"
    enc.eval()
    torch.testing.assert_close(enc(x)[0], enc(x)[0])


@pytest.mark.parametrize("pool", ["last", "mean", "max", "attention"])
@pytest.mark.parametrize("name", ["lstm_classifier", "bilstm_classifier", "gru_classifier", "rnn_classifier"])
def test_classifier_padding_does_not_change_prediction(name, pool):
    torch.manual_seed(0)
    model = create_model(name, pool=pool, num_layers=2, **SMALL).eval()
    seqs, x, lengths = _padded_batch()
    with torch.no_grad():
        batched = model(x, lengths)
        for i, s in enumerate(seqs):
            torch.testing.assert_close(batched[i], model(s[None])[0], atol=1e-5, rtol=1e-5)
    assert batched.shape == (4, 2)


def test_classifier_gradients_reach_embeddings_of_real_tokens_only():
    torch.manual_seed(0)
    model = create_model("bilstm_classifier", **SMALL)
    _, x, lengths = _padded_batch()
    model(x, lengths).sum().backward()
    g = model.inputs.embedding.weight.grad
    assert g[0].abs().sum() == 0, "the padding row gets no gradient"
    used = x[x > 0].unique()
    assert (g[used].abs().sum(1) > 0).all()


def test_attention_pool_weights_are_zero_on_padding():
    torch.manual_seed(0)
    model = create_model("lstm_classifier", pool="attention", **SMALL).eval()
    _, x, lengths = _padded_batch()
    model(x, lengths)
    w = model.pool.last_weights
    torch.testing.assert_close(w.sum(1), torch.ones(4))
    for i, n in enumerate(lengths.tolist()):
        assert w[i, n:].abs().sum() == 0


def test_forecaster_takes_real_valued_windows():
    model = create_model("lstm_forecaster", num_classes=3)
    assert model(torch.randn(5, 24, 1)).shape == (5, 3)
    assert model(torch.randn(5, 24)).shape == (5, 3)  # univariate (B, T) is accepted
    with pytest.raises(ShapeError, match=r"\(B, T, 1\)"):
        model(torch.randn(5, 24, 2))


def test_token_model_rejects_floats_and_out_of_vocabulary_ids():
    model = create_model("lstm_classifier", **SMALL).eval()
    with pytest.raises(ShapeError, match="token ids"):
        model(torch.randn(2, 5))
    with pytest.raises(ShapeError, match="outside the model's vocabulary of 40"):
        model(torch.tensor([[1, 2, 99]]))


def test_tied_language_model_shares_one_matrix():
    torch.manual_seed(0)
    tied = create_model("lstm_lm", vocab_size=30, embed_dim=8, hidden_size=8, num_layers=1, tie_weights=True)
    untied = create_model("lstm_lm", vocab_size=30, embed_dim=8, hidden_size=8, num_layers=1)
    assert tied.output_weight is tied.inputs.embedding.weight
    assert untied.output_weight is not untied.inputs.embedding.weight
    n_tied = sum(p.numel() for p in tied.parameters())
    n_untied = sum(p.numel() for p in untied.parameters())
    assert n_untied - n_tied == 30 * 8  # one V×E matrix fewer
    assert not any("decoder.weight" in k for k in tied.state_dict())  # safetensors cannot store aliases
    x = torch.randint(1, 30, (2, 6))
    # the output layer's gradient lands on the embedding: rows of tokens never fed in still get gradient
    tied(x).logsumexp(-1).sum().backward()
    unused = sorted(set(range(1, 30)) - set(x.flatten().tolist()))
    assert tied.inputs.embedding.weight.grad[unused].abs().sum() > 0
    # with a hidden size that differs from the embedding, a projection bridges them
    proj = create_model("gru_lm", vocab_size=30, embed_dim=8, hidden_size=16, num_layers=1, tie_weights=True)
    assert proj.proj is not None and proj(x).shape == (2, 6, 30)


def test_locked_dropout_mask_is_shared_over_time_and_identity_in_eval():
    torch.manual_seed(0)
    drop = LockedDropout(0.5)
    x = torch.ones(4, 7, 16)
    y = drop(x)
    assert torch.equal(y, y[:, :1].expand_as(y))  # the same units dropped at every step of a sequence
    assert set(y.unique().tolist()) == {0.0, 2.0}  # survivors rescaled by 1 / (1 - p)
    assert not torch.equal(y[0], y[1])  # but a fresh mask per sequence
    assert torch.equal(drop.eval()(x), x)
    with pytest.raises(ConfigError, match="dropout"):
        LockedDropout(1.0)


def test_language_model_locked_dropout_option():
    torch.manual_seed(0)
    kw = {"vocab_size": 30, "embed_dim": 8, "hidden_size": 8, "num_layers": 1, "dropout": 0.5, "embed_dropout": 0.4}
    lm = create_model("lstm_lm", locked_dropout=True, **kw)
    assert isinstance(lm.out_dropout, LockedDropout) and lm.out_dropout.p == 0.5
    assert isinstance(lm.inputs.dropout, LockedDropout) and lm.inputs.dropout.p == 0.4
    plain = create_model("lstm_lm", **kw)
    assert lm.state_dict().keys() == plain.state_dict().keys()  # checkpoints interchange
    x = torch.randint(1, 30, (2, 6))
    lm.eval()
    with torch.no_grad():
        torch.testing.assert_close(lm(x), lm(x))  # deterministic in eval mode
    lm.train()
    assert not torch.equal(lm(x), lm(x))


def test_language_model_step_continues_the_state():
    torch.manual_seed(0)
    lm = create_model("lstm_lm", vocab_size=30, embed_dim=8, hidden_size=8, num_layers=2).eval()
    x = torch.randint(1, 30, (2, 9))
    with torch.no_grad():
        full = lm(x)
        a, state = lm.step(x[:, :4])
        b, _ = lm.step(x[:, 4:], state)
    torch.testing.assert_close(torch.cat([a, b], 1), full, atol=1e-6, rtol=1e-5)


def test_language_model_is_causal():
    torch.manual_seed(0)
    lm = create_model("gru_lm", vocab_size=30, embed_dim=8, hidden_size=8, num_layers=1).eval()
    x = torch.randint(1, 30, (1, 8))
    y = x.clone()
    y[0, 5] = (y[0, 5] % 29) + 1
    with torch.no_grad():
        torch.testing.assert_close(lm(x)[0, :5], lm(y)[0, :5])
        assert not torch.allclose(lm(x)[0, 5:], lm(y)[0, 5:])


def test_tagger_outputs_one_row_per_token_and_ignores_padding():
    torch.manual_seed(0)
    tagger = create_model("bilstm_tagger", vocab_size=40, hidden_size=8, embed_dim=8, num_classes=5).eval()
    seqs, x, lengths = _padded_batch()
    with torch.no_grad():
        out = tagger(x, lengths)
        assert out.shape == (4, 7, 5)
        for i, s in enumerate(seqs):
            torch.testing.assert_close(out[i, : len(s)], tagger(s[None])[0], atol=1e-5, rtol=1e-5)


S2S = {"src_vocab_size": 30, "tgt_vocab_size": 25, "embed_dim": 8, "hidden_size": 12, "dropout": 0.0}


@pytest.mark.parametrize("name", ["seq2seq_bahdanau", "seq2seq_luong"])
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_seq2seq_teacher_forcing_equals_step_by_step_decoding(name, cell):
    torch.manual_seed(0)
    model = create_model(name, cell=cell, num_layers=2, **S2S).eval()
    src, lengths = torch.randint(4, 30, (3, 6)), torch.tensor([6, 3, 1])
    tgt_in = torch.randint(4, 25, (3, 5))
    with torch.no_grad():
        logits = model(src, lengths, tgt_in)
        enc_out, mask, state = model.encode(src, lengths)
        keys = model.prepare(enc_out)
        for t in range(5):
            step, state, w = model.decode_step(tgt_in[:, t], state, enc_out, keys, mask)
            torch.testing.assert_close(step, logits[:, t], atol=1e-5, rtol=1e-5)
            assert w[1, 3:].abs().sum() == 0 and w[2, 1:].abs().sum() == 0  # no attention on source padding
    assert model.last_attention.shape == (3, 5, 6)


def test_seq2seq_source_padding_does_not_change_output():
    torch.manual_seed(0)
    model = create_model("seq2seq_bahdanau", **S2S).eval()
    src = torch.randint(4, 30, (1, 4))
    padded = torch.cat([src, torch.zeros(1, 3, dtype=torch.long)], 1)
    tgt_in = torch.randint(4, 25, (1, 5))
    with torch.no_grad():
        torch.testing.assert_close(model(src, None, tgt_in), model(padded, torch.tensor([4]), tgt_in))


def test_seq2seq_scheduled_sampling_changes_training_inputs_only():
    torch.manual_seed(0)
    model = create_model("seq2seq_luong", teacher_forcing=0.0, **S2S)
    src, tgt_in = torch.randint(4, 30, (2, 5)), torch.randint(4, 25, (2, 6))
    model.train()
    free = model(src, None, tgt_in)
    model.eval()
    forced = model(src, None, tgt_in)
    torch.testing.assert_close(free[:, 0], forced[:, 0])  # the first step always sees BOS/tgt_in[:, 0]
    assert not torch.allclose(free[:, 1:], forced[:, 1:])


def test_beam_of_one_is_greedy_and_wider_beams_score_no_worse():
    torch.manual_seed(0)
    model = create_model("seq2seq_bahdanau", **S2S).eval()
    src, lengths = torch.randint(4, 30, (3, 6)), torch.tensor([6, 4, 2])
    greedy = model.greedy_decode(src, lengths, max_len=8)
    assert model.beam_search(src, lengths, beam_size=1, max_len=8, length_penalty=0.0) == greedy

    def logprob(i, seq):
        tgt = [model.cfg.bos_id, *seq, model.cfg.eos_id]
        n = int(lengths[i])
        with torch.no_grad():
            lp = model(src[i : i + 1, :n], None, torch.tensor([tgt[:-1]])).log_softmax(-1)[0]
        return float(lp[torch.arange(len(tgt) - 1), torch.tensor(tgt[1:])].sum())

    beams = model.beam_search(src, lengths, beam_size=4, max_len=8, length_penalty=0.0)
    for i in range(3):
        if len(greedy[i]) < 8 and len(beams[i]) < 8:  # both finished with EOS: full-sequence scores compare
            assert logprob(i, beams[i]) >= logprob(i, greedy[i]) - 1e-4


def test_seq2seq_rejects_unknown_attention():
    with pytest.raises(ConfigError, match="model.attention"):
        create_model("seq2seq_luong", attention="dot", **{k: v for k, v in S2S.items() if k != "attention"})

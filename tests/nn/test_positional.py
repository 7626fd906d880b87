"""Positional encodings: closed-form values, relative-position invariances, and the reference implementations."""

from __future__ import annotations

import math

import pytest
import torch

from deepkit.nn.positional import (
    LearnedPositionalEmbedding,
    RelativePositionBias,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    apply_rotary,
    deberta_log_bucket,
    deberta_relative_positions,
    disentangled_attention_bias,
    t5_relative_bucket,
)


def test_sinusoidal_table_follows_the_formula():
    pe = SinusoidalPositionalEncoding(8, max_len=50)
    out = pe(torch.zeros(1, 50, 8))[0]
    for pos in (0, 1, 17, 49):
        for i in range(4):
            angle = pos / 10000 ** (2 * i / 8)
            assert out[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert out[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)
    torch.testing.assert_close(pe(torch.zeros(1, 3, 8), offset=5)[0], out[5:8])  # offset for cached decoding
    with pytest.raises(ValueError, match="exceeds"):
        pe(torch.zeros(1, 51, 8))


def test_learned_positions_are_an_embedding_lookup():
    emb = LearnedPositionalEmbedding(10, 4)
    torch.testing.assert_close(emb(3, offset=2)[0], emb.weight[2:5])
    assert list(dict(emb.named_parameters())) == ["weight"]  # HF name: <module>.weight
    with pytest.raises(ValueError, match="10 learned positions"):
        emb(4, offset=7)


def test_rotary_scores_depend_only_on_relative_offset():
    torch.manual_seed(0)
    rope = RotaryEmbedding(16)
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)

    def score(pq: int, pk: int) -> float:
        cq, sq = rope(torch.tensor([pq]))
        ck, sk = rope(torch.tensor([pk]))
        rq, _ = apply_rotary(q, q, cq, sq)
        _, rk = apply_rotary(k, k, ck, sk)
        return float((rq * rk).sum())

    assert score(3, 1) == pytest.approx(score(10, 8), abs=1e-4)
    assert score(3, 1) == pytest.approx(score(102, 100), abs=1e-4)
    assert score(3, 1) != pytest.approx(score(3, 2), abs=1e-3)
    cos, sin = rope(torch.arange(5))
    rq, _ = apply_rotary(q.expand(1, 1, 5, 16), q.expand(1, 1, 5, 16), cos, sin)
    torch.testing.assert_close(rq.norm(dim=-1), q.norm(dim=-1).expand(1, 1, 5))  # a rotation keeps the norm


def test_rotary_matches_transformers_llama():
    llama = pytest.importorskip("transformers.models.llama.modeling_llama")
    torch.manual_seed(0)
    q, k = torch.randn(2, 3, 6, 8), torch.randn(2, 3, 6, 8)
    cos, sin = RotaryEmbedding(8)(torch.arange(6)[None].expand(2, 6))  # (B, T, D)
    ours = apply_rotary(q, k, cos, sin)
    ref = llama.apply_rotary_pos_emb(q, k, cos, sin)
    torch.testing.assert_close(ours[0], ref[0])
    torch.testing.assert_close(ours[1], ref[1])


@pytest.mark.parametrize("bidirectional", [True, False])
def test_t5_buckets_match_transformers(bidirectional):
    t5 = pytest.importorskip("transformers.models.t5.modeling_t5")
    rel = torch.arange(-300, 300)[None]
    for buckets, dist in [(32, 128), (8, 20)]:
        ours = t5_relative_bucket(rel, bidirectional, buckets, dist)
        ref = t5.T5Attention._relative_position_bucket(rel, bidirectional, buckets, dist)
        assert torch.equal(ours, ref)


def test_t5_bias_shape_and_sharing_by_bucket():
    bias = RelativePositionBias(32, 4, max_distance=128, bidirectional=True)
    out = bias(5, 5)
    assert out.shape == (1, 4, 5, 5)
    torch.testing.assert_close(out[0, :, 0, 1], out[0, :, 3, 4])  # same distance -> same bucket -> same bias
    torch.testing.assert_close(bias(1, 5, offset=4)[0, :, 0], out[0, :, 4])  # a cached query row


def test_deberta_buckets_match_transformers():
    deb = pytest.importorskip("transformers.models.deberta_v2.modeling_deberta_v2")
    rel = torch.arange(-600, 600)
    torch.testing.assert_close(deberta_log_bucket(rel, 256, 512), deb.make_log_bucket_position(rel, 256, 512).long())
    x = torch.zeros(1, 40, 8)
    torch.testing.assert_close(deberta_relative_positions(40, 40, 8, 64), deb.build_relative_position(x, x, 8, 64)[0])


def test_disentangled_bias_matches_the_papers_formula():
    """c2p[i,j] = q_i·Kr[δ(i,j)] and p2c[i,j] = k_j·Qr[δ(i,j)], δ(i,j) = clamp(i - j + span).

    The paper (He et al. 2021, eq. 4) writes δ(j, i) in the p2c term; the released code (microsoft/DeBERTa, and
    Hugging Face after it), which the checkpoints were trained with, indexes by δ(i, j) — we follow the code, and
    tests/interop/test_hf_parity.py checks the whole model against it.
    """
    torch.manual_seed(0)
    b, h, t, d, span = 2, 3, 7, 4, 4
    q, k = torch.randn(b, h, t, d), torch.randn(b, h, t, d)
    pos_key, pos_query = torch.randn(1, h, 2 * span, d), torch.randn(1, h, 2 * span, d)
    rel = deberta_relative_positions(t, t)
    got = disentangled_attention_bias(q, k, pos_key, pos_query, rel, span, scale=2.0)

    def delta(i: int, j: int) -> int:
        return min(max(i - j + span, 0), 2 * span - 1)

    want = torch.zeros(b, h, t, t)
    for i in range(t):
        for j in range(t):
            c2p = (q[:, :, i] * pos_key[:, :, delta(i, j)]).sum(-1)
            p2c = (k[:, :, j] * pos_query[:, :, delta(i, j)]).sum(-1)
            want[:, :, i, j] = (c2p + p2c) / 2.0
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    only_c2p = disentangled_attention_bias(q, k, pos_key, None, rel, span, scale=2.0)
    assert not torch.allclose(only_c2p, got)

"""Attention: the SDPA path equals the plain-math reference and torch's own modules; masks, bias and KV cache."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deepkit.errors import ConfigError, ShapeError
from deepkit.nn.attention import (
    KVCache,
    MultiHeadAttention,
    TransformerBlock,
    causal_mask,
    padding_mask,
    scaled_dot_product,
)


def qkv(b=2, h=3, tq=5, tk=5, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(b, h, tq, d, generator=g),
        torch.randn(b, h, tk, d, generator=g),
        torch.randn(b, h, tk, d, generator=g),
    )


def naive_attention(q, k, v, allowed, bias=None, scale=None):
    """Loop over (batch, head, query): softmax over the allowed keys only — an independent reference."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    out = torch.zeros(*q.shape[:-1], v.shape[-1])
    for b in range(q.shape[0]):
        for h in range(q.shape[1]):
            for i in range(q.shape[2]):
                keys = [j for j in range(k.shape[2]) if allowed[b, h, i, j]]
                s = torch.stack([q[b, h, i] @ k[b, h, j] * scale for j in keys])
                if bias is not None:
                    s = s + torch.stack([bias[b, h, i, j] for j in keys])
                out[b, h, i] = torch.softmax(s, 0) @ v[b, h, keys]
    return out


@pytest.mark.parametrize("impl", ["sdpa", "math"])
@pytest.mark.parametrize("case", ["plain", "causal", "padding", "causal+padding", "bias+padding", "cross", "cached"])
def test_attention_paths_match_naive_reference(impl, case):
    tq, tk = {"cross": (4, 7), "cached": (3, 7)}.get(case, (5, 5))
    q, k, v = qkv(tq=tq, tk=tk)
    lengths = torch.tensor([tk, tk - 2])
    key_ok = torch.arange(tk)[None] < lengths[:, None]  # (B, Tk)
    mask = padding_mask(key_ok.long()) if "padding" in case else None
    bias = torch.randn(1, 3, tq, tk) if "bias" in case else None
    causal = case in ("causal", "causal+padding", "cached")
    out, _ = scaled_dot_product(q, k, v, mask=mask, bias=bias, is_causal=causal, impl=impl)
    allowed = torch.ones(2, 3, tq, tk, dtype=torch.bool)
    if mask is not None:
        allowed &= mask
    if causal:  # queries are the last tq positions
        allowed &= (torch.arange(tk)[None] <= torch.arange(tk - tq, tk)[:, None])[None, None]
    ref = naive_attention(q, k, v, allowed, None if bias is None else bias.expand(2, 3, tq, tk))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_causal_mask_is_bottom_right_aligned():
    m = causal_mask(2, 4)[0, 0]
    assert m.tolist() == [[True, True, True, False], [True, True, True, True]]


def test_math_path_returns_weights_that_are_distributions():
    q, k, v = qkv()
    out, w = scaled_dot_product(q, k, v, is_causal=True, return_weights=True)
    assert w.shape == (2, 3, 5, 5)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 3, 5))
    assert (w.triu(1) == 0).all()  # nothing above the diagonal under a causal mask
    torch.testing.assert_close(out, w @ v)


def test_fully_masked_query_row_is_finite():
    q, k, v = qkv()
    mask = torch.zeros(2, 1, 5, 5, dtype=torch.bool)
    mask[..., :3, :] = True  # the last two query rows may attend to nothing (padding queries)
    for impl in ("sdpa", "math"):
        out, _ = scaled_dot_product(q, k, v, mask=mask, impl=impl)
        assert torch.isfinite(out).all()


def test_unknown_impl_and_bad_mask():
    q, k, v = qkv()
    with pytest.raises(ConfigError, match="unknown attention impl 'flash3'"):
        scaled_dot_product(q, k, v, impl="flash3")
    with pytest.raises(ShapeError, match=r"\(batch, length\)"):
        padding_mask(torch.ones(5))
    with pytest.raises(ConfigError, match="not divisible"):
        MultiHeadAttention(10, 3)


def copy_into_torch_mha(ours: MultiHeadAttention, ref: nn.MultiheadAttention) -> None:
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight]))
        ref.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
        ref.out_proj.weight.copy_(ours.out_proj.weight)
        ref.out_proj.bias.copy_(ours.out_proj.bias)


@pytest.mark.parametrize("impl", ["sdpa", "math"])
def test_multihead_attention_matches_torch_module(impl):
    torch.manual_seed(0)
    ours = MultiHeadAttention(16, 4, impl=impl).eval()
    ref = nn.MultiheadAttention(16, 4, batch_first=True).eval()
    copy_into_torch_mha(ours, ref)
    x, ctx = torch.randn(2, 6, 16), torch.randn(2, 9, 16)
    keep = torch.ones(2, 9, dtype=torch.long)
    keep[1, 6:] = 0
    with torch.no_grad():
        # self-attention, causal
        tri = torch.triu(torch.ones(6, 6, dtype=torch.bool), 1)  # torch: True = masked
        torch.testing.assert_close(ours(x, is_causal=True)[0], ref(x, x, x, attn_mask=tri)[0], atol=1e-5, rtol=1e-5)
        # cross-attention with padded context
        got = ours(x, context=ctx, mask=padding_mask(keep))[0]
        want = ref(x, ctx, ctx, key_padding_mask=~keep.bool())[0]
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("impl", ["sdpa", "math"])
def test_kv_cache_incremental_equals_full(impl):
    torch.manual_seed(0)
    block = TransformerBlock(16, 4, cross_attention=True, impl=impl).eval()
    x, ctx = torch.randn(2, 7, 16), torch.randn(2, 5, 16)
    with torch.no_grad():
        full = block(x, is_causal=True, context=ctx)
        cache = KVCache()
        steps = [block(x[:, :3], is_causal=True, context=ctx, cache=cache)]
        for t in range(3, 7):
            steps.append(block(x[:, t : t + 1], is_causal=True, context=ctx, cache=cache))
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)
    assert cache.seq_len() == 7
    assert cache.cross_attn[0][0].shape == (2, 4, 5, 4)  # the context's keys, computed once
    cache.reorder(torch.tensor([1, 1]))
    assert torch.equal(cache.self_attn[0][0][0], cache.self_attn[0][0][1])


@pytest.mark.parametrize("norm_position", ["pre", "post"])
def test_transformer_block_matches_torch_encoder_layer(norm_position):
    torch.manual_seed(0)
    ours = TransformerBlock(16, 4, ffn_dim=32, act="gelu", norm_position=norm_position).eval()
    ref = nn.TransformerEncoderLayer(
        16, 4, 32, dropout=0.0, activation="gelu", batch_first=True, norm_first=norm_position == "pre"
    ).eval()
    copy_into_torch_mha(ours.attn, ref.self_attn)
    with torch.no_grad():
        for a, b in [
            (ours.ffn[0], ref.linear1),
            (ours.ffn[3], ref.linear2),
            (ours.norm1, ref.norm1),
            (ours.norm2, ref.norm2),
        ]:
            a.weight.copy_(b.weight)
            a.bias.copy_(b.bias)
        x = torch.randn(2, 6, 16)
        keep = torch.ones(2, 6, dtype=torch.long)
        keep[0, 4:] = 0
        got = ours(x, mask=padding_mask(keep))
        want = ref(x, src_key_padding_mask=~keep.bool())
    valid = keep.bool()  # torch's fast path may zero padded positions; compare the real tokens
    torch.testing.assert_close(got[valid], want[valid], atol=1e-5, rtol=1e-5)
    with pytest.raises(ConfigError, match="norm_position"):
        TransformerBlock(16, 4, norm_position="sandwich")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_fused_kernels_match_math_path_on_gpu(dtype):
    """On CUDA, SDPA picks the flash / memory-efficient kernels; they must agree with the fp32 reference."""
    q, k, v = (t.cuda() for t in qkv(b=2, h=4, tq=64, tk=64, d=64))
    ref, _ = scaled_dot_product(q, k, v, is_causal=True, impl="math")
    fast, _ = scaled_dot_product(q.to(dtype), k.to(dtype), v.to(dtype), is_causal=True, impl="sdpa")
    torch.testing.assert_close(fast.float(), ref, atol=2e-2, rtol=2e-2)
    keep = torch.ones(2, 64, dtype=torch.long, device="cuda")
    keep[0, 40:] = 0
    masked, _ = scaled_dot_product(q.to(dtype), k.to(dtype), v.to(dtype), mask=padding_mask(keep), impl="sdpa")
    ref_masked, _ = scaled_dot_product(q, k, v, mask=padding_mask(keep), impl="math")
    torch.testing.assert_close(masked.float(), ref_masked, atol=2e-2, rtol=2e-2)

"""GPT-2: reference sizes, KV-cache decoding, attention paths, input checks and a short training run."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from deepkit import create_model
from deepkit.errors import ShapeError
from deepkit.nn.attention import KVCache

TINY = dict(
    n_layer=2, n_embd=32, n_head=4, vocab_size=61, n_positions=24, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0
)


@pytest.mark.parametrize(
    "name,params",
    [("gpt2", 124_439_808), ("gpt2-medium", 354_823_168), ("gpt2-large", 774_030_080), ("gpt2-xl", 1_557_611_200)],
)
def test_reference_sizes(name, params):
    with torch.device("meta"):  # shapes only: no memory for the 1.5B model
        model = create_model(name)
    assert sum(p.numel() for p in model.parameters()) == params  # the published counts (tied LM head)


@pytest.mark.parametrize("impl", ["sdpa", "math"])
def test_incremental_decoding_with_cache_equals_full_forward(impl):
    torch.manual_seed(0)
    model = create_model("gpt2", **TINY, attn_impl=impl).eval()
    ids = torch.randint(0, 61, (2, 11))
    with torch.no_grad():
        full = model(ids)
        cache = KVCache()
        steps = [model(ids[:, :4], cache=cache)]
        for t in range(4, 11):
            steps.append(model(ids[:, t : t + 1], cache=cache))
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)
    assert cache.seq_len() == 11


def test_cache_with_padding_mask_covering_past_positions():
    torch.manual_seed(0)
    model = create_model("gpt2", **TINY).eval()
    ids = torch.randint(0, 61, (2, 8))
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[1, :2] = 0  # left padding on the second row
    with torch.no_grad():
        full = model(ids, mask)
        cache = KVCache()
        first = model(ids[:, :5], mask[:, :5], cache=cache)
        rest = [model(ids[:, t : t + 1], mask[:, : t + 1], cache=cache) for t in range(5, 8)]
    got = torch.cat([first, *rest], 1)
    torch.testing.assert_close(got[mask.bool()], full[mask.bool()], atol=1e-5, rtol=1e-5)


def test_sdpa_and_math_paths_agree_and_attention_maps_are_causal():
    torch.manual_seed(0)
    model = create_model("gpt2", **TINY).eval()
    ids = torch.randint(0, 61, (3, 9))
    with torch.no_grad():
        a = model(ids)
        model.cfg.attn_impl = "math"
        maps: list[torch.Tensor] = []
        b = model.forward_head(model.forward_features(ids, attentions=maps))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert len(maps) == 2 and maps[0].shape == (3, 4, 9, 9)
    assert all((m.triu(1) == 0).all() for m in maps)


def test_input_checks():
    model = create_model("gpt2", **TINY)
    with pytest.raises(ShapeError, match=r"exceeds the model's context of 24"):
        model(torch.zeros(1, 25, dtype=torch.long))
    with pytest.raises(ShapeError, match=r"token ids must lie in \[0, 61\).*\[0, 61\]"):
        model(torch.tensor([[0, 61]]))
    with pytest.raises(ShapeError, match=r"integer tensor.*torch.float32"):
        model(torch.zeros(1, 3))
    cache = KVCache()
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 20, dtype=torch.long), cache=cache)
        with pytest.raises(ShapeError, match="25 positions exceeds"):
            model(torch.zeros(1, 5, dtype=torch.long), cache=cache)


def test_untied_head_has_its_own_weight():
    model = create_model("gpt2", **TINY, tie_word_embeddings=False)
    assert "lm_head.weight" in model.state_dict()
    assert "lm_head.weight" not in create_model("gpt2", **TINY).state_dict()  # tied: stored once, as HF saves it


def test_learns_to_continue_a_sequence():
    torch.manual_seed(0)
    model = create_model("gpt2", **TINY)
    ids = torch.arange(20)[None].repeat(4, 1) % 61
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        logits = model(ids[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] > 3.5 and losses[-1] < 0.5, (losses[0], losses[-1])

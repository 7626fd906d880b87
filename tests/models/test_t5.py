"""T5: reference sizes, cached decoding (self- and cross-attention), teacher forcing helpers, input checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from deepkit import create_model
from deepkit.errors import ConfigError, ShapeError
from deepkit.nn.attention import KVCache

TINY = dict(num_layers=2, d_model=32, d_kv=8, d_ff=48, num_heads=4, vocab_size=60, dropout_rate=0.0)


@pytest.mark.parametrize("name,params", [("t5-small", 60_506_624), ("t5", 222_903_552), ("t5-large", 737_668_096)])
def test_reference_sizes(name, params):
    with torch.device("meta"):
        model = create_model(name)
    assert sum(p.numel() for p in model.parameters()) == params


@pytest.mark.parametrize("impl", ["sdpa", "math"])
@pytest.mark.parametrize("ffn", ["relu", "gated-gelu"])
def test_incremental_decoding_with_cache_equals_full_forward(impl, ffn):
    torch.manual_seed(0)
    model = create_model("t5-small", **TINY, feed_forward_proj=ffn, attn_impl=impl).eval()
    src, tgt = torch.randint(2, 60, (2, 9)), torch.randint(2, 60, (2, 8))
    src_mask = torch.ones_like(src)
    src_mask[0, 6:] = 0
    with torch.no_grad():
        full = model(src, tgt, src_mask)
        memory = model.encode(src, src_mask)
        cache = KVCache()
        steps = [model(decoder_input_ids=tgt[:, :1], attention_mask=src_mask, encoder_out=memory, cache=cache)]
        for t in range(1, 8):
            steps.append(model(None, tgt[:, t : t + 1], src_mask, encoder_out=memory, cache=cache))
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)
    assert len(cache.cross_attn) == 2  # one per decoder layer, computed once


def test_shift_right_and_training_step():
    torch.manual_seed(0)
    model = create_model("t5-small", **TINY)
    labels = torch.tensor([[5, 6, 7, 1], [8, 9, 1, -100]])
    dec = model.shift_right(labels)
    assert dec.tolist() == [[0, 5, 6, 7], [0, 8, 9, 1]]
    src = torch.randint(2, 60, (2, 5))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        loss = F.cross_entropy(model(src, dec).flatten(0, 1), labels.flatten(), ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert loss.item() < first / 4, (first, loss.item())


def test_input_checks():
    model = create_model("t5-small", **TINY)
    with pytest.raises(ShapeError, match="decoder_input_ids"):
        model(torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ShapeError, match="input_ids or a precomputed encoder_out"):
        model(decoder_input_ids=torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ShapeError, match="encoder output has batch 2"):
        model.decode(torch.zeros(1, 3, dtype=torch.long), torch.zeros(2, 4, 32))
    with pytest.raises(ConfigError, match="gated-ACT"):
        create_model("t5-small", **TINY, feed_forward_proj="double-gated-gelu")

"""BERT and RoBERTa: reference sizes, heads, padding behaviour and input checks."""

from __future__ import annotations

import pytest
import torch

from deepkit import create_model
from deepkit.errors import ConfigError, ShapeError

TINY = dict(num_hidden_layers=2, hidden_size=32, num_attention_heads=4, intermediate_size=40, vocab_size=70)


@pytest.mark.parametrize(
    "name,params",
    [
        ("bert", 109_482_240),
        ("bert-large", 335_141_888),
        ("bert-small", 28_763_648),
        ("roberta", 124_645_632),
        ("roberta-large", 355_359_744),
    ],
)
def test_reference_sizes_of_the_bare_encoders(name, params):
    with torch.device("meta"):
        model = create_model(name, head="none")
    assert sum(p.numel() for p in model.parameters()) == params  # BertModel / RobertaModel as published


@pytest.mark.parametrize("name", ["bert", "roberta"])
def test_heads_and_reset_classifier(name):
    torch.manual_seed(0)
    model = create_model(name, **TINY).eval()
    ids = torch.randint(3, 70, (2, 6))
    with torch.no_grad():
        feats = model.forward_features(ids)
        assert model(ids).shape == (2, 6, 70)  # masked-LM logits
        model.reset_classifier(5)
        assert model.cfg.head == "classification"
        assert model(ids).shape == (2, 5)
        torch.testing.assert_close(model.forward_features(ids), feats)  # the encoder is untouched
    assert not any(k.startswith(("cls.", "lm_head.")) for k in model.state_dict())
    with pytest.raises(
        ConfigError,
        match="model.head: expected one of 'mlm', 'classification', 'token_classification', 'question_answering', "
        "'none', got 'seq2seq'",
    ):
        create_model(name, **TINY, head="seq2seq")


@pytest.mark.parametrize("name", ["bert", "roberta"])
def test_right_padding_does_not_change_real_tokens(name):
    torch.manual_seed(0)
    model = create_model(name, **TINY).eval()
    pad = model.cfg.pad_token_id
    ids = torch.randint(3, 70, (1, 6))
    padded = torch.cat([ids, torch.full((1, 3), pad)], 1)
    mask = torch.tensor([[1] * 6 + [0] * 3])
    with torch.no_grad():
        torch.testing.assert_close(model(padded, mask)[:, :6], model(ids), atol=1e-5, rtol=1e-5)
        unmasked = model(padded)[:, :6]
    assert not torch.allclose(unmasked, model(ids), atol=1e-5)  # without the mask the padding leaks in


def test_roberta_positions_skip_left_padding():
    """RoBERTa counts positions over real tokens only (fairseq), so left padding leaves the outputs unchanged."""
    torch.manual_seed(0)
    model = create_model("roberta", **TINY).eval()
    ids = torch.randint(3, 70, (1, 6))
    padded = torch.cat([torch.full((1, 2), model.cfg.pad_token_id), ids], 1)
    mask = torch.tensor([[0, 0] + [1] * 6])
    with torch.no_grad():
        torch.testing.assert_close(model(padded, mask)[:, 2:], model(ids), atol=1e-5, rtol=1e-5)


def test_attention_maps_and_input_checks():
    model = create_model("bert", **TINY, max_position_embeddings=16, attn_impl="math").eval()
    maps: list[torch.Tensor] = []
    mask = torch.tensor([[1, 1, 1, 0]])
    model.forward_features(torch.tensor([[5, 6, 7, 0]]), mask, attentions=maps)
    assert len(maps) == 2 and maps[0].shape == (1, 4, 4, 4)
    assert (maps[1][..., 3] < 1e-6).all()  # nobody attends to the padding token
    with pytest.raises(ShapeError, match="exceeds the model's context of 16"):
        model(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ShapeError, match=r"\[0, 70\)"):
        model(torch.tensor([[70]]))
    assert create_model("roberta", **TINY, max_position_embeddings=16).context_length == 14  # 2 offset slots

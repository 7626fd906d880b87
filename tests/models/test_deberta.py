"""DeBERTa-v2/v3: reference sizes, relative-position behaviour, heads and config checks."""

from __future__ import annotations

import pytest
import torch

from deepkit import create_model
from deepkit.errors import ConfigError

TINY = dict(num_hidden_layers=2, hidden_size=32, num_attention_heads=4, intermediate_size=40, vocab_size=70)


@pytest.mark.parametrize(
    "name,params", [("deberta", 183_831_552), ("deberta-v3-large", 434_012_160), ("deberta-v2-xlarge", 884_593_152)]
)
def test_reference_sizes_of_the_bare_encoders(name, params):
    """v3-base: 86M backbone + 98M embedding parameters (128,100 × 768), as its model card states; the exact
    architecture equality with transformers for every size is checked in tests/interop/test_hf_parity.py."""
    with torch.device("meta"):
        model = create_model(name, head="none")
    assert sum(p.numel() for p in model.parameters()) == params


def test_relative_positions_make_outputs_shift_invariant():
    """No absolute positions: the same tokens give the same outputs wherever the window starts (away from edges
    the relative distances are identical), unlike BERT."""
    torch.manual_seed(0)
    model = create_model("deberta", **TINY, position_buckets=-1, max_relative_positions=64).eval()
    ids = torch.randint(3, 70, (1, 5))
    with torch.no_grad():
        alone = model.forward_features(ids)
        padded_right = model.forward_features(
            torch.cat([ids, torch.zeros(1, 3, dtype=torch.long)], 1), torch.tensor([[1] * 5 + [0] * 3])
        )
    torch.testing.assert_close(padded_right[:, :5], alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("legacy", [True, False])
def test_mlm_heads_and_classifier(legacy):
    torch.manual_seed(0)
    model = create_model("deberta", **TINY, legacy=legacy).eval()
    ids = torch.randint(3, 70, (2, 6))
    prefix = "cls.predictions." if legacy else "lm_predictions.lm_head."
    assert any(k.startswith(prefix) for k in model.state_dict())
    with torch.no_grad():
        assert model(ids).shape == (2, 6, 70)
        model.reset_classifier(3)
        assert model(ids).shape == (2, 3)
    assert {"pooler.dense.weight", "classifier.weight"} <= set(model.state_dict())


def test_config_checks():
    with pytest.raises(ConfigError, match="pos_att_type entries must be 'c2p' or 'p2c', got 'p2p'"):
        create_model("deberta", **TINY, pos_att_type=["p2p"])
    with pytest.raises(ConfigError, match="not divisible"):
        create_model("deberta", **{**TINY, "num_attention_heads": 5})

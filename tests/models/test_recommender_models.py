"""Recommender models: every item's scores at once equal the pairwise forward, SASRec is causal and blind to its
padding (and built from deepkit's Transformer blocks), NeuMF from trained GMF and MLP is the paper's mixture, the
two-tower model scores a user from features alone, the embedding penalty is what it says."""

from __future__ import annotations

import pytest
import torch

from deepkit.errors import ShapeError
from deepkit.models import create_model
from deepkit.models.ncf import init_from_pretrained
from deepkit.nn.attention import TransformerBlock

PAIR_MODELS = ["biased_mf", "gmf", "ncf_mlp", "neumf", "two_tower"]


@pytest.mark.parametrize("name", PAIR_MODELS)
def test_score_all_equals_forward_on_every_pair(name):
    torch.manual_seed(0)
    model = create_model(name, num_users=7, num_items=11).eval()
    for p in model.parameters():  # move off the initial values (biases at zero)
        p.data.add_(0.1 * torch.randn_like(p))
    users = torch.tensor([0, 3, 6])
    with torch.no_grad():
        fast = model.score_all(users)
        slow = torch.stack([model(u.repeat(11), torch.arange(11)) for u in users])
    assert fast.shape == (3, 11)
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)


def test_penalty_is_the_squared_norm_of_the_rows_a_batch_uses():
    model = create_model("biased_mf", num_users=4, num_items=5, dim=3)
    u, i = torch.tensor([1, 2]), torch.tensor([0, 4])
    expected = (
        model.user.weight[u].pow(2).sum(1)
        + model.item.weight[i].pow(2).sum(1)
        + model.user_bias.weight[u, 0] ** 2
        + model.item_bias.weight[i, 0] ** 2
    )
    torch.testing.assert_close(model.penalty(u, i), expected)


def test_sasrec_is_causal_and_blind_to_padding():
    torch.manual_seed(0)
    model = create_model("sasrec", num_items=20, max_len=8, dim=16, n_layers=2, n_heads=2).eval()
    assert sum(isinstance(m, TransformerBlock) for m in model.modules()) == 2  # deepkit's own blocks
    pad = 20
    seq = torch.tensor([[pad, pad, 3, 7, 1, 9, 4, 2]])
    later = seq.clone()
    later[0, 6:] = torch.tensor([11, 12])
    with torch.no_grad():
        a, b = model(seq), model(later)
        # positions 0..5 cannot see positions 6, 7
        torch.testing.assert_close(a[:, :6], b[:, :6])
        assert not torch.allclose(a[:, 6:], b[:, 6:])
        # the same items with more or less left padding: the same next-item scores
        short = model.score_all(seq[:, 2:])  # 6 items, no padding
        torch.testing.assert_close(short, model.score_all(seq), rtol=1e-5, atol=1e-5)  # 2 pads before them
        torch.testing.assert_close(model.score_all(seq), a[:, -1])
    assert model(seq).shape == (1, 8, 20)


def test_neumf_from_trained_gmf_and_mlp_is_their_weighted_mixture():
    torch.manual_seed(0)
    gmf = create_model("gmf", num_users=6, num_items=9, dim=4)
    mlp = create_model("ncf_mlp", num_users=6, num_items=9, layers=[8, 4, 2])
    for m in (gmf, mlp):
        for p in m.parameters():
            p.data.add_(0.3 * torch.randn_like(p))
    neumf = create_model("neumf", num_users=6, num_items=9, dim=4, layers=[8, 4, 2])
    init_from_pretrained(neumf, gmf.state_dict(), mlp.state_dict(), alpha=0.3)
    u, i = torch.arange(6).repeat_interleave(9), torch.arange(9).repeat(6)
    with torch.no_grad():
        torch.testing.assert_close(neumf(u, i), 0.3 * gmf(u, i) + 0.7 * mlp(u, i), rtol=1e-5, atol=1e-5)
    wrong = create_model("neumf", num_users=6, num_items=9, dim=5, layers=[8, 4, 2])
    with pytest.raises(ShapeError, match=r"pretrained weight gmf_user.weight: shape \(6, 4\) does not fit"):
        init_from_pretrained(wrong, gmf.state_dict(), mlp.state_dict(), alpha=0.5)


def test_two_tower_scores_a_user_from_features_alone():
    torch.manual_seed(0)
    model = create_model("two_tower", num_users=5, num_items=6, user_features=3, item_features=2).eval()
    model.set_features(torch.randn(5, 3), torch.randn(6, 2))
    known = model.score_all(torch.tensor([2]))
    # user 2 given by id and their own features, or as the unknown-user row with the same features: two answers,
    # each a full row of scores; the unknown row with other features gives others
    feats = model.user_x[2:3]
    unknown = torch.tensor([model.unknown_user])
    as_new = model.score_all(unknown, user_x=feats)
    other = model.score_all(unknown, user_x=feats + 1.0)
    assert known.shape == as_new.shape == (1, 6)
    assert not torch.allclose(as_new, other)
    torch.testing.assert_close(model(unknown.repeat(6), torch.arange(6), user_x=feats.repeat(6, 1)), as_new[0])


def test_autorec_reconstructs_item_vectors():
    model = create_model("i_autorec", num_users=12, hidden=4)
    x = torch.zeros(3, 12)
    assert model(x).shape == (3, 12) and model.encode(x).shape == (3, 4)


@pytest.mark.parametrize("name", ["ncf_mlp", "neumf"])
def test_ncf_towers_start_with_about_half_their_units_active(name):
    """The embeddings start at std 0.01, so a tower's units are active or not by their biases alone unless the
    biases start at zero: with torch's default random biases a narrow last layer (8 units) could start with one unit
    alive and die in training (an NCF-MLP MovieLens run did: HR@10 0). Every layer of every seed: >= 1/4 active."""
    for seed in range(20):
        torch.manual_seed(seed)
        model = create_model(name)
        user, item = torch.randint(0, 943, (256,)), torch.randint(0, 1682, (256,))
        embedding = model.user if name == "ncf_mlp" else model.mlp_user
        h = torch.cat([embedding(user), (model.item if name == "ncf_mlp" else model.mlp_item)(item)], -1)
        for layer in model.mlp:
            h = layer(h)
            if isinstance(layer, torch.nn.ReLU):
                active = (h > 0).any(0).float().mean().item()
                assert active >= 0.25, f"seed {seed}: {active:.2f} of a layer's units active at initialization"

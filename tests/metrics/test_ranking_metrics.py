"""Ranking metrics of recommenders (deepkit.metrics.ranking): hand-computed cases, and agreement with torchmetrics'
retrieval metrics (an independent implementation) on random cases."""

from __future__ import annotations

import math

import pytest
import torch
from torchmetrics.functional.retrieval import (
    retrieval_average_precision,
    retrieval_hit_rate,
    retrieval_normalized_dcg,
    retrieval_recall,
)

from deepkit.metrics.ranking import coverage_metric, ranking_metrics, sampled_metrics


def one_user(scores, relevant, exclude=None, k=3):
    s = torch.tensor([scores], dtype=torch.float32)
    rel = torch.tensor([relevant], dtype=torch.bool)
    ex = None if exclude is None else torch.tensor([exclude], dtype=torch.bool)
    m, valid, top = ranking_metrics(s, rel, ex, k)
    return {key: float(v[0]) for key, v in m.items()}, bool(valid[0]), top[0].tolist()


def test_hand_computed_case_two_relevant_items():
    # ranking by score: items 4, 1, 3, 0, 2; relevant: 1 (rank 2) and 0 (rank 4)
    m, valid, top = one_user([0.3, 0.8, 0.1, 0.5, 0.9], [1, 1, 0, 0, 0], k=3)
    assert valid and top == [4, 1, 3]
    assert m["hr"] == 1.0
    assert m["recall"] == pytest.approx(0.5)
    assert m["ndcg"] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    assert m["map"] == pytest.approx((1 / 2) / 2)  # precision@2 = 1/2 at the only hit; / min(k, R) = 2
    m, _, _ = one_user([0.3, 0.8, 0.1, 0.5, 0.9], [1, 1, 0, 0, 0], k=5)
    assert m["recall"] == 1.0
    assert m["ndcg"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3)))
    assert m["map"] == pytest.approx((1 / 2 + 2 / 4) / 2)


def test_excluded_items_are_not_ranked_and_a_miss_scores_zero():
    # item 4 (best score) was seen before: excluded, so item 1 moves to rank 1
    m, _, top = one_user([0.3, 0.8, 0.1, 0.5, 0.9], [0, 1, 0, 0, 0], exclude=[0, 0, 0, 0, 1], k=1)
    assert top == [1] and m == {"hr": 1.0, "ndcg": 1.0, "recall": 1.0, "map": 1.0}
    m, _, _ = one_user([0.3, 0.8, 0.1, 0.5, 0.9], [1, 0, 0, 0, 0], k=2)
    assert m == {"hr": 0.0, "ndcg": 0.0, "recall": 0.0, "map": 0.0}


def test_a_short_candidate_list_pads_with_none_and_users_without_relevant_items_are_invalid():
    _, valid, top = one_user([0.3, 0.8, 0.1], [0, 0, 1], exclude=[1, 1, 0], k=3)
    assert top == [2, -1, -1] and valid
    _, valid, _ = one_user([0.3, 0.8, 0.1], [0, 0, 0], k=2)
    assert not valid


def test_ties_go_against_the_relevant_item():
    # every item scores the same (a popularity count, say): the relevant item is ranked after the others
    m, _, top = one_user([1.0, 1.0, 1.0, 1.0], [0, 0, 1, 0], k=3)
    assert 2 not in top and m["hr"] == 0.0
    m, _, _ = one_user([1.0, 1.0, 1.0, 1.0], [0, 0, 1, 0], k=4)
    assert m["ndcg"] == pytest.approx(1 / math.log2(5))


def test_sampled_protocol_rank_of_the_held_out_item():
    # column 0 is the held-out item; it ranks 3rd (two negatives above it) and ties count against it
    s = torch.tensor([[0.5, 0.9, 0.7, 0.1, 0.2], [0.5, 0.5, 0.1, 0.1, 0.1], [0.9, 0.1, 0.1, 0.1, 0.1]])
    m = sampled_metrics(s, k=2)
    assert m["hr"].tolist() == [0.0, 1.0, 1.0]
    assert m["ndcg"].tolist() == pytest.approx([0.0, 1 / math.log2(3), 1.0])
    assert sampled_metrics(s, k=3)["ndcg"][0] == pytest.approx(1 / math.log2(4))


def test_catalogue_coverage():
    cov = coverage_metric(10)
    cov.update(torch.tensor([[0, 1, 2], [2, 3, -1]]))
    cov.update(torch.tensor([[9, 0, 1]]))
    assert float(cov.compute()) == pytest.approx(5 / 10)


@pytest.mark.parametrize("seed", range(5))
def test_agrees_with_torchmetrics_retrieval_metrics(seed):
    """Random users with distinct positive scores (torchmetrics ignores relevance where the score is <= 0, and
    averages tied scores): per user, deepkit's HR, NDCG and Recall at k equal torchmetrics'; MAP equals
    torchmetrics' average precision where every relevant item is ranked (k = the whole list), since torchmetrics
    divides AP@k by the hits in the top k. Excluded items are left out of the list given to torchmetrics."""
    g = torch.Generator().manual_seed(seed)
    users, items = 12, 30
    scores = torch.rand(users, items, generator=g) + 0.01
    relevant = torch.rand(users, items, generator=g) < 0.15
    relevant[0] = False
    relevant[1, 5] = True
    exclude = (torch.rand(users, items, generator=g) < 0.2) & ~relevant
    for k in (1, 5, 10):
        m, valid, _ = ranking_metrics(scores, relevant, exclude, k)
        for u in range(users):
            keep = ~exclude[u]
            p, t = scores[u][keep], relevant[u][keep]
            assert bool(valid[u]) == bool(t.any())
            if not t.any():
                continue
            assert float(m["hr"][u]) == pytest.approx(float(retrieval_hit_rate(p, t, top_k=k)))
            assert float(m["ndcg"][u]) == pytest.approx(float(retrieval_normalized_dcg(p, t, top_k=k)), abs=1e-6)
            assert float(m["recall"][u]) == pytest.approx(float(retrieval_recall(p, t, top_k=k)))
    full, _, _ = ranking_metrics(scores, relevant, exclude, items)
    for u in range(1, users):
        keep = ~exclude[u]
        ap = float(retrieval_average_precision(scores[u][keep], relevant[u][keep]))
        assert float(full["map"][u]) == pytest.approx(ap, abs=1e-6)


def test_map_at_k_differs_from_torchmetrics_only_in_its_normalization():
    # relevant items at ranks 1 and 4, k = 3: deepkit divides by min(k, R) = 2, torchmetrics by the 1 hit
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5])
    relevant = torch.tensor([True, False, False, True, False])
    m, _, _ = ranking_metrics(scores[None], relevant[None], None, 3)
    assert float(m["map"][0]) == pytest.approx(0.5)
    assert float(retrieval_average_precision(scores, relevant, top_k=3)) == pytest.approx(1.0)

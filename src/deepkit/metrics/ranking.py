"""Top-K ranking metrics of recommenders: HR@K, NDCG@K, Recall@K, MAP@K, catalogue coverage, and the sampled
protocol's HR@K / NDCG@K (one held-out item among sampled negatives, He et al. 2017).

Full ranking scores every item of the catalogue for a user, leaves out ``exclude`` (what the user already interacted
with before the evaluated period) and looks at the top ``k`` of the rest. Ties are broken against the relevant
items (an item that scores the same as a relevant one is ranked above it): a scorer with many equal scores (item
popularity counts) gets no credit for them. Users without a relevant item are left out of the means.

Definitions, for one user with ``R`` relevant items and hits ``h_1..h_k`` (1 if the item at rank ``r`` is relevant):

* HR@K = 1 if any ``h_r``; Recall@K = sum(h) / R
* NDCG@K = sum_r h_r / log2(r + 1), divided by its best value sum_{r <= min(k, R)} 1 / log2(r + 1)
* MAP@K = sum_r h_r * precision@r / min(k, R) (RecBole's and Microsoft Recommenders' normalization; torchmetrics'
  ``RetrievalMAP(top_k=k)`` divides by the hits in the top k instead: the two agree when every relevant item is in
  the top k)
* coverage@K = distinct items in any user's top k / items in the catalogue

The functions are checked against hand-computed cases and torchmetrics' retrieval metrics in
``tests/metrics/test_ranking_metrics.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    import torchmetrics


def rank_items(scores: torch.Tensor, relevant: torch.Tensor, exclude: torch.Tensor | None, k: int) -> torch.Tensor:
    """The top ``k`` item indices ``(B, k)`` of every row of ``scores (B, I)``, excluded items last, ties broken
    against the relevant items (stable sorts: first irrelevant before relevant, then by score)."""
    scores = scores.float()
    if exclude is not None:
        scores = scores.masked_fill(exclude, float("-inf"))
    first = torch.argsort(relevant.to(torch.int8), dim=1, stable=True)  # irrelevant items first among equals
    order = torch.argsort(scores.gather(1, first), dim=1, descending=True, stable=True)
    return first.gather(1, order)[:, :k]


def discounts(k: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``1 / log2(r + 1)`` for ranks ``r = 1..k``."""
    return 1.0 / torch.log2(torch.arange(2, k + 2, device=device, dtype=torch.float32))


def ranking_metrics(
    scores: torch.Tensor, relevant: torch.Tensor, exclude: torch.Tensor | None, k: int
) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Per-user HR@K, NDCG@K, Recall@K and MAP@K under full ranking.

    Args:
        scores: ``(B, I)`` a score for every item (higher = recommended first).
        relevant: ``(B, I)`` bool, the held-out items of each user.
        exclude: ``(B, I)`` bool, items not to rank (the user's earlier interactions), or None.
        k: the cut-off.

    Returns:
        ``(metrics, valid, top)``: per-user values ``{"hr", "ndcg", "recall", "map"}`` (B,), the users that have a
        relevant item (B,) bool (the others are to be left out of means), and the top-k items (B, k) (excluded
        items that had to fill a short list are -1).

    Example:
        >>> s = torch.tensor([[0.9, 0.1, 0.5]]); rel = torch.tensor([[False, False, True]])
        >>> ranking_metrics(s, rel, None, 2)[0]["ndcg"]   # the relevant item is second: 1 / log2(3)
        tensor([0.6309])
    """
    relevant = relevant.bool()
    if exclude is not None:
        relevant = relevant & ~exclude
    top = rank_items(scores, relevant, exclude, k)
    kk = top.shape[1]
    hits = relevant.gather(1, top).float()  # (B, k)
    if exclude is not None:
        top = top.masked_fill(exclude.gather(1, top), -1)
    n_rel = relevant.sum(1).float()
    disc = discounts(kk, scores.device)
    dcg = (hits * disc).sum(1)
    ideal = torch.cumsum(disc, 0)[(n_rel.clamp(1, kk) - 1).long()]
    ranks = torch.arange(1, kk + 1, device=scores.device, dtype=torch.float32)
    precision = torch.cumsum(hits, 1) / ranks
    found = hits.sum(1)
    out = {
        "hr": (found > 0).float(),
        "ndcg": dcg / ideal,
        "recall": found / n_rel.clamp_min(1),
        "map": (precision * hits).sum(1) / n_rel.clamp(1, kk),
    }
    return out, n_rel > 0, top


def sampled_metrics(candidate_scores: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
    """HR@K and NDCG@K of the sampled protocol: column 0 of ``candidate_scores (B, 1 + n)`` is the held-out item, the
    others its sampled negatives; its rank counts the negatives scoring higher or equal (ties against it)."""
    s = candidate_scores.float()
    rank = (s[:, 1:] >= s[:, :1]).sum(1)  # 0-based
    hit = rank < k
    return {
        "hr": hit.float(),
        "ndcg": torch.where(hit, 1.0 / torch.log2(rank.float() + 2.0), torch.zeros_like(s[:, 0])),
    }


def coverage_metric(num_items: int) -> torchmetrics.Metric:
    """A torchmetrics metric: the share of the catalogue's ``num_items`` items that appear in any top-k list seen.

    ``update(top)`` takes the ``(B, k)`` item indices of :func:`ranking_metrics` (-1 = none)."""
    import torchmetrics

    class CatalogueCoverage(torchmetrics.Metric):
        full_state_update = False

        def __init__(self) -> None:
            super().__init__()
            self.add_state("seen", default=torch.zeros(num_items), dist_reduce_fx="max")

        def update(self, top: torch.Tensor) -> None:
            items = top[top >= 0].long()
            self.seen[items] = 1.0

        def compute(self) -> torch.Tensor:
            return self.seen.mean()

    return CatalogueCoverage()

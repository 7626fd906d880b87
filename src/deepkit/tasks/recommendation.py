"""Recommender tasks: rating prediction, implicit ranking with sampled negatives, next-item prediction.

* :class:`RatingTask`: MSE on ratings (the model predicts the offset from the training mean), or, for models that
  give a distribution over the rating levels (GC-MC), cross-entropy over the levels with the expected rating as the
  prediction; RMSE and MAE of the predictions clipped to the rating range. I-AutoRec (item-vector models) trains
  on the observed entries of item vectors and predicts user ``u``'s rating of item ``i`` from item ``i``'s training
  vector.
* :class:`RankingTask`: BCE over each positive and its sampled negatives (He et al. 2017), or BPR (Rendle et al.
  2009) on (positive, negative) pairs; evaluated by full ranking (HR, NDCG, Recall, MAP at K, catalogue coverage)
  and, where the data has them, on the sampled protocol's candidates (``sampled_hr@K``, ``sampled_ndcg@K``). The
  evaluation loss is the cross-entropy of the held-out items under a softmax over the items ranked.
* :class:`NextItemTask`: a sequence model predicts each next item of the training sequences, by cross-entropy over
  the catalogue or by BCE against one sampled negative per position (SASRec's loss); evaluated like ranking.

:class:`Popularity` and :class:`Biases` are the baselines (most popular; user + item biases), scored by the same
tasks so that their figures come from the same code as the models'.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepkit.errors import ConfigError
from deepkit.metrics.ranking import coverage_metric, ranking_metrics, sampled_metrics
from deepkit.tasks.base import Task

RANKING_LOSSES = ("bce", "bpr")
NEXT_ITEM_LOSSES = ("ce", "bce")


class RatingTask(Task):
    """Explicit ratings: MSE on ``rating - mean``; RMSE and MAE of ``mean + output`` clipped to ``rating_range``.

    Args:
        model: a :class:`~deepkit.models.base.Recommender` (pairs or item vectors).
        mean: the training ratings' mean.
        rating_range: (low, high), where predictions are clipped.
        reg: L2 weight on the embedding rows each batch uses (``model.penalty``), averaged over the batch.
        item_matrix: item-vector models: the training ratings as (I, U) centred vectors and their mask.
        levels: the rating levels (sorted values) for the cross-entropy loss over levels (models with
            ``level_logits``); None: MSE.
    """

    name = "rating_prediction"
    inputs_identify_examples = False  # deepkit doctor: user/item ids recur in every split
    monitor = "val_rmse"
    monitor_mode = "min"

    def __init__(
        self,
        model: nn.Module,
        mean: float,
        rating_range: tuple[float, float],
        reg: float = 0.0,
        item_matrix: tuple[torch.Tensor, torch.Tensor] | None = None,
        levels: torch.Tensor | None = None,
    ):
        super().__init__(model)
        self.mean, self.low, self.high, self.reg = float(mean), float(rating_range[0]), float(rating_range[1]), reg
        self.vectors = item_matrix[0] if item_matrix is not None else None
        self.levels = levels

    def to(self, device: torch.device | str) -> RatingTask:
        super().to(device)
        if self.vectors is not None:
            self.vectors = self.vectors.to(device)
        if self.levels is not None:
            self.levels = self.levels.to(device)
        return self

    def make_metrics(self):
        import torchmetrics
        from torchmetrics import regression as tmr

        return torchmetrics.MetricCollection(
            {"rmse": tmr.MeanSquaredError(squared=False), "mae": tmr.MeanAbsoluteError()}
        )

    def offsets(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        """The model's output for each (user, item): the predicted rating minus the mean (B,)."""
        if getattr(self.model, "inputs", "pairs") == "item_vectors":
            return self.model(self.vectors[item]).gather(1, user[:, None])[:, 0]
        return self.model(user, item)

    def predict(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        """Predicted ratings, clipped to the rating range (B,)."""
        return (self.mean + self.offsets(user, item).float()).clamp(self.low, self.high)

    def training_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if "vector" in batch:  # item vectors: the observed entries only (Sedhain et al. 2015, eq. 2)
            out = self.model(batch["vector"])
            mask = batch["mask"].float()
            return {"loss": ((out - batch["vector"]).pow(2) * mask).sum() / mask.sum().clamp_min(1)}
        user, item = batch["user"], batch["item"]
        if self.levels is not None:  # cross-entropy over the rating levels (each rating is one of them)
            logits = self.model.level_logits(user, item)
            target = torch.bucketize(batch["rating"], self.levels)
            loss = F.cross_entropy(logits, target)
            expected = logits.detach().softmax(-1) @ self.model.level_values
            logs = {"mse": F.mse_loss(expected, batch["rating"] - self.mean)}
        else:
            out = self.model(user, item)
            loss = F.mse_loss(out, batch["rating"] - self.mean)
            logs = {"mse": loss.detach()}
        if self.reg:
            loss = loss + self.reg * self.model.penalty(user, item).mean()
        return {"loss": loss, **logs}

    @torch.no_grad()
    def validation_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        raw = self.mean + self.offsets(batch["user"], batch["item"]).float()
        self.metrics.update(raw.clamp(self.low, self.high), batch["rating"])
        return {"loss": F.mse_loss(raw, batch["rating"])}

    def describe(self) -> dict[str, Any]:
        out = {"name": self.name, "mean": self.mean, "rating_range": [self.low, self.high]}
        if self.levels is not None:
            out["loss"], out["levels"] = "ce", self.levels.tolist()
        return out


class RankingTask(Task):
    """Implicit feedback: each positive against its sampled negatives (``bce``) or pairwise (``bpr``); evaluated by
    full ranking at cut-off ``k`` (and the sampled protocol where the batches carry candidates).

    Args:
        model: a pairs :class:`~deepkit.models.base.Recommender` (``score_all(user)``), or a sequence model.
        num_items: the catalogue's size (coverage).
        loss: ``bce`` or ``bpr``.
        k: the cut-off of every metric.
        reg: L2 weight on the embedding rows each batch uses.
    """

    name = "item_ranking"
    inputs_identify_examples = False  # deepkit doctor: user ids and item histories recur
    monitor_mode = "max"

    def __init__(self, model: nn.Module, num_items: int, loss: str = "bce", k: int = 10, reg: float = 0.0):
        if loss not in self.losses():
            raise ConfigError(f"task.loss: expected one of {', '.join(self.losses())}, got '{loss}'")
        if k < 1:
            raise ConfigError(f"task.k must be >= 1, got {k}")
        super().__init__(model)
        self.num_items, self.loss_name, self.k, self.reg = num_items, loss, k, reg
        self.monitor = f"val_ndcg@{k}"

    @staticmethod
    def losses() -> tuple[str, ...]:
        return RANKING_LOSSES

    def make_metrics(self):
        import torchmetrics

        names = [f"{m}@{self.k}" for m in ("hr", "ndcg", "recall", "map")]
        names += [f"sampled_{m}@{self.k}" for m in ("hr", "ndcg")]
        metrics: dict[str, Any] = {n: torchmetrics.MeanMetric() for n in names}
        metrics[f"coverage@{self.k}"] = coverage_metric(self.num_items)
        return torchmetrics.MetricCollection(metrics)

    def score_users(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Scores of every item for the batch's users (B, I)."""
        if getattr(self.model, "inputs", "pairs") == "sequence":
            return self.model.score_all(batch["seq"])
        return self.model.score_all(batch["user"])

    def training_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        user, item, negs = batch["user"], batch["item"], batch["negatives"]
        b, n = negs.shape
        pos = self.model(user, item)  # (B,)
        neg_user = user.repeat_interleave(n)
        neg = self.model(neg_user, negs.reshape(-1)).view(b, n)  # (B, n)
        if self.loss_name == "bce":  # mean log loss over the B positives and B * n negatives
            loss = (F.softplus(-pos).sum() + F.softplus(neg).sum()) / (b * (1 + n))
        else:
            loss = F.softplus(neg - pos[:, None]).mean()  # -log sigmoid(pos - neg)
        logs = {"pair_accuracy": (pos[:, None] > neg).float().mean().detach()}
        if self.reg:
            loss = loss + self.reg * (
                self.model.penalty(user, item).mean() + self.model.penalty(neg_user, negs.reshape(-1)).mean()
            )
        return {"loss": loss, **logs}

    @torch.no_grad()
    def validation_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        scores = self.score_users(batch).float()
        relevant, exclude = batch["relevant"], batch["exclude"]
        per_user, valid, top = ranking_metrics(scores, relevant, exclude, self.k)
        w = valid.float()
        for m, v in per_user.items():
            self.metrics[f"{m}@{self.k}"].update(v, w)
        self.metrics[f"coverage@{self.k}"].update(top)
        if "candidates" in batch:
            cand = batch["candidates"]
            ok = valid & relevant.gather(1, cand[:, :1])[:, 0]  # the held-out item is a positive
            for m, v in sampled_metrics(scores.gather(1, cand), self.k).items():
                self.metrics[f"sampled_{m}@{self.k}"].update(v, ok.float())
        # loss: cross-entropy of the held-out items under a softmax over the items ranked
        logp = torch.log_softmax(scores.masked_fill(exclude, float("-inf")), dim=1)
        rel = relevant & ~exclude
        loss = -(logp.masked_fill(~rel, 0.0)).sum() / rel.sum().clamp_min(1)
        return {"loss": loss}

    def compute_metrics(self) -> dict[str, float]:
        out = {}
        for k, v in self.metrics.compute().items():
            if k.startswith("sampled_") and self.metrics[k].weight == 0:
                continue  # no candidates in this data: no sampled figures
            out[k] = float(v.float().mean())
        return out

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "loss": self.loss_name, "k": self.k}


class NextItemTask(RankingTask):
    """Next-item prediction for sequence models (SASRec): at every position of a training sequence, the next item;
    ``ce``: softmax cross-entropy over the catalogue; ``bce``: the next item against one sampled negative (the
    SASRec paper's loss). Evaluated like :class:`RankingTask`, from each user's sequence before the split."""

    name = "next_item"

    @staticmethod
    def losses() -> tuple[str, ...]:
        return NEXT_ITEM_LOSSES

    def training_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        h = self.model.hidden(batch["seq"])  # (B, T, D)
        target = batch["target"]
        keep = target >= 0
        h = h[keep]  # (N, D): the positions that have a next item
        tgt = target[keep]
        if self.loss_name == "ce":
            logits = self.model.logits(h)
            loss = F.cross_entropy(logits, tgt)
            return {"loss": loss, "accuracy": (logits.argmax(-1) == tgt).float().mean().detach()}
        emb = self.model.item_vectors()
        pos = (h * emb[tgt]).sum(-1)
        neg = (h * emb[batch["negatives"][keep]]).sum(-1)
        loss = F.softplus(-pos).mean() + F.softplus(neg).mean()
        return {"loss": loss, "pair_accuracy": (pos > neg).float().mean().detach()}


# --- baselines -------------------------------------------------------------------------------------------------------
class Popularity(nn.Module):
    """Most popular: every user gets the items ranked by their number of training positives."""

    inputs = "pairs"

    def __init__(self, items: np.ndarray, num_items: int):
        super().__init__()
        self.register_buffer("counts", torch.from_numpy(np.bincount(items, minlength=num_items)).float())

    def forward(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        return self.counts[item]

    def score_all(self, user: torch.Tensor, chunk: int = 0) -> torch.Tensor:
        return self.counts.expand(len(user), -1)


class Biases(nn.Module):
    """User + item biases ``b_u + b_i`` (the rating task adds the mean), fitted by alternating least squares with
    shrinkage as Surprise's ``BaselineOnly`` does (Koren 2010, section 2.1): ``b_i = sum(r - mu - b_u) / (reg_i +
    n_i)``, then ``b_u = sum(r - mu - b_i) / (reg_u + n_u)``, ``epochs`` times. ``user=None``: the global mean."""

    inputs = "pairs"

    def __init__(
        self,
        user: np.ndarray | None,
        item: np.ndarray | None,
        rating: np.ndarray | None,
        num_users: int,
        num_items: int,
        reg_user: float = 15.0,
        reg_item: float = 10.0,
        epochs: int = 10,
    ):
        super().__init__()
        bu, bi = np.zeros(num_users), np.zeros(num_items)
        if user is not None:
            r = rating.astype(np.float64) - rating.mean()
            n_u = np.bincount(user, minlength=num_users)
            n_i = np.bincount(item, minlength=num_items)
            for _ in range(epochs):
                bi = np.bincount(item, r - bu[user], minlength=num_items) / (reg_item + n_i)
                bu = np.bincount(user, r - bi[item], minlength=num_users) / (reg_user + n_u)
        self.register_buffer("bu", torch.from_numpy(bu).float())
        self.register_buffer("bi", torch.from_numpy(bi).float())

    def forward(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        return self.bu[user] + self.bi[item]


class RecommendInference(nn.Module):
    """User ids ``(B,)`` (a sequence model: item histories ``(B, T)``, padding = ``num_items``) -> the score of every
    item ``(B, num_items)`` as ``recommend`` ranks them, for ``deepkit export``: the model's scores (rating runs: the
    training mean added, clipped to the rating range), with the items the user already has at ``-inf``: those the run
    knows for the user (``seen``, a ``(U, I)`` mask kept in the graph), or the items of the given history.

    Args:
        scorer: the model's ``export_scorer()``.
        seen: boolean ``(num_users, num_items)``; None for a sequence model.
        rating: ``(mean, low, high)`` for rating runs, else None.
        num_items: the catalogue's size (a sequence model's padding id).
    """

    def __init__(self, scorer: nn.Module, seen: torch.Tensor | None, rating: tuple[float, float, float] | None,
                 num_items: int):  # fmt: skip
        super().__init__()
        self.scorer, self.rating, self.num_items = scorer, rating, num_items
        self.register_buffer("seen", seen if seen is not None else torch.zeros(0, num_items, dtype=torch.bool))

    def forward(self, user: torch.Tensor) -> torch.Tensor:
        return self.scores(user).masked_fill(self.seen[user], float("-inf"))

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        scores = self.scorer(x).float()
        if self.rating is not None:
            mean, lo, hi = self.rating
            scores = (scores + mean).clamp(lo, hi)
        return scores


class HistoryRecommendInference(RecommendInference):
    """:class:`RecommendInference` of a sequence model: item histories ``(B, T)`` in, their items at ``-inf``."""

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        marks = torch.zeros(history.shape[0], self.num_items + 1, device=history.device).scatter(1, history, 1.0)
        return self.scores(history).masked_fill(marks[:, : self.num_items] > 0, float("-inf"))  # padding dropped

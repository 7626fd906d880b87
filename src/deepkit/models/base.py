"""Conventions every model family follows; the classifier interface follows timm's.

Example inputs (every registered model)
---------------------------------------
``model.example_input(batch_size=2)`` returns a ``dict`` of keyword arguments for ``forward``: one small valid
call for the model *as configured* (its ``in_channels`` and image size, ``vocab_size``, context length, latent size,
...), so ``model(**model.example_input())`` always runs. Keys are ``forward``'s parameter names (``{"x": images}``,
``{"z": noise}``, ``{"input_ids": ..., "attention_mask": ...}``, ``{"src": ..., "src_lengths": ..., "tgt_in": ...}``).
The values come from a private ``torch.Generator`` seeded inside (see :func:`example_generator`): every call returns
the same tensors and the global RNG streams (model init, data order, dropout) are left untouched. Tensors are put on
the device of the model's parameters. Families may take extra keyword options (sequence models: ``seq_len``).

Classifiers
-----------
``forward(x) = forward_head(forward_features(x))``, bit for bit; transfer learning swaps the head with
``reset_classifier(num_classes)`` and finds it with ``get_classifier()``.

* ``forward_head(feats, pre_logits=True)`` returns the vector the classifier layer sees, ``(B, num_features)``
  (pooled, after any hidden FC layers and dropout); this is what feature-space metrics (FID) and linear probes use.
* CNN backbones (``simple_cnn``, ``lenet5``, ``alexnet``, ``vgg*``, ``resnet*``): ``forward_features(x)`` returns
  the *unpooled* final feature map ``(B, C, H, W)``; ``forward_head`` does the pooling (and, for LeNet, AlexNet
  and VGG, the hidden FC layers) and the classifier.
* Per-stage maps for FPN / U-Net decoders: ``forward_features(x, stages=True)`` returns a list of maps, one per
  stage, described by ``feature_info``: a list of ``{"num_chs": C, "reduction": stride, "module": name}`` (timm's
  keys; ``reduction`` is the nominal stride with respect to the input, ``module`` the name, as in
  ``named_modules()``, of the module whose output the map is). The last stage is ``forward_features(x)``.
  Sequence and dense classifiers (``mlp``, recurrent ones) have no spatial stages and no ``feature_info``;
  their ``forward_features`` is already a vector.
"""

from __future__ import annotations

import torch
from torch import nn

EXAMPLE_SEED = 0


def example_generator(seed: int = EXAMPLE_SEED) -> torch.Generator:
    """A fresh CPU generator for ``example_input``: fixed values, and the global RNG is not consumed."""
    return torch.Generator().manual_seed(seed)


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter (or buffer); CPU for a model without tensors."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def id_embeddings(num_users: int, num_items: int, dim: int, std: float) -> tuple[nn.Embedding, nn.Embedding]:
    """A user table and an item table of ``dim`` factors, both drawn ``N(0, std)`` (as MF and NCF start)."""
    user, item = nn.Embedding(num_users, dim), nn.Embedding(num_items, dim)
    nn.init.normal_(user.weight, std=std)
    nn.init.normal_(item.weight, std=std)
    return user, item


def random_ids(g: torch.Generator, vocab_size: int, shape: tuple[int, ...], low: int = 0) -> torch.Tensor:
    """Token ids in ``[low, vocab_size)`` (``low`` is lowered when the vocabulary is smaller), int64."""
    return torch.randint(min(low, vocab_size - 1), vocab_size, shape, generator=g, device="cpu")


class Classifier(nn.Module):
    """Base class: subclasses define ``forward_features``, ``forward_head`` and ``reset_classifier``.

    The default ``example_input`` is an image batch ``{"x": (B, cfg.in_channels, H, W)}`` of size
    ``example_size``; non-image classifiers override it.
    """

    min_size: int = 1  # smallest image side the model accepts (image classifiers set it)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_head(self, feats: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def reset_classifier(self, num_classes: int) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def get_classifier(self) -> nn.Module:
        """The head module (its parameters are what transfer learning replaces); ``self.head`` by default."""
        return self.head

    def check_input(self, shape: tuple[int, ...]) -> None:
        """Raise ``ShapeError`` if one sample of this ``shape`` (no batch dim) cannot go through the model."""

    @property
    def example_size(self) -> tuple[int, int]:
        """(H, W) of ``example_input``'s images: 32 px (CIFAR's size), or ``min_size`` if that is larger."""
        s = max(32, self.min_size)
        return s, s

    def example_input(self, batch_size: int = 2) -> dict[str, torch.Tensor]:
        """``{"x": images (batch_size, in_channels, *example_size)}``, standard normal (see the module docstring)."""
        x = torch.randn(
            batch_size, self.cfg.in_channels, *self.example_size, generator=example_generator(), device="cpu"
        )
        return {"x": x.to(model_device(self))}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class Recommender(nn.Module):
    """Base class of recommenders (``biased_mf``, ``gmf``, ``ncf_mlp``, ``neumf``, ``i_autorec``, ``two_tower``,
    ``sasrec``). Users and items are dense ids ``0..num_users-1`` / ``0..num_items-1`` (the run's id maps).

    ``inputs`` says what the model reads, and so what the data gives it:

    * ``"pairs"``: ``forward(user (B,), item (B,)) -> scores (B,)``; ``score_all(user) -> (B, num_items)``;
    * ``"item_vectors"``: ``forward(x (B, num_users)) -> (B, num_users)``, an item's ratings by every user (AutoRec);
    * ``"sequence"``: ``forward(seq (B, T)) -> (B, T, num_items)`` next-item scores at every position;
      ``score_all(seq) -> (B, num_items)`` after the last position (SASRec).

    Scores are raw: a rating task adds the training mean; a ranking task reads them as logits. ``item_vectors()``
    gives one vector per item for nearest-item queries, and ``penalty(user, item)`` the squared norms of the rows a
    batch looked up (L2 regularization of the embeddings a batch uses, as in SGD matrix factorization).
    """

    inputs: str = "pairs"

    def user_tables(self) -> list[nn.Embedding]:
        """Embedding tables indexed by user id (for :meth:`penalty`)."""
        return []

    def item_tables(self) -> list[nn.Embedding]:
        """Embedding tables indexed by item id (for :meth:`penalty`)."""
        return []

    def penalty(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        """``(B,)`` sum of squares of every embedding row the pair ``(user, item)`` uses."""
        total = torch.zeros(len(user), device=user.device)
        for tables, ids in ((self.user_tables(), user), (self.item_tables(), item)):
            for table in tables:
                total = total + table(ids).pow(2).sum(-1)
        return total

    def score_all(self, user: torch.Tensor, chunk: int = 32) -> torch.Tensor:
        """Scores of every item for each user ``(B, num_items)``: ``forward`` on every pair, ``chunk`` users at a
        time (models with a cheaper form override it)."""
        items = torch.arange(self.cfg.num_items, device=user.device)
        rows = []
        for part in user.split(chunk):
            u = part.repeat_interleave(len(items))
            rows.append(self(u, items.repeat(len(part))).view(len(part), -1))
        return torch.cat(rows) if rows else torch.empty(0, len(items), device=user.device)

    def item_vectors(self) -> torch.Tensor:
        """One vector per item ``(num_items, D)``, compared by cosine similarity for similar items."""
        raise NotImplementedError  # pragma: no cover - each model says which of its representations it is

    def export_scorer(self, item_matrix: torch.Tensor | None = None) -> nn.Module:
        """``score_all`` as one module for ``deepkit export``: user ids ``(B,)`` -> scores ``(B, num_items)`` (a
        sequence model: item histories ``(B, T)``), without a Python loop over chunks, so ``torch.export`` traces it
        for any batch. The default scores every (user, item) pair with ``forward``; models with a cheaper form
        override it. ``item_matrix``: the known ratings as item vectors, for models that read them (AutoRec)."""
        return PairScorer(self)

    def pair_example(self, batch_size: int) -> dict[str, torch.Tensor]:
        """``{"user": (B,), "item": (B,)}`` ids from a private generator (see :func:`example_generator`)."""
        g = example_generator()
        dev = model_device(self)
        return {
            "user": random_ids(g, self.cfg.num_users, (batch_size,)).to(dev),
            "item": random_ids(g, self.cfg.num_items, (batch_size,)).to(dev),
        }


class PairScorer(nn.Module):
    """User ids ``(B,)`` -> ``forward`` on every (user, item) pair, ``(B, num_items)``."""

    def __init__(self, model: Recommender):
        super().__init__()
        self.model = model

    def forward(self, user: torch.Tensor) -> torch.Tensor:
        n = self.model.cfg.num_items
        items = torch.arange(n, device=user.device)
        return self.model(user.repeat_interleave(n), items.repeat(user.shape[0])).view(-1, n)


class ScoreAll(nn.Module):
    """The model's own ``score_all`` (one where every user's scores are a few matrix products, with no chunk loop)."""

    def __init__(self, model: Recommender):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.score_all(x)

"""The data of recommender runs: :class:`RecData` (a :class:`~deepkit.data.DataModule`) and its loaders.

What a loader yields depends on the task and on what the model reads:

* rating prediction, models of (user, item) pairs: ``{"user", "item", "rating"}`` batches of interactions;
* rating prediction, item-vector models (I-AutoRec): training batches of items ``{"vector": (B, U), "mask": (B, U)}``
  (each item's training ratings, centred on the global mean); evaluation as pairs;
* ranking (implicit feedback): training positives ``{"user", "item", "negatives": (B, n)}`` with ``n`` negatives
  each, drawn afresh every epoch from a generator seeded by (seed, epoch) among the items the user has no training
  positive with; evaluation batches of users ``{"user", "exclude": (B, I), "relevant": (B, I)}`` (+ ``"candidates"``
  for the sampled protocol, + ``"seq"`` for sequence models);
* next-item prediction (sequence models): ``{"seq": (B, T), "target": (B, T)}``: each user's training items in time
  order, left-padded with ``num_items``; target -1 where there is none.

Every order and every draw is a pure function of (seed, epoch), so a resumed run sees the same batches.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from deepkit.data.interactions import (
    CANONICAL,
    Catalogue,
    Interactions,
    PairSet,
    RawTable,
    RecDataConfig,
    check_ratings,
    check_split,
    index_table,
    read_features,
    read_table,
    resolve_duplicates,
    sample_candidates,
    sample_negatives,
    sorted_ids,
    split_rows,
)
from deepkit.data.module import DataModule
from deepkit.data.module import check_split as check_split_name
from deepkit.data.preprocess import Preprocessing
from deepkit.errors import ConfigError, DataError

KINDS = ("rating", "ranking", "next_item")
INPUTS = ("pairs", "item_vectors", "sequence")


def epoch_seed(seed: int, epoch: int, stream: int = 0) -> int:
    """The seed of an epoch's draws (one stream per use), as the other loaders derive theirs."""
    return seed * 1_000_003 + epoch + 7919 * stream


class EpochLoader:
    """Shared by the loaders here: batch size, shuffling by (seed, epoch), resuming mid-epoch, the device."""

    def __init__(self, n: int, batch_size: int, shuffle: bool, seed: int):
        self.n, self.batch_size, self.shuffle, self.seed = n, batch_size, shuffle, seed
        self.epoch = self.start_batch = 0
        self.device = torch.device("cpu")

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    @property
    def num_samples(self) -> int:
        return self.n

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def to(self, device: torch.device | str):
        self.device = torch.device(device)
        return self

    def order(self) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.n)
        return torch.randperm(self.n, generator=torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch)))

    def batches(self) -> Iterator[torch.Tensor]:
        order = self.order()
        for b in range(self.start_batch, len(self)):
            yield order[b * self.batch_size : (b + 1) * self.batch_size]
        self.start_batch = 0


class PairLoader(EpochLoader):
    """Interactions as ``{"user", "item", "rating"}``; with ``negatives > 0`` (ranking) ``{"user", "item",
    "negatives": (B, n)}``, the negatives never among ``positives`` (the user's training positives)."""

    def __init__(
        self,
        table: Interactions,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        negatives: int = 0,
        positives: PairSet | None = None,
        num_items: int = 0,
    ):
        super().__init__(len(table), batch_size, shuffle, seed)
        self.user = torch.from_numpy(table.user)
        self.item = torch.from_numpy(table.item)
        self.rating = torch.from_numpy(table.rating.astype(np.float32))
        self.negatives, self.positives, self.num_items = negatives, positives, num_items

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        negs = None
        if self.negatives:  # the whole epoch's draws at once: the same whatever batch a resumed run starts at
            rng = np.random.default_rng(epoch_seed(self.seed, self.epoch, 1))
            negs = torch.from_numpy(
                sample_negatives(self.user.numpy(), self.negatives, self.positives, self.num_items, rng)
            )
        for idx in self.batches():
            out = {"user": self.user[idx].to(self.device), "item": self.item[idx].to(self.device)}
            if negs is not None:
                out["negatives"] = negs[idx].to(self.device)
            else:
                out["rating"] = self.rating[idx].to(self.device)
            yield out


class ItemVectorLoader(EpochLoader):
    """Items as rating vectors over users (I-AutoRec): ``{"vector": (B, U), "mask": (B, U)}``."""

    def __init__(self, vectors: torch.Tensor, mask: torch.Tensor, batch_size: int, shuffle: bool, seed: int):
        keep = mask.any(1)  # items without a training rating teach nothing
        self.vectors, self.mask = vectors[keep], mask[keep]
        super().__init__(len(self.vectors), batch_size, shuffle, seed)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for idx in self.batches():
            yield {"vector": self.vectors[idx].to(self.device), "mask": self.mask[idx].to(self.device)}


class SequenceLoader(EpochLoader):
    """Users' training sequences for next-item prediction: ``{"seq": (B, T), "target": (B, T)}`` (+ ``"negatives":
    (B, T)`` one per position, drawn each epoch among the items the user has no training positive with)."""

    def __init__(
        self,
        seq: torch.Tensor,
        target: torch.Tensor,
        users: torch.Tensor,
        batch_size: int,
        shuffle: bool,
        seed: int,
        negatives: int = 0,
        positives: PairSet | None = None,
        num_items: int = 0,
    ):
        super().__init__(len(seq), batch_size, shuffle, seed)
        self.seq, self.target, self.users = seq, target, users
        self.negatives, self.positives, self.num_items = negatives, positives, num_items

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        negs = None
        if self.negatives:
            rng = np.random.default_rng(epoch_seed(self.seed, self.epoch, 1))
            t = self.seq.shape[1]
            negs = sample_negatives(self.users.numpy(), t, self.positives, self.num_items, rng)
            negs = torch.from_numpy(negs)
        for idx in self.batches():
            out = {"seq": self.seq[idx].to(self.device), "target": self.target[idx].to(self.device)}
            if negs is not None:
                out["negatives"] = negs[idx].to(self.device)
            yield out


class CSR:
    """Items per row (user) in compressed sparse rows; ``dense(rows)`` -> a (len(rows), num_items) bool mask."""

    def __init__(self, rows: np.ndarray, items: np.ndarray, num_rows: int, num_items: int):
        order = np.lexsort((items, rows))
        self.indices = torch.from_numpy(items[order].astype(np.int64))
        self.indptr = torch.from_numpy(np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=num_rows))]))
        self.num_items = num_items

    def dense(self, rows: torch.Tensor) -> torch.Tensor:
        starts, ends = self.indptr[rows], self.indptr[rows + 1]
        lengths = ends - starts
        out = torch.zeros(len(rows), self.num_items, dtype=torch.bool)
        if int(lengths.sum()) == 0:
            return out
        r = torch.repeat_interleave(torch.arange(len(rows)), lengths)
        first = torch.repeat_interleave(torch.cumsum(lengths, 0) - lengths, lengths)
        pos = torch.arange(int(lengths.sum())) - first + torch.repeat_interleave(starts, lengths)
        out[r, self.indices[pos]] = True
        return out


class RankingLoader(EpochLoader):
    """Evaluation by ranking, a batch of users at a time: ``{"user", "exclude", "relevant"}`` (+ ``"candidates"``,
    ``"seq"``). ``exclude``: what each user interacted with before the evaluated split; ``relevant``: their
    positives in it."""

    def __init__(
        self,
        users: np.ndarray,
        exclude: CSR,
        relevant: CSR,
        batch_size: int,
        candidates: np.ndarray | None = None,
        seq: torch.Tensor | None = None,
    ):
        super().__init__(len(users), batch_size, False, 0)
        self.users = torch.from_numpy(users.astype(np.int64))
        self.exclude, self.relevant = exclude, relevant
        self.candidates = None if candidates is None else torch.from_numpy(candidates)
        self.seq = seq

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for idx in self.batches():
            out = {
                "user": self.users[idx],
                "exclude": self.exclude.dense(idx),
                "relevant": self.relevant.dense(idx),
            }
            if self.candidates is not None:
                out["candidates"] = self.candidates[idx]
            if self.seq is not None:
                out["seq"] = self.seq[idx]
            yield {k: v.to(self.device) for k, v in out.items()}


def padded_sequences(table: Interactions, users: np.ndarray, length: int, pad: int) -> torch.Tensor:
    """The latest ``length`` items of each of ``users`` in ``table``, in time order, left-padded with ``pad``."""
    order = np.lexsort((np.arange(len(table)), table.time, table.user))
    u, it = table.user[order], table.item[order]
    out = np.full((len(users), length), pad, dtype=np.int64)
    starts = np.searchsorted(u, users, side="left")
    ends = np.searchsorted(u, users, side="right")
    for r, (s, e) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
        items = it[max(s, e - length) : e]
        if len(items):
            out[r, length - len(items) :] = items
    return torch.from_numpy(out)


def sequence_windows(table: Interactions, users: np.ndarray, length: int, pad: int) -> tuple[np.ndarray, torch.Tensor]:
    """Each user's items in time order cut into windows of ``length`` from the latest back, consecutive windows
    sharing one item (the last input of one is the first of the next), so every transition is a training target
    once an epoch; the earliest window is left-padded with ``pad``. Returns (the user of each window, windows)."""
    order = np.lexsort((np.arange(len(table)), table.time, table.user))
    u, it = table.user[order], table.item[order]
    starts = np.searchsorted(u, users, side="left")
    ends = np.searchsorted(u, users, side="right")
    owners, rows = [], []
    for user, s, e in zip(users.tolist(), starts.tolist(), ends.tolist(), strict=True):
        end = e
        while end - s >= 2:  # a window needs one input and one target
            items = it[max(s, end - length) : end]
            row = np.full(length, pad, dtype=np.int64)
            row[length - len(items) :] = items
            rows.append(row)
            owners.append(user)
            end -= length - 1
    return np.asarray(owners, dtype=np.int64), torch.from_numpy(
        np.stack(rows) if rows else np.zeros((0, length), np.int64)
    )


# --- the data module --------------------------------------------------------------------------------------------------
@dataclass
class RecData(DataModule):
    """A recommender's data: the catalogue (id maps, titles, side features), the interactions of each split (all
    ratings, raw values), and what the task needs (see the module docstring)."""

    catalogue: Catalogue
    parts: dict[str, Interactions]
    kind: str  # rating, ranking, next_item
    inputs: str  # pairs, item_vectors, sequence
    rating_range: tuple[float, float]
    global_mean: float
    threshold: float | None = None  # ranking: ratings >= threshold are positives (None: all)
    negatives: int = 0  # training negatives per positive (ranking), per position (next_item with bce)
    max_len: int = 200
    candidates: dict[str, np.ndarray] = field(default_factory=dict)  # split -> (eval users, 1 + n)
    batch_size: int = 1024
    eval_batch_size: int = 1024
    notes: list[str] = field(default_factory=list)
    preprocessing: Preprocessing = field(default_factory=Preprocessing)

    train = property(lambda self: True if self.has("train") else None)
    val = property(lambda self: True if self.has("val") else None)
    test = property(lambda self: True if self.has("test") else None)

    @property
    def num_users(self) -> int:
        return self.catalogue.num_users

    @property
    def num_items(self) -> int:
        return self.catalogue.num_items

    def positives(self, split: str) -> Interactions:
        """The split's positives: every interaction, or those rated >= the threshold."""
        t = self.parts[split]
        if self.threshold is None or self.kind == "rating":
            return t
        return t.take(np.nonzero(t.rating >= self.threshold)[0])

    def history(self, split: str) -> Interactions:
        """What is known before ``split``: train (for val), train + val (for test and for train itself)."""
        if split == "val":
            return self.parts["train"]
        return Interactions.concat(self.parts["train"], self.parts["val"]) if split == "test" else self.parts["train"]

    def eval_users(self, split: str) -> np.ndarray:
        return np.unique(self.parts[split].user)

    def sequence_users(self) -> np.ndarray:
        """Users with at least two training positives (one input, one target)."""
        counts = np.bincount(self.positives("train").user, minlength=self.num_users)
        return np.nonzero(counts >= 2)[0]

    def num_windows(self) -> int:
        """Training windows of a sequence model (see :func:`sequence_windows`)."""
        counts = np.bincount(self.positives("train").user, minlength=self.num_users)
        counts = counts[counts >= 2]
        return int(np.ceil((counts - 1) / self.max_len).sum())

    def item_matrix(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Training ratings as item vectors: (I, U) centred on the global mean (0 where unrated) and the mask."""
        t = self.parts["train"]
        vectors = torch.zeros(self.num_items, self.num_users)
        mask = torch.zeros(self.num_items, self.num_users, dtype=torch.bool)
        vectors[t.item, t.user] = torch.from_numpy(t.rating - self.global_mean).float()
        mask[t.item, t.user] = True
        return vectors, mask

    def sizes(self) -> dict[str, int]:
        out = {}
        for split in ("train", "val", "test"):
            if not len(self.parts.get(split, ())):
                continue
            if split == "train":
                n = {
                    "pairs": len(self.positives("train")),
                    "item_vectors": int(np.unique(self.parts["train"].item).size),
                    "sequence": self.num_windows(),
                }[self.inputs]
            elif self.kind == "rating":
                n = len(self.parts[split])
            else:
                n = len(self.eval_users(split))
            out[split] = n
        return out

    def loader(self, name: str, shuffle: bool | None = None, seed: int = 0, drop_last: bool = False):
        check_split_name(name)
        if not self.has(name):
            raise DataError(f"this dataset has no '{name}' split")
        shuffle = name == "train" if shuffle is None else shuffle
        if name == "train":
            return self._train_loader(shuffle, seed)
        if self.kind == "rating":
            return PairLoader(self.parts[name], self.eval_batch_size)
        return self.ranking_loader(name)

    def _train_loader(self, shuffle: bool, seed: int):
        bs = self.batch_size
        if self.inputs == "item_vectors":
            vectors, mask = self.item_matrix()
            return ItemVectorLoader(vectors, mask, bs, shuffle, seed)
        pos = self.positives("train")
        pairs = PairSet(pos.user, pos.item, self.num_items)
        if self.inputs == "sequence":
            users, full = sequence_windows(pos, self.sequence_users(), self.max_len + 1, self.num_items)
            target = full[:, 1:].clone()
            target[target == self.num_items] = -1
            return SequenceLoader(
                full[:, :-1], target, torch.from_numpy(users), bs, shuffle, seed, self.negatives, pairs, self.num_items
            )
        if self.kind == "rating":
            return PairLoader(pos, bs, shuffle, seed)
        return PairLoader(pos, bs, shuffle, seed, self.negatives, pairs, self.num_items)

    def ranking_loader(self, split: str) -> RankingLoader:
        users = self.eval_users(split)
        local = np.full(self.num_users, -1, dtype=np.int64)
        local[users] = np.arange(len(users))
        hist = self.history(split)
        keep = local[hist.user] >= 0
        exclude = CSR(local[hist.user[keep]], hist.item[keep], len(users), self.num_items)
        pos = self.positives(split)
        relevant = CSR(local[pos.user], pos.item, len(users), self.num_items)
        seq = None
        if self.inputs == "sequence":
            seq = padded_sequences(self._sequence_history(split), users, self.max_len, self.num_items)
        return RankingLoader(users, exclude, relevant, self.eval_batch_size, self.candidates.get(split), seq)

    def _sequence_history(self, split: str) -> Interactions:
        """A sequence model reads the positives known before ``split``."""
        hist = self.history(split)
        if self.threshold is None:
            return hist
        return hist.take(np.nonzero(hist.rating >= self.threshold)[0])


# --- building it ------------------------------------------------------------------------------------------------------
def read_source(
    cfg: RecDataConfig, notes: list[str], saved: Catalogue | None = None
) -> tuple[Catalogue, RawTable, RawTable | None, tuple[float, float]]:
    """The catalogue (``saved``'s ids for a table of your own, when given), the table (or a canonical split's base),
    its test table, and the rating range."""
    if cfg.name == "movielens100k":
        from deepkit.data.movielens import RATING_RANGE, movielens_folder, read_catalogue, read_movielens

        folder = movielens_folder(cfg.path)
        catalogue = read_catalogue(folder)
        raw, test = read_movielens(folder, cfg.split)
        low, high = cfg.rating_range or RATING_RANGE
        return catalogue, raw, test, (float(low), float(high))
    if cfg.split in CANONICAL:
        raise ConfigError(
            f"data.split={cfg.split} is one of MovieLens' own splits; for a table of your own use split=random, "
            "temporal or leave_one_out"
        )
    if not cfg.path:
        raise ConfigError("data.path is not set; expected the path of an interactions table (CSV/TSV)")
    raw = resolve_duplicates(read_table(cfg.path, cfg.columns, cfg.sep), cfg.duplicates, notes)
    low, high = cfg.rating_range or (float(raw.rating.min()), float(raw.rating.max()))
    users, items = (saved.users, saved.items) if saved is not None else (sorted_ids(raw.users), sorted_ids(raw.items))
    catalogue = Catalogue(
        users,
        items,
        user_features=read_features(cfg.user_features, users, "user"),
        item_features=read_features(cfg.item_features, items, "item"),
    )
    return catalogue, raw, None, (float(low), float(high))


def build_rec_data(
    cfg: RecDataConfig,
    kind: str,
    inputs: str,
    negatives: int = 0,
    saved: Catalogue | None = None,
    saved_candidates: dict[str, np.ndarray] | None = None,
) -> RecData:
    """Read, index and split the data ``cfg`` names for a task of ``kind`` and a model reading ``inputs``.

    Args:
        saved: a trained run's catalogue: the ids are mapped through it (a table naming other ids is an error).
        saved_candidates: a trained run's sampled-protocol candidates, reused as they were drawn.
    """
    if cfg.rating_range is not None and (len(cfg.rating_range) != 2 or cfg.rating_range[0] >= cfg.rating_range[1]):
        raise ConfigError(f"data.rating_range must be [low, high] with low < high, got {cfg.rating_range}")
    for key in ("batch_size", "eval_batch_size"):
        if getattr(cfg, key) < 1:
            raise ConfigError(f"data.{key} must be >= 1, got {getattr(cfg, key)}")
    notes: list[str] = []
    catalogue, raw, raw_test, (low, high) = read_source(cfg, notes, saved)
    check_split(cfg, raw.has_time)
    check_ratings(raw, low, high)
    if raw_test is not None:
        check_ratings(raw_test, low, high)
    if saved is not None and saved.fingerprint() != catalogue.fingerprint() and cfg.name == "movielens100k":
        raise DataError(
            f"the MovieLens files at {cfg.path or 'DATA_ROOT'} list other users/items than the run was trained "
            f"with (id-map fingerprint {catalogue.fingerprint()} vs {saved.fingerprint()})"
        )
    table = index_table(raw, catalogue)
    test_rows = None
    if raw_test is not None:
        test = index_table(raw_test, catalogue)
        test_rows = np.arange(len(table), len(table) + len(test))
        table = Interactions.concat(table, test)
    rows = split_rows(table, cfg, test_rows)
    parts = {k: table.take(v) for k, v in rows.items()}
    if not len(parts["train"]):
        raise DataError(f"{raw.source}: the training split is empty (split={cfg.split}); expected more interactions")
    threshold = None if kind == "rating" else cfg.implicit_threshold
    data = RecData(
        catalogue,
        parts,
        kind,
        inputs,
        (low, high),
        float(parts["train"].rating.mean()),
        threshold,
        negatives,
        cfg.max_len,
        batch_size=cfg.batch_size,
        eval_batch_size=cfg.eval_batch_size,
        notes=notes,
    )
    if kind != "rating":
        free = catalogue.num_items - PairSet(table.user, table.item, catalogue.num_items).count_per_user(
            catalogue.num_users
        )
        if negatives and free.min() < 1:
            raise DataError("a user has interacted with every item: there is no negative to sample for them")
        if not len(data.positives("train")):
            raise DataError(
                f"no training interaction is a positive (data.implicit_threshold={cfg.implicit_threshold}); "
                "lower the threshold"
            )
    if kind != "rating" and cfg.split == "leave_one_out" and cfg.eval_negatives > 0:
        seen = PairSet(table.user, table.item, catalogue.num_items)
        for split in ("val", "test"):
            if not len(parts[split]):
                continue
            users = data.eval_users(split)
            order = np.argsort(parts[split].user, kind="stable")
            targets = parts[split].item[order]  # one held-out item per user in leave-one-out
            drawn = sample_candidates(
                users, targets, cfg.eval_negatives, seen, catalogue.num_items, cfg.seed + (split == "test")
            )
            old = (saved_candidates or {}).get(split)
            if old is not None:
                if old.shape != drawn.shape or not np.array_equal(old[:, 0], drawn[:, 0]):
                    raise DataError(
                        f"the run's saved sampled candidates ({split}: {old.shape}) do not fit this data's held-out "
                        f"items ({drawn.shape}); evaluate on the data the run was trained with"
                    )
                drawn = old
            data.candidates[split] = drawn
    return data

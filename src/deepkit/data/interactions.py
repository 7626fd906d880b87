"""Interaction tables (user, item, rating, time): reading, id maps, side features, splits, negative sampling.

A recommender's data is a table of interactions. Users and items get dense internal ids ``0..U-1`` / ``0..I-1``
through a :class:`Catalogue` (raw id strings, titles, side features) that a run saves, so a trained model is always
asked about the users and items it was trained with.

Splits (``data.split``):

* ``u1``..``u5``, ``ua``, ``ub``: MovieLens' canonical base/test files (``deepkit.data.movielens``);
* ``random``: a seeded share ``test_fraction`` of all interactions is the test split;
* ``temporal``: the latest ``test_fraction`` of all interactions (by time) is the test split;
* ``leave_one_out``: each user's latest interaction is the test split and the one before the validation split
  (users with 2 interactions give their latest to test only, users with 1 keep it for training); ties in time are
  broken by the table's row order.

Except for leave-one-out, the validation split is a share ``val_fraction`` of the training part (random, seeded; the
latest ones for ``temporal``). Everything random is a pure function of ``data.seed``.
"""

from __future__ import annotations

import csv
import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from deepkit.errors import ConfigError, DataError, suggest

SPLITS = ("u1", "u2", "u3", "u4", "u5", "ua", "ub", "random", "temporal", "leave_one_out")
CANONICAL = SPLITS[:7]


@dataclass
class ColumnsConfig:
    """Column names of an interactions table (``data.columns``); ``rating``/``timestamp`` null when absent."""

    user: str = "user"
    item: str = "item"
    rating: str | None = "rating"  # null: every row is one implicit interaction (rating 1)
    timestamp: str | None = "timestamp"  # null: no time (the temporal and leave-one-out splits need it)


@dataclass
class FeaturesConfig:
    """A side-feature table of your own (``data.user_features`` / ``data.item_features``): one row per user (item)."""

    path: str | None = None  # CSV/TSV with a header row
    id: str = "id"  # the column holding the user (item) ids, as in the interactions table
    categorical: list[str] = field(default_factory=list)  # one-hot columns
    numeric: list[str] = field(default_factory=list)  # standardized columns (0/1 flags too)


@dataclass
class RecDataConfig:
    """The ``data`` section of recommender recipes."""

    name: str = "movielens100k"  # movielens100k, or interactions (your own CSV/TSV table)
    path: str | None = None  # MovieLens folder (default DATA_ROOT/movielens-100k/ml-100k), or the table file
    split: str = "u1"  # u1..u5, ua, ub (MovieLens' own), random, temporal, leave_one_out
    test_fraction: float = 0.2  # random and temporal splits
    val_fraction: float = 0.05  # share of the training part held out for validation (not leave_one_out)
    implicit_threshold: float | None = None  # ranking tasks: ratings >= this are positives; null: every interaction
    eval_negatives: int = 99  # sampled protocol (leave_one_out): negatives drawn once per data.seed; 0 = off
    max_len: int = 200  # sequence models: the latest interactions a user's sequence keeps
    seed: int = 0  # splits, validation share, sampled candidates
    batch_size: int = 1024
    eval_batch_size: int = 1024  # interactions (rating tasks) or users (ranking) per evaluation batch
    columns: ColumnsConfig = field(default_factory=ColumnsConfig)
    sep: str | None = None  # the table's separator; null: tab for .tsv/.tab/.data files, else comma
    rating_range: list[float] | None = (
        None  # [low, high]: ratings outside are an error; null: MovieLens' [1, 5], else the observed range
    )
    duplicates: Literal["error", "last", "mean"] = (
        "error"  # a (user, item) pair twice: stop, keep the last row, or average
    )
    user_features: FeaturesConfig = field(default_factory=FeaturesConfig)  # your own table's side features
    item_features: FeaturesConfig = field(default_factory=FeaturesConfig)


DATASETS = {
    "movielens100k": "MovieLens 100k (GroupLens): 100,000 ratings 1-5 of 1,682 movies by 943 users, with titles, "
    "genres, release years and user demographics; canonical splits u1-u5, ua, ub",
    "interactions": "your own table (CSV/TSV; data.path, column names in data.columns)",
}


# --- the table --------------------------------------------------------------------------------------------------------
@dataclass
class Interactions:
    """Interactions with internal ids (numpy arrays of one length)."""

    user: np.ndarray  # int64
    item: np.ndarray  # int64
    rating: np.ndarray  # float32 (1.0 for implicit data)
    time: np.ndarray  # int64 (0 without timestamps)

    def __len__(self) -> int:
        return len(self.user)

    def take(self, idx: np.ndarray) -> Interactions:
        return Interactions(self.user[idx], self.item[idx], self.rating[idx], self.time[idx])

    @staticmethod
    def concat(*parts: Interactions) -> Interactions:
        return Interactions(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in ("user", "item", "rating", "time"))
        )


@dataclass
class RawTable:
    """A table as read: raw id strings, ratings, times and the file line of each row (for messages)."""

    users: list[str]
    items: list[str]
    rating: np.ndarray
    time: np.ndarray
    has_time: bool
    lines: np.ndarray
    source: str


# --- side features ----------------------------------------------------------------------------------------------------
@dataclass
class FeatureColumn:
    """One side-feature column: a category (one-hot over ``values``), a number (standardized) or a 0/1 flag."""

    name: str
    kind: Literal["category", "number", "flag"]
    values: list[str] = field(default_factory=list)
    mean: float = 0.0
    std: float = 1.0

    @property
    def width(self) -> int:
        return len(self.values) if self.kind == "category" else 1


def fit_columns(rows: dict[str, list[Any]], kinds: dict[str, str]) -> list[FeatureColumn]:
    """Feature columns fitted on ``rows`` (column -> values): vocabularies, means and standard deviations."""
    out = []
    for name, kind in kinds.items():
        values = rows[name]
        if kind == "category":
            out.append(FeatureColumn(name, "category", sorted({str(v) for v in values})))
        elif kind == "number":
            x = np.array([float(v) for v in values], dtype=np.float64)
            x = x[np.isfinite(x)]
            std = float(x.std()) if len(x) else 1.0
            out.append(FeatureColumn(name, "number", mean=float(x.mean()) if len(x) else 0.0, std=std or 1.0))
        else:
            out.append(FeatureColumn(name, "flag"))
    return out


def encode_features(columns: list[FeatureColumn], rows: list[dict[str, Any]], what: str) -> np.ndarray:
    """``rows`` (one mapping of column -> raw value per user/item) -> a float matrix ``(N, width)``.

    A number that is missing or not finite becomes the mean (0 after standardization). A missing column or an
    unknown category is a one-line error naming what is expected."""
    width = sum(c.width for c in columns)
    out = np.zeros((len(rows), width), dtype=np.float32)
    names = [c.name for c in columns]
    for r, row in enumerate(rows):
        missing = [n for n in names if n not in row]
        if missing:
            raise DataError(f"{what}: missing feature(s) {', '.join(missing)}; expected values for {', '.join(names)}")
        extra = [k for k in row if k not in names]
        if extra:
            raise DataError(f"{what}: unknown feature '{extra[0]}'{suggest(str(extra[0]), names)}")
        j = 0
        for c in columns:
            v = row[c.name]
            if c.kind == "category":
                if str(v) not in c.values:
                    raise DataError(f"{what}: {c.name} '{v}' is not one of {', '.join(c.values)}")
                out[r, j + c.values.index(str(v))] = 1.0
            elif c.kind == "number":
                try:
                    x = float(v)
                except (TypeError, ValueError):
                    raise DataError(f"{what}: {c.name} must be a number, got {v!r}") from None
                out[r, j] = (x - c.mean) / c.std if math.isfinite(x) else 0.0
            else:
                out[r, j] = float(bool(float(v)))
            j += c.width
    return out


@dataclass
class FeatureTable:
    """Side features of every user (or item) of a catalogue: the fitted columns and the encoded matrix."""

    columns: list[FeatureColumn]
    matrix: np.ndarray  # (N, width) float32

    def to_dict(self) -> dict[str, Any]:
        from deepkit.config import to_dict

        return {"columns": to_dict(self.columns)}


# --- the catalogue: id maps, titles, features -------------------------------------------------------------------------
@dataclass
class Catalogue:
    """The users and items a run knows (raw id strings in internal-id order), item titles and genres, side features."""

    users: list[str]
    items: list[str]
    titles: list[str] | None = None
    genres: list[str] | None = None  # one "Action|Comedy" string per item
    user_features: FeatureTable | None = None
    item_features: FeatureTable | None = None
    _user_index: dict[str, int] | None = field(default=None, repr=False, compare=False)
    _item_index: dict[str, int] | None = field(default=None, repr=False, compare=False)

    @property
    def num_users(self) -> int:
        return len(self.users)

    @property
    def num_items(self) -> int:
        return len(self.items)

    @property
    def user_index(self) -> dict[str, int]:
        if self._user_index is None:
            self._user_index = {u: i for i, u in enumerate(self.users)}
        return self._user_index

    @property
    def item_index(self) -> dict[str, int]:
        if self._item_index is None:
            self._item_index = {u: i for i, u in enumerate(self.items)}
        return self._item_index

    def fingerprint(self) -> str:
        """A short hash of the id maps: a checkpoint is only used with the ids it was trained with."""
        h = hashlib.sha256("\n".join(self.users).encode() + b"\0" + "\n".join(self.items).encode())
        return h.hexdigest()[:16]

    def describe_item(self, i: int) -> str:
        return self.titles[i] if self.titles else self.items[i]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"users": self.users, "items": self.items, "fingerprint": self.fingerprint()}
        if self.titles:
            out["titles"] = self.titles
        if self.genres:
            out["genres"] = self.genres
        for key in ("user_features", "item_features"):
            table = getattr(self, key)
            if table is not None:
                out[key] = table.to_dict()
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Catalogue:
        from deepkit.config import from_dict

        def table(key: str) -> FeatureTable | None:
            if key not in d:
                return None
            cols = [from_dict(FeatureColumn, c, key) for c in d[key]["columns"]]
            return FeatureTable(cols, np.zeros((0, sum(c.width for c in cols)), np.float32))

        return cls(
            [str(u) for u in d["users"]],
            [str(i) for i in d["items"]],
            d.get("titles"),
            d.get("genres"),
            table("user_features"),
            table("item_features"),
        )


def read_features(cfg: FeaturesConfig, ids: list[str], what: str, sep: str | None = None) -> FeatureTable | None:
    """The side features of ``ids`` (the catalogue's users or items, in order) from ``cfg.path``; None without a
    path. An id the table lacks, a missing column or a non-number in a numeric column is a one-line error."""
    if not cfg.path:
        return None
    if not cfg.categorical and not cfg.numeric:
        raise ConfigError(
            f"data.{what}_features.path is set, but no column is named (categorical: [...], numeric: [...])"
        )
    path = Path(cfg.path).expanduser()
    if not path.is_file():
        raise DataError(f"{what} feature table not found: {path} (data.{what}_features.path)")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f, delimiter=sep or guess_sep(path))
        header = [h.strip() for h in next(reader, [])]
        for name in [cfg.id, *cfg.categorical, *cfg.numeric]:
            if name not in header:
                raise DataError(
                    f"{path} has no column '{name}'{suggest(name, header)}; its columns are {', '.join(header)}"
                )
        rows = {}
        for row in reader:
            if row and any(c.strip() for c in row):
                rows[row[header.index(cfg.id)].strip()] = row
    missing = [i for i in ids if i not in rows]
    if missing:
        raise DataError(
            f"{path} has no row for {len(missing)} of the {len(ids)} {what}s of the interactions "
            f"(e.g. '{missing[0]}'); expected one row per {what}"
        )
    kinds = {c: "category" for c in cfg.categorical} | {c: "number" for c in cfg.numeric}
    values = {c: [rows[i][header.index(c)].strip() for i in ids] for c in kinds}
    for c in cfg.numeric:
        for i, v in zip(ids, values[c], strict=True):
            try:
                float(v)
            except ValueError:
                raise DataError(f"{path}: {what} '{i}' has {c} {v!r}, expected a number") from None
    columns = fit_columns(values, kinds)
    table = [{c: values[c][r] for c in kinds} for r in range(len(ids))]
    return FeatureTable(columns, encode_features(columns, table, str(path)))


def sorted_ids(ids: list[str]) -> list[str]:
    """Distinct ids in a stable order: numerically when every id is an integer, else as strings."""
    distinct = set(ids)
    try:
        return sorted(distinct, key=int)
    except ValueError:
        return sorted(distinct)


def index_table(raw: RawTable, catalogue: Catalogue) -> Interactions:
    """Raw ids -> internal ids; an id the catalogue lacks is a one-line error."""
    for ids, index, what, known in (
        (raw.users, catalogue.user_index, "users", catalogue.num_users),
        (raw.items, catalogue.item_index, "items", catalogue.num_items),
    ):
        unknown = [(n, v) for n, v in zip(raw.lines.tolist(), ids, strict=True) if v not in index]
        if unknown:
            line, value = unknown[0]
            raise DataError(
                f"{raw.source}: {len(unknown)} rows name {what} unknown to the id map of {known} {what} (e.g. "
                f"'{value}', line {line}); expected the {what} the run was trained with"
            )
    u = np.fromiter((catalogue.user_index[v] for v in raw.users), np.int64, len(raw.users))
    i = np.fromiter((catalogue.item_index[v] for v in raw.items), np.int64, len(raw.items))
    return Interactions(u, i, raw.rating.astype(np.float32), raw.time.astype(np.int64))


# --- reading a table --------------------------------------------------------------------------------------------------
def guess_sep(path: Path) -> str:
    return "\t" if path.suffix.lower() in (".tsv", ".tab", ".data") else ","


def parse_time(text: str) -> int | None:
    """A timestamp cell: a number (seconds, or any increasing count), or an ISO date/time; None if neither."""
    try:
        return int(float(text))
    except ValueError:
        pass
    from datetime import datetime, timezone

    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return int(t.timestamp())


def read_table(path: str | Path, columns: ColumnsConfig, sep: str | None = None) -> RawTable:
    """An interactions table (CSV/TSV with a header row): the user, item, rating and timestamp columns named by
    ``columns``. A missing column, an empty id, a rating that is not a number or a timestamp that is not a time is a
    one-line error naming the line and what was found."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"interactions table not found: {path}; expected a CSV/TSV file (data.path)")
    sep = sep or guess_sep(path)
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f, delimiter=sep)
        header = next(reader, None)
        if not header:
            raise DataError(f"{path} is empty; expected a header row naming the columns, then one row per interaction")
        header = [h.strip() for h in header]
        wanted = {"user": columns.user, "item": columns.item, "rating": columns.rating, "timestamp": columns.timestamp}
        pos = {}
        for role, name in wanted.items():
            if name is None:
                continue
            if name not in header:
                hint = suggest(name, header)
                null = f", or data.columns.{role}=null if there is none" if role in ("rating", "timestamp") else ""
                raise DataError(
                    f"{path} has no column '{name}' (data.columns.{role}){hint}; its columns are "
                    f"{', '.join(header)}{null}"
                )
            pos[role] = header.index(name)
        users, items, ratings, times, lines = [], [], [], [], []
        for n, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) < len(header):
                raise DataError(
                    f"{path} line {n}: {len(row)} fields, expected {len(header)} ({', '.join(header)}); "
                    f"is the separator {sep!r} right (data.sep)?"
                )
            u, i = row[pos["user"]].strip(), row[pos["item"]].strip()
            if not u or not i:
                raise DataError(f"{path} line {n}: empty {'user' if not u else 'item'} id")
            users.append(u)
            items.append(i)
            lines.append(n)
            if "rating" in pos:
                cell = row[pos["rating"]].strip()
                try:
                    r = float(cell)
                except ValueError:
                    r = float("nan")
                if not math.isfinite(r):
                    raise DataError(
                        f"{path} line {n}: rating {cell!r} (column '{columns.rating}') is not a number; expected a "
                        "finite number"
                    )
                ratings.append(r)
            if "timestamp" in pos:
                cell = row[pos["timestamp"]].strip()
                t = parse_time(cell)
                if t is None:
                    raise DataError(
                        f"{path} line {n}: timestamp {cell!r} (column '{columns.timestamp}') is neither a number nor "
                        "an ISO date/time"
                    )
                times.append(t)
    if not users:
        raise DataError(f"{path} has a header but no rows; expected one row per interaction")
    n_rows = len(users)
    return RawTable(
        users,
        items,
        np.asarray(ratings if "rating" in pos else np.ones(n_rows), dtype=np.float64),
        np.asarray(times if "timestamp" in pos else np.zeros(n_rows), dtype=np.int64),
        "timestamp" in pos,
        np.asarray(lines, dtype=np.int64),
        str(path),
    )


def check_ratings(raw: RawTable, low: float, high: float) -> None:
    """Ratings outside ``[low, high]`` are a one-line error naming the first one."""
    bad = np.nonzero((raw.rating < low) | (raw.rating > high))[0]
    if len(bad):
        j = int(bad[0])
        raise DataError(
            f"{raw.source} line {int(raw.lines[j])}: rating {raw.rating[j]:g} is outside the rating range "
            f"[{low:g}, {high:g}] ({len(bad)} such rows); fix the data or set data.rating_range"
        )


def resolve_duplicates(raw: RawTable, policy: str, notes: list[str]) -> RawTable:
    """A (user, item) pair on several rows: ``error``, keep the ``last`` row, or the ``mean`` rating (at the latest
    time). The rows kept stay in file order."""
    key = {}
    dup_rows = 0
    for j, pair in enumerate(zip(raw.users, raw.items, strict=True)):
        if pair in key:
            dup_rows += 1
            if policy == "error":
                first = int(raw.lines[key[pair][0]])
                raise DataError(
                    f"{raw.source}: user '{pair[0]}' and item '{pair[1]}' appear twice (lines {first} and "
                    f"{int(raw.lines[j])}); set data.duplicates=last or data.duplicates=mean to keep one"
                )
            key[pair].append(j)
        else:
            key[pair] = [j]
    if not dup_rows:
        return raw
    keep, rating, time = [], [], []
    for rows in key.values():
        keep.append(rows[-1])
        rating.append(raw.rating[rows].mean() if policy == "mean" else raw.rating[rows[-1]])
        time.append(raw.time[rows].max() if policy == "mean" else raw.time[rows[-1]])
    order = np.argsort(keep, kind="stable")
    keep_a = np.asarray(keep)[order]
    notes.append(
        f"{raw.source}: {dup_rows} duplicated (user, item) rows: kept "
        + ("the last of each" if policy == "last" else "the mean rating of each")
    )
    return RawTable(
        [raw.users[j] for j in keep_a],
        [raw.items[j] for j in keep_a],
        np.asarray(rating)[order],
        np.asarray(time)[order],
        raw.has_time,
        raw.lines[keep_a],
        raw.source,
    )


# --- splits -----------------------------------------------------------------------------------------------------------
def check_split(cfg: RecDataConfig, has_time: bool) -> None:
    if cfg.split not in SPLITS:
        raise ConfigError(f"data.split: unknown split '{cfg.split}'{suggest(cfg.split, SPLITS)}")
    if cfg.split in ("temporal", "leave_one_out") and not has_time:
        raise ConfigError(
            f"data.split={cfg.split} orders interactions by time, and the table has no timestamp column "
            "(data.columns.timestamp is null); use split=random or name the timestamp column"
        )
    for key in ("test_fraction", "val_fraction"):
        v = getattr(cfg, key)
        if not 0.0 <= v < 1.0:
            raise ConfigError(f"data.{key} must be in [0, 1), got {v}")


def time_order(table: Interactions) -> np.ndarray:
    """Row indices grouped by user, each user's rows by time (ties: table order)."""
    return np.lexsort((np.arange(len(table)), table.time, table.user))


def leave_one_out(table: Interactions) -> dict[str, np.ndarray]:
    """Row indices of each split: each user's latest row is test, the one before val (see the module docstring)."""
    order = time_order(table)
    users = table.user[order]
    counts = np.bincount(users, minlength=int(users.max()) + 1 if len(users) else 0)
    starts = np.concatenate([[0], np.cumsum(counts)])[users]
    pos = np.arange(len(order)) - starts  # position within the user's time order
    from_end = counts[users] - 1 - pos
    n = counts[users]
    test = (from_end == 0) & (n >= 2)
    val = (from_end == 1) & (n >= 3)
    return {
        "train": np.sort(order[~(test | val)]),
        "val": np.sort(order[val]),
        "test": np.sort(order[test]),
    }


def random_split(n: int, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held out): ``round(n * fraction)`` row indices drawn at random; both sorted."""
    perm = rng.permutation(n)
    held = int(round(n * fraction))
    return np.sort(perm[held:]), np.sort(perm[:held])


def temporal_split(table: Interactions, rows: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(earlier, latest): the latest ``round(len(rows) * fraction)`` of ``rows`` by time (ties: row order)."""
    order = rows[np.lexsort((rows, table.time[rows]))]
    held = int(round(len(rows) * fraction))
    return np.sort(order[: len(order) - held]), np.sort(order[len(order) - held :])


def split_rows(table: Interactions, cfg: RecDataConfig, test_rows: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Row indices of train, val and test. ``test_rows``: a canonical test split (the rest is its base)."""
    rng = np.random.default_rng(cfg.seed)
    if cfg.split == "leave_one_out":
        return leave_one_out(table)
    n = len(table)
    if test_rows is not None:
        base = np.setdiff1d(np.arange(n), test_rows)
        test = test_rows
    elif cfg.split == "random":
        base, test = random_split(n, cfg.test_fraction, rng)
    else:
        base, test = temporal_split(table, np.arange(n), cfg.test_fraction)
    if cfg.split == "temporal":
        train, val = temporal_split(table, base, cfg.val_fraction)
    else:
        keep, held = random_split(len(base), cfg.val_fraction, rng)
        train, val = base[keep], base[held]
    return {"train": train, "val": val, "test": test}


# --- implicit feedback and negatives ----------------------------------------------------------------------------------
class PairSet:
    """A set of (user, item) pairs, as sorted keys ``user * num_items + item``: membership for whole arrays at once."""

    def __init__(self, users: np.ndarray, items: np.ndarray, num_items: int):
        self.num_items = num_items
        self.keys = np.unique(users.astype(np.int64) * num_items + items.astype(np.int64))

    def contains(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        q = users.astype(np.int64) * self.num_items + items.astype(np.int64)
        if not len(self.keys):
            return np.zeros(q.shape, dtype=bool)
        pos = np.searchsorted(self.keys, q).clip(max=len(self.keys) - 1)
        return self.keys[pos] == q

    def count_per_user(self, num_users: int) -> np.ndarray:
        return np.bincount(self.keys // self.num_items, minlength=num_users)


def sample_negatives(
    users: np.ndarray, n: int, positives: PairSet, num_items: int, rng: np.random.Generator
) -> np.ndarray:
    """``(len(users), n)`` items drawn uniformly (with replacement across rows) among those each user has no pair
    with in ``positives``: rejected draws are drawn again until none is left."""
    if len(users) and (positives.count_per_user(int(users.max()) + 1)[users] >= num_items).any():
        raise DataError(
            f"a user has a positive with every one of the {num_items} items: no negative to sample for them"
        )
    out = rng.integers(0, num_items, size=(len(users), n))
    rows = np.repeat(users, n).reshape(len(users), n)
    bad = positives.contains(rows, out)
    while bad.any():
        out[bad] = rng.integers(0, num_items, size=int(bad.sum()))
        bad[bad] = positives.contains(rows[bad], out[bad])
    return out


def sample_candidates(
    users: np.ndarray, targets: np.ndarray, n: int, seen: PairSet, num_items: int, seed: int
) -> np.ndarray:
    """The sampled protocol's candidates ``(len(users), 1 + n)``: the held-out ``targets`` in column 0, then ``n``
    distinct items the user never interacted with (in any split), drawn once from ``seed``."""
    rng = np.random.default_rng([seed, 7919])
    counts = seen.count_per_user(int(users.max()) + 1 if len(users) else 0)
    free = num_items - counts[users]
    if len(users) and free.min() < n:
        u = int(users[int(np.argmin(free))])
        raise DataError(
            f"data.eval_negatives={n}, but a user has interacted with all but {int(free.min())} of the "
            f"{num_items} items (internal user {u}); lower data.eval_negatives"
        )
    out = np.empty((len(users), n), dtype=np.int64)
    for r, u in enumerate(users):  # distinct draws per user: rejection on a small set (n << free items)
        chosen: list[int] = []
        taken = set()
        while len(chosen) < n:
            draw = rng.integers(0, num_items, size=2 * (n - len(chosen)))
            ok = ~seen.contains(np.full(len(draw), u), draw)
            for item in draw[ok].tolist():
                if item not in taken:
                    taken.add(item)
                    chosen.append(item)
                    if len(chosen) == n:
                        break
        out[r] = chosen
    return np.concatenate([targets.reshape(-1, 1).astype(np.int64), out], axis=1)

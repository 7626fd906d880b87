"""MovieLens 100k (GroupLens, 1998) as distributed: ``u.data`` (user, item, rating 1-5, Unix time; tab-separated),
``u.item`` (Latin-1: id|title|release date|video release date|IMDb URL|19 genre flags), ``u.user``
(id|age|gender|occupation|zip code), ``u.genre`` and the canonical splits ``u1..u5.base/.test`` (five disjoint 20%
test sets) and ``ua/ub.base/.test`` (exactly 10 ratings per user in the test file).

The data are read in place (``DATA_ROOT/movielens-100k/ml-100k`` or ``data.path``); their licence allows research use
but not redistribution, so nothing here copies them.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from deepkit.data.interactions import Catalogue, FeatureTable, RawTable, encode_features, fit_columns
from deepkit.errors import DataError

FOLDER = "movielens-100k/ml-100k"
RATING_RANGE = (1.0, 5.0)
GENRES_FALLBACK = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama", "Fantasy",
    "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
]  # fmt: skip


def movielens_folder(path: str | None) -> Path:
    """``data.path`` (the ml-100k folder), else ``DATA_ROOT/movielens-100k/ml-100k``; must hold u.data and u.item."""
    from deepkit.data.sources import data_root

    folder = Path(path).expanduser() if path else data_root() / FOLDER
    missing = [f for f in ("u.data", "u.item", "u.user") if not (folder / f).is_file()]
    if missing:
        raise DataError(
            f"MovieLens 100k not found at {folder} (no {', '.join(missing)}); set DEEPKIT_DATA to the folder holding "
            f"{FOLDER}/, or data.path to the ml-100k folder"
        )
    return folder


def read_ratings(path: Path) -> RawTable:
    """A ``u.data``-format file: ``user \\t item \\t rating \\t timestamp`` per line, no header."""
    users, items, ratings, times = [], [], [], []
    with open(path, encoding="latin-1") as f:
        for n, line in enumerate(f, start=1):
            parts = line.split("\t")
            if len(parts) != 4:
                raise DataError(
                    f"{path} line {n}: {len(parts)} tab-separated fields, expected 4 (user item rating time)"
                )
            users.append(parts[0])
            items.append(parts[1])
            try:
                ratings.append(float(parts[2]))
                times.append(int(parts[3]))
            except ValueError:
                raise DataError(
                    f"{path} line {n}: rating {parts[2]!r} / time {parts[3].strip()!r} are not numbers"
                ) from None
    return RawTable(
        users,
        items,
        np.asarray(ratings),
        np.asarray(times, dtype=np.int64),
        True,
        np.arange(1, len(users) + 1),
        str(path),
    )


def read_catalogue(folder: Path) -> Catalogue:
    """Users (u.user, with age, gender and occupation) and items (u.item: title, genres, release year) in id order."""
    genre_file = folder / "u.genre"
    genres = GENRES_FALLBACK
    if genre_file.is_file():
        genres = [ln.split("|")[0] for ln in genre_file.read_text(encoding="latin-1").splitlines() if ln.strip()]
    items, titles, tags, flags, years = [], [], [], [], []
    for n, line in enumerate((folder / "u.item").read_text(encoding="latin-1").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("|")
        if len(parts) != 5 + len(genres):
            raise DataError(f"{folder / 'u.item'} line {n}: {len(parts)} fields, expected {5 + len(genres)}")
        items.append(parts[0])
        titles.append(parts[1])
        bits = [int(b) for b in parts[5:]]
        flags.append(bits)
        tags.append("|".join(g for g, b in zip(genres, bits, strict=True) if b))
        year = re.search(r"(\d{4})$", parts[2].strip())
        years.append(float(year.group(1)) if year else float("nan"))
    users, ages, genders, jobs = [], [], [], []
    for n, line in enumerate((folder / "u.user").read_text(encoding="latin-1").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("|")
        if len(parts) != 5:
            raise DataError(f"{folder / 'u.user'} line {n}: {len(parts)} fields, expected 5")
        users.append(parts[0])
        ages.append(float(parts[1]))
        genders.append(parts[2])
        jobs.append(parts[3])
    user_rows = {"age": ages, "gender": genders, "occupation": jobs}
    user_cols = fit_columns(user_rows, {"age": "number", "gender": "category", "occupation": "category"})
    item_rows: dict[str, list] = {"year": years, **{f"genre:{g}": [b[j] for b in flags] for j, g in enumerate(genres)}}
    item_cols = fit_columns(item_rows, {"year": "number", **{f"genre:{g}": "flag" for g in genres}})

    def rows(table: dict[str, list], n: int) -> list[dict]:
        return [{k: v[r] for k, v in table.items()} for r in range(n)]

    return Catalogue(
        users,
        items,
        titles,
        tags,
        FeatureTable(user_cols, encode_features(user_cols, rows(user_rows, len(users)), "u.user")),
        FeatureTable(item_cols, encode_features(item_cols, rows(item_rows, len(items)), "u.item")),
    )


def read_movielens(folder: Path, split: str) -> tuple[RawTable, RawTable | None]:
    """(all ratings, or a canonical split's base; that split's test ratings, or None for the splits deepkit makes)."""
    if split in ("u1", "u2", "u3", "u4", "u5", "ua", "ub"):
        base, test = folder / f"{split}.base", folder / f"{split}.test"
        for f in (base, test):
            if not f.is_file():
                raise DataError(
                    f"MovieLens split file {f} not found; expected {split}.base and {split}.test in {folder}"
                )
        return read_ratings(base), read_ratings(test)
    return read_ratings(folder / "u.data"), None

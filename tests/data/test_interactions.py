"""Interaction tables: reading (and its one-line errors), duplicates, splits (leave-one-out never leaks), negative
sampling and the sampled protocol's candidates (never a user's positive), loaders that resume exactly, and the
MovieLens 100k reader on the real files (skipped where they are absent; nothing of them is copied here)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import datasets_root
from deepkit.data.interactions import (
    ColumnsConfig,
    Interactions,
    PairSet,
    RecDataConfig,
    leave_one_out,
    read_table,
    resolve_duplicates,
    sample_candidates,
    sample_negatives,
    split_rows,
)
from deepkit.data.recsys import CSR, build_rec_data, padded_sequences
from deepkit.errors import ConfigError, DataError


def table(rows: list[tuple], path) -> str:
    path.write_text("user,item,rating,timestamp\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return str(path)


def interactions(users, items, times=None) -> Interactions:
    n = len(users)
    return Interactions(
        np.asarray(users, dtype=np.int64),
        np.asarray(items, dtype=np.int64),
        np.ones(n, np.float32),
        np.asarray(times if times is not None else np.arange(n), dtype=np.int64),
    )


# --- reading ---------------------------------------------------------------------------------------------------------
def test_a_table_is_read_with_the_recipes_column_names_and_iso_times(tmp_path):
    path = tmp_path / "r.tsv"
    path.write_text("who\twhat\tstars\twhen\n7\tb\t4.5\t2024-01-02T03:04:05\n7\ta\t2\t2024-01-01\n")
    raw = read_table(path, ColumnsConfig(user="who", item="what", rating="stars", timestamp="when"))
    assert raw.users == ["7", "7"] and raw.items == ["b", "a"]
    assert raw.rating.tolist() == [4.5, 2.0] and raw.time[0] > raw.time[1] and raw.lines.tolist() == [2, 3]
    implicit = read_table(path, ColumnsConfig(user="who", item="what", rating=None, timestamp=None))
    assert implicit.rating.tolist() == [1.0, 1.0] and not implicit.has_time


def test_a_missing_column_names_the_columns_there(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("user,item,score\n1,2,3\n")
    with pytest.raises(DataError, match=r"has no column 'rating' \(data.columns.rating\).*its columns are user, item, "
                                         r"score, or data.columns.rating=null"):  # fmt: skip
        read_table(path, ColumnsConfig())


def test_a_non_numeric_rating_names_its_line(tmp_path):
    path = table([(1, 2, 3, 10), (1, 3, "five", 11)], tmp_path / "r.csv")
    with pytest.raises(DataError, match=r"line 3: rating 'five' \(column 'rating'\) is not a number"):
        read_table(path, ColumnsConfig())
    path = table([(1, 2, "nan", 10)], tmp_path / "r.csv")
    with pytest.raises(DataError, match="line 2: rating 'nan'"):
        read_table(path, ColumnsConfig())


def test_duplicates_error_keep_last_or_mean(tmp_path):
    path = table([(1, 2, 3, 10), (1, 3, 4, 11), (1, 2, 5, 12)], tmp_path / "r.csv")
    raw = read_table(path, ColumnsConfig())
    with pytest.raises(DataError, match=r"user '1' and item '2' appear twice \(lines 2 and 4\); set data.duplicates"):
        resolve_duplicates(raw, "error", [])
    notes: list[str] = []
    last = resolve_duplicates(raw, "last", notes)
    assert list(zip(last.items, last.rating.tolist(), last.time.tolist(), strict=True)) == [("3", 4, 11), ("2", 5, 12)]
    assert "1 duplicated (user, item) rows: kept the last" in notes[0]
    mean = resolve_duplicates(raw, "mean", [])
    assert dict(zip(mean.items, mean.rating.tolist(), strict=True)) == {"3": 4.0, "2": 4.0}


def test_out_of_range_ratings_are_refused(tmp_path, rec_table):
    path = table([(1, 2, 3, 10), (1, 3, 7, 11)], tmp_path / "r.csv")
    cfg = RecDataConfig(name="interactions", path=path, split="random", rating_range=[1, 5])
    with pytest.raises(DataError, match=r"line 3: rating 7 is outside the rating range \[1, 5\]"):
        build_rec_data(cfg, "rating", "pairs")
    with pytest.raises(ConfigError, match="data.rating_range must be"):
        build_rec_data(
            RecDataConfig(name="interactions", path=path, split="random", rating_range=[5, 1]), "rating", "pairs"
        )


def test_time_splits_need_timestamps(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("user,item\n1,2\n1,3\n")
    cfg = RecDataConfig(name="interactions", path=str(path), split="leave_one_out")
    cfg.columns.rating = cfg.columns.timestamp = None
    with pytest.raises(ConfigError, match="split=leave_one_out orders interactions by time.*no timestamp column"):
        build_rec_data(cfg, "ranking", "pairs", negatives=1)
    with pytest.raises(ConfigError, match="one of MovieLens' own splits"):
        build_rec_data(RecDataConfig(name="interactions", path=str(path), split="u1"), "rating", "pairs")


# --- splits ----------------------------------------------------------------------------------------------------------
def test_leave_one_out_holds_out_the_latest_two_and_never_leaks_them(tmp_path, rec_table):
    path = rec_table(tmp_path, users=30, items=25, per_user=9, seed=3)
    data = build_rec_data(RecDataConfig(name="interactions", path=str(path), split="leave_one_out"), "rating", "pairs")
    train, val, test = data.parts["train"], data.parts["val"], data.parts["test"]
    assert len(val) == len(test) == 30 and len(train) == 30 * 7
    assert sorted(test.user.tolist()) == list(range(30)) and sorted(val.user.tolist()) == list(range(30))
    train_pairs = PairSet(train.user, train.item, data.num_items)
    assert not train_pairs.contains(test.user, test.item).any()  # no test interaction in training
    assert not train_pairs.contains(val.user, val.item).any()
    for u in range(30):
        t_train = train.time[train.user == u]
        t_val, t_test = val.time[val.user == u][0], test.time[test.user == u][0]
        assert t_train.max() < t_val < t_test  # the latest is test, the one before validation


def test_leave_one_out_with_few_interactions_and_ties_in_time():
    t = interactions([0, 1, 1, 2, 2, 2], [5, 6, 7, 8, 9, 10], [0, 0, 1, 4, 4, 4])
    rows = leave_one_out(t)
    assert rows["train"].tolist() == [0, 1, 3] and rows["val"].tolist() == [4] and rows["test"].tolist() == [2, 5]


def test_random_and_temporal_splits_partition_the_rows(tmp_path, rec_table):
    t = interactions(np.arange(200) % 7, np.arange(200) % 11, np.random.default_rng(0).permutation(200))
    for split in ("random", "temporal"):
        cfg = RecDataConfig(split=split, test_fraction=0.25, val_fraction=0.1, seed=4)
        rows = split_rows(t, cfg)
        together = np.concatenate([rows["train"], rows["val"], rows["test"]])
        assert sorted(together.tolist()) == list(range(200))
        assert len(rows["test"]) == 50 and len(rows["val"]) == 15
        assert split_rows(t, cfg)["test"].tolist() == rows["test"].tolist()  # a pure function of the seed
        if split == "temporal":
            assert t.time[rows["train"]].max() < t.time[rows["val"]].min() <= t.time[rows["val"]].max()
            assert t.time[rows["val"]].max() < t.time[rows["test"]].min()
    assert (
        split_rows(t, RecDataConfig(split="random", seed=5))["test"].tolist()
        != split_rows(t, RecDataConfig(split="random", seed=4))["test"].tolist()
    )


# --- negatives and candidates ----------------------------------------------------------------------------------------
def test_sampled_negatives_are_never_a_training_positive():
    rng = np.random.default_rng(0)
    users = rng.integers(0, 20, 160)
    items = rng.integers(0, 12, 160)  # dense: users have about half of the 12 items
    pos = PairSet(users, items, 12)
    negs = sample_negatives(users, 4, pos, 12, np.random.default_rng(1))
    assert negs.shape == (160, 4)
    assert not pos.contains(np.repeat(users, 4), negs.reshape(-1)).any()
    full = PairSet(np.zeros(12, np.int64), np.arange(12), 12)  # user 0 has every item
    with pytest.raises(DataError, match="no negative to sample"):
        sample_negatives(np.array([0]), 1, full, 12, np.random.default_rng(1))


def test_sampled_candidates_never_include_a_users_positives_and_are_drawn_once_per_seed():
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 30, 900), rng.integers(0, 150, 900)
    seen = PairSet(users, items, 150)
    eval_users = np.arange(30)
    targets = np.array([items[users == u][0] if (users == u).any() else 0 for u in eval_users])
    c = sample_candidates(eval_users, targets, 99, seen, 150, seed=7)
    assert c.shape == (30, 100) and (c[:, 0] == targets).all()
    negs = c[:, 1:]
    assert not seen.contains(np.repeat(eval_users, 99), negs.reshape(-1)).any()  # never an item the user has
    assert all(len(set(row.tolist())) == 99 for row in negs)  # 99 distinct negatives, not 99 with repeats
    assert np.array_equal(sample_candidates(eval_users, targets, 99, seen, 150, seed=7), c)
    assert not np.array_equal(sample_candidates(eval_users, targets, 99, seen, 150, seed=8), c)
    with pytest.raises(DataError, match="lower data.eval_negatives"):
        sample_candidates(eval_users, targets, 149, seen, 150, seed=7)


def test_ranking_data_candidates_and_masks(tmp_path, rec_table):
    path = rec_table(tmp_path, users=25, items=120, per_user=10)
    cfg = RecDataConfig(name="interactions", path=str(path), split="leave_one_out", eval_negatives=50)
    data = build_rec_data(cfg, "ranking", "pairs", negatives=2)
    all_pairs = PairSet(
        np.concatenate([p.user for p in data.parts.values()]),
        np.concatenate([p.item for p in data.parts.values()]),
        120,
    )
    for split in ("val", "test"):
        cand = data.candidates[split]
        users = data.eval_users(split)
        assert cand.shape == (25, 51)
        assert not all_pairs.contains(np.repeat(users, 50), cand[:, 1:].reshape(-1)).any()
        batch = next(iter(data.loader(split)))
        assert torch.equal(batch["candidates"], torch.from_numpy(cand))
        relevant, exclude = batch["relevant"], batch["exclude"]
        assert (relevant.sum(1) == 1).all() and not (relevant & exclude).any()
        assert relevant.gather(1, batch["candidates"][:, :1]).all()  # column 0 is the held-out item
        history = data.parts["train"] if split == "val" else Interactions.concat(data.parts["train"], data.parts["val"])
        assert int(exclude.sum()) == len(history)
    again = build_rec_data(cfg, "ranking", "pairs", negatives=2)
    assert all(np.array_equal(again.candidates[s], data.candidates[s]) for s in ("val", "test"))


def test_training_negatives_are_fresh_each_epoch_seeded_and_resume_mid_epoch(tmp_path, rec_table):
    path = rec_table(tmp_path, users=20, items=40, per_user=10)
    data = build_rec_data(RecDataConfig(name="interactions", path=str(path), split="leave_one_out", batch_size=16,
                                          eval_negatives=20),
                          "ranking", "pairs", negatives=3)  # fmt: skip
    pos = data.positives("train")
    pairs = PairSet(pos.user, pos.item, data.num_items)

    def epoch(e, start=0, seed=0):
        ld = data.loader("train", seed=seed)
        ld.set_epoch(e, start)
        return list(ld)

    e0, e1 = epoch(0), epoch(1)
    for b in e0:
        assert not pairs.contains(np.repeat(b["user"].numpy(), 3), b["negatives"].reshape(-1).numpy()).any()
    negs = lambda batches: torch.cat([b["negatives"] for b in batches])  # noqa: E731
    assert not torch.equal(negs(e0), negs(e1))  # drawn afresh each epoch
    assert torch.equal(negs(epoch(1)), negs(e1))  # ... from (seed, epoch)
    assert not torch.equal(negs(epoch(1, seed=1)), negs(e1))
    resumed = epoch(1, start=3)
    assert len(resumed) == len(e1) - 3
    assert all(all(torch.equal(a[k], b[k]) for k in a) for a, b in zip(resumed, e1[3:], strict=True))


def test_csr_rows_and_padded_sequences():
    csr = CSR(np.array([0, 0, 2, 2, 2]), np.array([3, 1, 0, 4, 2]), 3, 5)
    assert csr.dense(torch.tensor([2, 1, 0])).int().tolist() == [[1, 0, 1, 0, 1], [0, 0, 0, 0, 0], [0, 1, 0, 1, 0]]
    t = interactions([1, 0, 1, 1], [7, 8, 9, 6], [5, 0, 1, 9])
    assert padded_sequences(t, np.array([1, 0, 2]), 2, 99).tolist() == [[7, 6], [99, 8], [99, 99]]


# --- MovieLens 100k, read in place -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def movielens():
    folder = datasets_root() / "movielens-100k" / "ml-100k"
    if not (folder / "u.data").is_file():
        pytest.skip(f"MovieLens 100k not found at {folder} (set DEEPKIT_DATA)")
    return folder


def test_movielens_100k_reader(movielens):
    from deepkit.data.movielens import read_catalogue, read_movielens

    cat = read_catalogue(movielens)
    assert cat.num_users == 943 and cat.num_items == 1682
    assert cat.titles[0] == "Toy Story (1995)" and cat.genres[0] == "Animation|Children's|Comedy"
    assert any("Misérables" in t for t in cat.titles)  # Latin-1 read as Latin-1
    assert cat.user_features.matrix.shape == (943, 1 + 2 + 21) and cat.item_features.matrix.shape == (1682, 1 + 19)
    raw, none = read_movielens(movielens, "random")
    assert none is None and len(raw.users) == 100_000
    assert np.bincount(raw.rating.astype(int))[1:].tolist() == [6110, 11370, 27145, 34174, 21201]
    for split in ("u1", "u5", "ua"):
        base, test = read_movielens(movielens, split)
        assert len(base.users) + len(test.users) == 100_000
    _, ua_test = read_movielens(movielens, "ua")
    assert set(np.unique(ua_test.users, return_counts=True)[1].tolist()) == {10}


def test_movielens_canonical_split_and_validation_share(movielens):
    data = build_rec_data(RecDataConfig(path=str(movielens), split="u1", val_fraction=0.05), "rating", "pairs")
    assert {k: len(v) for k, v in data.parts.items()} == {"train": 76_000, "val": 4_000, "test": 20_000}
    assert data.rating_range == (1.0, 5.0) and 3.4 < data.global_mean < 3.6

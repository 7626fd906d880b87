"""The recommenders family end to end on tables generated here (no real data): rating prediction, top-K ranking,
next-item prediction, the two-tower model's new users, NeuMF from trained GMF and MLP runs; the ``recommend`` verb
(CLI and Python), ``deepkit eval``, and every bad input's one-line error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from safetensors.numpy import load_file

import deepkit
from deepkit.errors import ConfigError, DataError

QUIET = ["trainer.progress=none"]


def rated_by(table: Path, user: str) -> set[str]:
    return {ln.split(",")[1] for ln in table.read_text().splitlines()[1:] if ln.split(",")[0] == user}


def one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for f in fragments:
        assert f in lines[0], (f, lines[0])


@pytest.fixture(scope="module")
def table(tmp_path_factory, rec_table) -> Path:
    return rec_table(tmp_path_factory.mktemp("table"), users=60, items=30, per_user=14, features=True)


@pytest.fixture(scope="module")
def rating_run(table, deepkit_cli) -> Path:
    out = table.parent / "mf"
    code, _, err = deepkit_cli("train", "interactions_mf", f"data.path={table}", *QUIET, "--out", out)
    assert code == 0, err
    return out


@pytest.fixture(scope="module")
def ranking_runs(table, deepkit_cli) -> dict[str, Path]:
    """GMF, NCF MLP and NeuMF on the same leave-one-out split (10 sampled negatives: the catalogue is 30 items)."""
    runs = {}
    common = [f"data.path={table}", "data.eval_negatives=10", "trainer.epochs=4", *QUIET]
    models = {"gmf": ["model.name=gmf", "model.dim=8"], "ncf_mlp": ["model.name=ncf_mlp", "model.layers=[16,8]"]}
    for name, model in [*models.items(), ("neumf", [])]:
        runs[name] = table.parent / name
        code, _, err = deepkit_cli("train", "interactions_ranking", *common, *model, "--out", runs[name])
        assert code == 0, err
    return runs


# --- rating prediction -----------------------------------------------------------------------------------------------
def test_rating_run_beats_its_baselines_and_keeps_what_it_needs(rating_run):
    results = json.loads((rating_run / "results.json").read_text())
    m = results["metrics"]
    assert {"rmse", "mae", "baseline_global_mean_rmse", "baseline_biases_rmse", "baseline_biases_mae"} <= set(m)
    # the ratings depend on (user group, item group): biases alone cannot fit them, factors can
    assert m["rmse"] < 0.6 * min(m["baseline_global_mean_rmse"], m["baseline_biases_rmse"])
    assert (rating_run / "catalogue.json").is_file() and (rating_run / "interactions.safetensors").is_file()
    config = yaml.safe_load((rating_run / "config.yaml").read_text())
    assert set(config) == {"name", "description", "task", "model", "data", "trainer", "meta"}
    assert config["model"]["num_users"] == 60 and config["model"]["num_items"] == 30  # bound from the data
    catalogue = json.loads((rating_run / "catalogue.json").read_text())
    assert catalogue["users"] == sorted(f"u{u}" for u in range(60)) and len(catalogue["items"]) == 30  # ids: strings


def test_eval_prints_the_metrics(rating_run, deepkit_cli):
    code, out, err = deepkit_cli("eval", rating_run, "--json")
    assert code == 0, err
    results = json.loads((rating_run / "results.json").read_text())["metrics"]
    assert json.loads(out)["rmse"] == pytest.approx(results["rmse"], rel=1e-5)
    code, out, _ = deepkit_cli("eval", rating_run)
    assert code == 0 and "rmse" in out and "mae" in out


def test_recommend_lists_unrated_items_with_scores(rating_run, table, deepkit_cli):
    code, out, err = deepkit_cli("recommend", rating_run, "--user", "u3", "-k", "5")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[0] == "user u3: top 5 (predicted rating, rated items left out)" and len(lines) == 6
    items = [ln.split()[-1] for ln in lines[1:]]
    assert not set(items) & rated_by(table, "u3")  # already rated: left out
    assert sum(int(i[1:]) % 2 == 1 for i in items) >= 4  # u3 likes odd items (their group)
    scores = [float(ln.split()[1]) for ln in lines[1:]]
    assert scores == sorted(scores, reverse=True) and all(1 <= s <= 5 for s in scores)
    code, out, _ = deepkit_cli("recommend", rating_run, "--user", "u3", "-k", "5", "--json")
    listed = json.loads(out)["u3"]
    assert [r["item"] for r in listed] == items
    # Python: the same verb
    rec = deepkit.load(rating_run)
    assert [r["item"] for r in rec.recommend(["u3"], k=5)[0]] == items
    assert [r["item"] for r in rec.recommend("u3", k=5)[0]] == items
    with_rated = rec.recommend(["u3"], k=30, exclude_rated=False)[0]
    assert len(with_rated) == 30 and len(rec.recommend(["u3"], k=30)[0]) == 30 - 14  # 14 rated: fewer left


def test_score_and_similar_items(rating_run, deepkit_cli):
    rec = deepkit.load(rating_run)
    liked, disliked = rec.score("u3", ["i1", "i2"])
    assert 1 <= disliked < liked <= 5  # odd item for an odd user
    code, out, err = deepkit_cli("recommend", rating_run, "--user", "u3", "--items", "i1,i2")
    assert code == 0 and "predicted rating of 2 items" in out, err
    near = rec.similar_items("i4", k=6)
    assert "i4" not in [r["item"] for r in near] and sum(int(r["item"][1:]) % 2 == 0 for r in near) >= 5
    code, out, err = deepkit_cli("recommend", rating_run, "--similar-to", "i4", "-k", "3")
    assert code == 0 and out.startswith("items nearest to i4 (cosine similarity):") and len(out.splitlines()) == 4


@pytest.mark.parametrize(
    "args,fragments",
    [
        (["--user", "zz"], ["user 'zz' is not one of this run's 60 users"]),
        (["--user", "u3", "-k", "31"], ["k=31, but the catalogue has 30 items; expected 1 <= k <= 30"]),
        (["--user", "u3", "-k", "0"], ["k=0"]),
        (["--similar-to", "nope"], ["item 'nope' is not one of this run's 30 items"]),
        (["--user", "u3", "--items", "i1,zz"], ["item 'zz' is not one of"]),
        ([], ["recommend needs --user ID"]),
        (["--user", "u3", "--features", "group=a"], ["features= needs a two-tower run"]),
    ],
)
def test_recommend_bad_input_is_one_line(rating_run, deepkit_cli, args, fragments):
    code, _, err = deepkit_cli("recommend", rating_run, *args)
    one_line_error(code, err, *fragments)


# --- bad tables ------------------------------------------------------------------------------------------------------
def bad_table(tmp_path: Path, header: str, rows: list[str]) -> Path:
    path = tmp_path / "bad.csv"
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


GOOD_ROWS = [f"u{u},i{i},{1 + (u + i) % 5},{100 * u + i}" for u in range(6) for i in range(5)]


@pytest.mark.parametrize(
    "header,rows,extra,fragments",
    [
        ("user,item,stars,timestamp", GOOD_ROWS, [], ["has no column 'rating' (data.columns.rating)", "stars"]),
        ("user,item,rating,timestamp", [*GOOD_ROWS, "u9,i1,great,5"], [], ["rating 'great'", "is not a number"]),
        ("user,item,rating,timestamp", [*GOOD_ROWS, "u9,i1,9,5"], ["data.rating_range=[1,5]"],
         ["rating 9 is outside the rating range [1, 5]"]),
        ("user,item,rating,timestamp", [*GOOD_ROWS, "u0,i0,4,999"], [],
         ["user 'u0' and item 'i0' appear twice", "data.duplicates"]),
        ("user,item,rating,timestamp", GOOD_ROWS, ["data.columns.timestamp=when"], ["has no column 'when'"]),
    ],
)  # fmt: skip
def test_bad_tables_are_one_line_errors_and_leave_no_run(tmp_path, deepkit_cli, header, rows, extra, fragments):
    path = bad_table(tmp_path, header, rows)
    out = tmp_path / "run"
    code, _, err = deepkit_cli("train", "interactions_mf", f"data.path={path}", *extra, *QUIET, "--out", out)
    one_line_error(code, err, *fragments)
    assert not out.exists()


@pytest.mark.parametrize("policy,note", [("last", "kept the last of each"), ("mean", "kept the mean rating of each")])
def test_duplicates_kept_last_or_averaged_as_configured(tmp_path, deepkit_cli, policy, note):
    path = bad_table(tmp_path, "user,item,rating,timestamp", [*GOOD_ROWS, "u0,i0,4,999"])
    out = tmp_path / "run"
    code, _, err = deepkit_cli(
        "train", "interactions_mf", f"data.path={path}", f"data.duplicates={policy}", "trainer.epochs=1", *QUIET,
        "--out", out,
    )  # fmt: skip
    assert code == 0, err
    assert f"1 duplicated (user, item) rows: {note}" in (out / "log.txt").read_text()
    kept = load_file(str(out / "interactions.safetensors"))
    assert len(kept["user"]) == 30  # one row per pair
    first = (kept["user"] == 0) & (kept["item"] == 0)
    assert kept["rating"][first].tolist() == [4.0 if policy == "last" else 2.5]


@pytest.mark.parametrize(
    "args,fragments",
    [
        (["task.name=rating_prediction", "model.name=sasrec"], ["model 'sasrec' predicts the next item", "next_item"]),
        (["model.name=i_autorec"], ["model 'i_autorec' reconstructs ratings; use task.name=rating_prediction"]),
        (["model.name=mlp"], ["model 'mlp' is not a recommender; expected one of"]),
        (["task.name=next_item", "model.name=sasrec", "data.split=random"], ["needs data.split=leave_one_out"]),
        (["model.name=two_tower"], ["model 'two_tower' needs user and item side features"]),
        (["task.loss=hinge"], ["task.loss: expected one of bce, bpr, got 'hinge'"]),
        (["data.split=u1"], ["one of MovieLens' own splits"]),
        (["data.split=leave_out"], ["unknown split 'leave_out'"]),
        (["model.num_items=7"], ["model.num_items=7 does not fit the data", "expected num_items=30"]),
    ],
)
def test_task_model_and_data_that_do_not_fit_are_one_line_errors(table, tmp_path, deepkit_cli, args, fragments):
    common = [f"data.path={table}", "data.eval_negatives=10", *QUIET]
    code, _, err = deepkit_cli("train", "interactions_ranking", *common, *args, "--out", tmp_path / "r")
    one_line_error(code, err, *fragments)
    assert not (tmp_path / "r").exists()


# --- ranking ---------------------------------------------------------------------------------------------------------
def test_ranking_runs_report_full_and_sampled_metrics_on_the_same_candidates(ranking_runs):
    sampled = {}
    for name, run in ranking_runs.items():
        m = json.loads((run / "results.json").read_text())["metrics"]
        for key in ("hr@10", "ndcg@10", "recall@10", "map@10", "coverage@10", "sampled_hr@10", "sampled_ndcg@10"):
            assert 0.0 <= m[key] <= 1.0, (name, key)
            assert 0.0 <= m[f"baseline_most_popular_{key}"] <= 1.0
        assert m["ndcg@10"] <= m["hr@10"] and m["map@10"] <= m["ndcg@10"] + 1e-6
        sampled[name] = load_file(str(run / "candidates.safetensors"))
        assert sampled[name]["test"].shape == (60, 11)
    first = sampled["gmf"]
    for other in sampled.values():  # drawn once per data.seed: every model is scored on the same candidates
        assert all(np.array_equal(first[k], other[k]) for k in ("val", "test"))
    base = json.loads((ranking_runs["gmf"] / "results.json").read_text())["metrics"]
    assert (
        base["baseline_most_popular_hr@10"]
        == json.loads((ranking_runs["neumf"] / "results.json").read_text())["metrics"]["baseline_most_popular_hr@10"]
    )


def test_eval_of_a_ranking_run_reuses_its_saved_candidates(ranking_runs, deepkit_cli):
    code, out, err = deepkit_cli("eval", ranking_runs["gmf"], "--json")
    assert code == 0, err
    metrics = json.loads(out)
    results = json.loads((ranking_runs["gmf"] / "results.json").read_text())["metrics"]
    for key in ("hr@10", "ndcg@10", "sampled_hr@10", "sampled_ndcg@10", "coverage@10"):
        assert metrics[key] == pytest.approx(results[key], abs=1e-6)


def test_neumf_starts_from_trained_gmf_and_mlp_runs(ranking_runs, table, tmp_path, deepkit_cli):
    out = tmp_path / "pre"
    args = [
        "train", "interactions_ranking", f"data.path={table}", "data.eval_negatives=10", "trainer.epochs=1", *QUIET,
        "model.dim=8", "model.layers=[16,8]", f"model.pretrained_gmf={ranking_runs['gmf']}",
        f"model.pretrained_mlp={ranking_runs['ncf_mlp']}", "model.alpha=0.5", "--out", out,
    ]  # fmt: skip
    code, _, err = deepkit_cli(*args)
    assert code == 0, err
    assert "NeuMF initialized from" in (out / "log.txt").read_text()
    args[args.index("model.dim=8")] = "model.dim=4"
    code, _, err = deepkit_cli(*args[:-1], tmp_path / "pre2")
    one_line_error(code, err, "pretrained weight gmf_user.weight")
    code, _, err = deepkit_cli(*[a.replace(str(ranking_runs["gmf"]), str(ranking_runs["neumf"])) for a in args[:-1]],
                               tmp_path / "pre3")  # fmt: skip
    one_line_error(code, err, "holds a 'neumf' run; expected a trained gmf run")


def test_recommend_from_a_ranking_run(ranking_runs, table):
    rec = deepkit.load(ranking_runs["neumf"])
    top = rec.recommend(["u0", "u1"], k=4)
    assert [len(t) for t in top] == [4, 4]
    assert not {r["item"] for r in top[0]} & rated_by(table, "u0")


# --- two-tower: users unseen in training ---------------------------------------------------------------------------
def test_two_tower_scores_a_new_user_from_features(table, tmp_path, deepkit_cli):
    out = tmp_path / "tt"
    code, _, err = deepkit_cli(
        "train", "interactions_mf", f"data.path={table}", "model.name=two_tower", "model.hidden=16", "model.dim=8",
        "model.id_dim=8", "model.id_dropout=0.5", f"data.user_features.path={table.parent / 'users.csv'}",
        "data.user_features.categorical=[group]", "data.user_features.numeric=[age]",
        f"data.item_features.path={table.parent / 'items.csv'}", "data.item_features.categorical=[kind]",
        "data.item_features.numeric=[year]", "trainer.epochs=40", "trainer.early_stopping=null", *QUIET,
        "--out", out,
    )  # fmt: skip
    assert code == 0, err
    rec = deepkit.load(out)
    for group, parity in (("a", 0), ("b", 1)):
        top = rec.recommend(["newcomer"], k=6, features={"group": group, "age": 30})[0]
        assert sum(int(r["item"][1:]) % 2 == parity for r in top) >= 5, (group, top)
    code, stdout, err = deepkit_cli("recommend", out, "--user", "newcomer", "--features", "group=b,age=41", "-k", "3")
    assert code == 0 and "user newcomer: top 3" in stdout, err
    with pytest.raises(DataError, match=r"group 'c' is not one of a, b"):
        rec.recommend(["newcomer"], features={"group": "c", "age": 30})
    with pytest.raises(DataError, match=r"missing feature\(s\) age"):
        rec.recommend(["newcomer"], features={"group": "a"})
    with pytest.raises(DataError, match="user 'newcomer' is not one of .* a two-tower run scores a new user"):
        rec.recommend(["newcomer"])


# --- next item and I-AutoRec ----------------------------------------------------------------------------------------
def test_sasrec_learns_the_next_item(tmp_path, rec_table, deepkit_cli):
    """Users consume items in runs (j, then j + 1): SASRec should rank the next one near the top, far above the most
    popular items."""
    table = rec_table(tmp_path, users=80, items=40, per_user=12, seed=1)
    out = tmp_path / "sasrec"
    code, _, err = deepkit_cli(
        "train", "movielens_sasrec", "data.name=interactions", f"data.path={table}", "data.max_len=10",
        "data.eval_negatives=20", "data.batch_size=32", "model.dim=16", "model.dropout=0.1", "trainer.epochs=30",
        "trainer.optimizer.lr=0.01", "trainer.early_stopping=null", *QUIET, "--out", out,
    )  # fmt: skip
    assert code == 0, err
    m = json.loads((out / "results.json").read_text())["metrics"]
    assert m["hr@10"] > 0.8 and m["hr@10"] > 2 * m["baseline_most_popular_hr@10"], m
    assert m["sampled_hr@10"] >= m["hr@10"]  # 20 sampled negatives are easier than all 40 - history items
    last = deepkit.load(out).recommend(["u0"], k=1)[0][0]["item"]
    seen = [ln.split(",") for ln in table.read_text().splitlines()[1:] if ln.startswith("u0,")]
    latest = max(seen, key=lambda r: int(r[3]))[1]
    assert last == f"i{(int(latest[1:]) + 1) % 40}"


def test_autorec_rates(tmp_path, table, deepkit_cli):
    out = tmp_path / "autorec"
    code, _, err = deepkit_cli(
        "train", "interactions_mf", f"data.path={table}", "model.name=i_autorec", "model.hidden=16",
        "trainer.epochs=60", "trainer.optimizer.lr=0.01", "data.batch_size=8", *QUIET, "--out", out,
    )  # fmt: skip
    assert code == 0, err
    m = json.loads((out / "results.json").read_text())["metrics"]
    assert m["rmse"] < 0.7 * m["baseline_global_mean_rmse"], m
    rec = deepkit.load(out)
    liked, disliked = rec.score("u3", ["i1", "i2"])
    assert disliked < liked
    assert len(rec.similar_items("i1", k=3)) == 3


def test_the_verb_is_documented(deepkit_cli):
    code, out, _ = deepkit_cli("--help")
    assert code == 0 and "recommend" in out
    code, out, _ = deepkit_cli("recommend", "--help")
    assert code == 0 and "--similar-to" in out and "--user" in out and "--features" in out


def test_a_run_that_is_no_recommender_refuses_the_verb(digits_run, deepkit_cli):
    out, _ = digits_run
    code, _, err = deepkit_cli("recommend", out, "--user", "1")
    one_line_error(code, err, "`recommend` needs a recommender run")


def test_python_recommend_rejects_bad_k(rating_run):
    rec = deepkit.load(rating_run)
    with pytest.raises(ConfigError, match="k=100, but the catalogue has 30 items"):
        rec.recommend(["u1"], k=100)

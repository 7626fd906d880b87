"""GC-MC (graph convolutional matrix completion): the graph convolution against a plain loop over the edges, the
decoder's expected ratings, the moving average of the weights, the graph the family builds (training pairs only),
and a tiny train / eval / recommend round trip on a table generated here (plus MovieLens u1 when it is present)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import deepkit
from deepkit.models import create_model

QUIET = ["trainer.progress=none"]


def graph_model(**kw) -> torch.nn.Module:
    """A GC-MC of 5 users, 7 items, 3 levels and 12 random edges, its weights moved off their initial values."""
    cfg = {"num_users": 5, "num_items": 7, "num_levels": 3, "num_edges": 12, "hidden": 6, "dense": 4, **kw}
    torch.manual_seed(0)
    model = create_model("gcmc", **cfg)
    g = torch.Generator().manual_seed(3)
    pairs = torch.randperm(5 * 7, generator=g)[:12]
    model.set_graph(pairs // 7, pairs % 7, torch.randint(0, 3, (12,), generator=g), torch.tensor([-1.5, 0.0, 1.2]))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model


def loop_hidden(model) -> tuple[torch.Tensor, torch.Tensor]:
    """The convolution's hidden vectors (before ReLU), edge by edge, as the paper writes it."""
    cfg = model.cfg
    w = model.conv.detach()
    w = w.cumsum(0) if cfg.ordinal else w
    nu, ni, levels = cfg.num_users, cfg.num_items, cfg.num_levels
    h = w.shape[-1]
    width = levels * h if cfg.accumulate == "stack" else h
    hu, hi = torch.zeros(nu, width), torch.zeros(ni, width)
    users, items, lv = model.edge_user.tolist(), model.edge_item.tolist(), model.edge_level.tolist()
    deg_u = {u: users.count(u) for u in users}
    deg_i = {i: items.count(i) for i in items}
    for u, i, r in zip(users, items, lv, strict=True):
        if cfg.norm == "left":
            cu, ci = 1 / deg_u[u], 1 / deg_i[i]
        else:
            cu = ci = (deg_u[u] * deg_i[i]) ** -0.5
        at = slice(r * h, (r + 1) * h) if cfg.accumulate == "stack" else slice(0, h)
        hu[u, at] += cu * w[r, nu + i]
        hi[i, at] += ci * w[r, u]
    return hu, hi


@pytest.mark.parametrize(
    "kw",
    [{}, {"norm": "symmetric"}, {"accumulate": "sum"}, {"ordinal": False}, {"side_features": False, "basis": 3}],
)
def test_graph_convolution_is_the_sum_over_each_nodes_rated_neighbours(kw):
    model = graph_model(dropout=0.0, average=0.0, **kw).eval()
    hu, hi = loop_hidden(model)
    with torch.no_grad():
        zu, zi = model.encode()
    dense = model.dense_w.detach()
    torch.testing.assert_close(zu, hu.relu() @ dense.T, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(zi, hi.relu() @ dense.T, rtol=1e-5, atol=1e-5)
    # a user without a rating gets nothing from the graph
    lonely = sorted(set(range(5)) - set(model.edge_user.tolist()))
    assert all(zu[u].abs().sum() == 0 for u in lonely)


def test_prediction_is_the_expected_level_under_the_softmax_and_score_all_agrees():
    model = graph_model().eval()
    users, items = torch.tensor([0, 1, 4, 4]), torch.tensor([6, 0, 2, 3])
    with torch.no_grad():
        logits = model.level_logits(users, items)
        out = model(users, items)
        full = model.score_all(torch.tensor([0, 1, 4]))
    values = torch.tensor([-1.5, 0.0, 1.2])
    torch.testing.assert_close(out, logits.softmax(-1) @ values)
    assert ((out >= -1.5) & (out <= 1.2)).all()  # a mixture of the level values: inside their range
    assert full.shape == (3, 7)
    torch.testing.assert_close(full[[0, 1, 2, 2], [6, 0, 2, 3]], out, rtol=1e-5, atol=1e-6)


def test_eval_mode_uses_the_moving_average_of_the_weights():
    model = graph_model(dropout=0.0, average=0.9)
    users, items = torch.tensor([0, 2]), torch.tensor([1, 5])
    before = {n: getattr(model, f"avg_{n}").clone() for n, _ in model.named_parameters()}  # the initial weights
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    model.update_average()  # step 0: decay min(0.9, 1/10) = 0.1 -> 0.1 * average + 0.9 * current
    for n, p in model.named_parameters():
        torch.testing.assert_close(getattr(model, f"avg_{n}"), 0.1 * before[n] + 0.9 * p.detach())
    with torch.no_grad():
        train_out = model.train()(users, items)
        eval_out = model.eval()(users, items)
        with_avg = {n: getattr(model, f"avg_{n}").clone() for n, _ in model.named_parameters()}
        for n, p in model.named_parameters():
            p.copy_(with_avg[n])
        assert not torch.allclose(train_out, eval_out)
        torch.testing.assert_close(model.train()(users, items), eval_out)


def test_bad_sizes_are_config_errors():
    from deepkit.errors import ConfigError

    with pytest.raises(ConfigError, match="at least 2 rating levels"):
        create_model("gcmc", num_levels=1)
    model = create_model("gcmc", num_users=3, num_items=4, num_edges=2, hidden=10, dense=4)
    with pytest.raises(ConfigError, match="3 edges given, the model was built for 2"):
        model.set_graph(torch.zeros(3, dtype=torch.long), torch.zeros(3, dtype=torch.long),
                        torch.zeros(3, dtype=torch.long), torch.zeros(5))  # fmt: skip


# --- through the family ----------------------------------------------------------------------------------------------
def pairs_of(t) -> set[tuple[int, int]]:
    return set(zip(t.user.tolist(), t.item.tolist(), strict=True))


def check_graph_is_the_training_split(rec) -> None:
    from deepkit.api import build

    built = build(rec)
    model, data = built.task.model, built.data
    edge_pairs = list(zip(model.edge_user.tolist(), model.edge_item.tolist(), strict=True))
    edges = set(edge_pairs)
    train = data.parts["train"]
    assert edges == pairs_of(train) and len(edges) == len(train) == model.cfg.num_edges
    for split in ("val", "test"):
        assert len(data.parts[split]) and not edges & pairs_of(data.parts[split]), split
    levels = np.unique(train.rating)
    got = levels[model.edge_level.numpy()]
    order = {p: j for j, p in enumerate(zip(train.user.tolist(), train.item.tolist(), strict=True))}
    want = np.array([train.rating[order[e]] for e in edge_pairs])
    assert np.array_equal(got, want)  # each edge carries its own rating's level
    torch.testing.assert_close(model.level_values, torch.from_numpy(levels - data.global_mean).float())


def test_the_graph_holds_the_training_pairs_only(tmp_path, rec_table):
    from deepkit.recipe import resolve_recipe

    table = rec_table(tmp_path, users=30, items=20, per_user=10)
    check_graph_is_the_training_split(
        resolve_recipe("interactions_mf", ["model.name=gcmc", "model.hidden=10", f"data.path={table}", *QUIET])
    )


def test_the_movielens_graph_holds_u1_base_less_validation_only():
    from deepkit.data.sources import data_root
    from deepkit.recipe import resolve_recipe

    if not (data_root() / "movielens-100k" / "ml-100k" / "u1.base").is_file():
        pytest.skip(f"MovieLens 100k not under {data_root()} (set DEEPKIT_DATA)")
    check_graph_is_the_training_split(resolve_recipe("movielens_gcmc", ["model.hidden=10", "model.dense=4", *QUIET]))


def test_train_eval_recommend_round_trip(tmp_path, rec_table, deepkit_cli):
    table = rec_table(tmp_path, users=40, items=24, per_user=12, features=True)
    out = tmp_path / "gcmc"
    code, _, err = deepkit_cli(
        "train", "interactions_mf", f"data.path={table}", "model.name=gcmc", "model.hidden=20", "model.dense=8",
        "model.dropout=0.3", "model.average=0.9", "model.side_features=true", "data.batch_size=100000",
        f"data.user_features.path={table.parent / 'users.csv'}", "data.user_features.categorical=[group]",
        "data.user_features.numeric=[age]", f"data.item_features.path={table.parent / 'items.csv'}",
        "data.item_features.categorical=[kind]", "data.item_features.numeric=[year]",
        "trainer.epochs=80", "trainer.optimizer.lr=0.02", "task.reg=0", *QUIET, "--out", out,
    )  # fmt: skip
    assert code == 0, err
    result = json.loads((out / "results.json").read_text())
    m = result["metrics"]
    assert m["rmse"] < 0.7 * m["baseline_global_mean_rmse"], m
    rec = deepkit.load(out)
    epochs = len((out / "metrics.csv").read_text().splitlines()) - 1
    assert int(rec.model.avg_steps) >= epochs - 5  # stepped once an epoch (full batch); patience 5: best is that recent
    liked, disliked = rec.score("u3", ["i1", "i2"])  # u3 rates odd items high (see rec_table)
    assert 1.0 <= disliked < liked <= 5.0
    scores = rec.score("u0", [f"i{i}" for i in range(24)])
    assert ((scores >= 1.0) & (scores <= 5.0)).all()
    top = rec.recommend(["u0"], k=3)[0]
    assert len(top) == 3 and not {r["item"] for r in top} & {
        ln.split(",")[1] for ln in table.read_text().splitlines()[1:] if ln.startswith("u0,")
    }
    code, printed, err = deepkit_cli("eval", out)
    assert code == 0 and "rmse" in printed, err


def test_task_predictions_are_clipped_expected_ratings(tmp_path, rec_table):
    """RatingTask over levels: predict = mean + expected offset, clipped to the rating range; loss = cross-entropy."""
    from deepkit.api import build
    from deepkit.recipe import resolve_recipe

    table = rec_table(tmp_path, users=20, items=16, per_user=8)
    rec = resolve_recipe("interactions_mf", ["model.name=gcmc", "model.hidden=10", f"data.path={table}", *QUIET])
    built = build(rec)
    task, data = built.task, built.data
    assert task.levels is not None and task.levels.tolist() == sorted(set(data.parts["train"].rating.tolist()))
    model = task.model.eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(50)  # extreme logits: the expected rating goes to the end levels
        for n, _ in model.named_parameters():
            getattr(model, f"avg_{n}").copy_(getattr(model, n))
        t = data.parts["test"]
        u, i = torch.from_numpy(t.user), torch.from_numpy(t.item)
        pred = task.predict(u, i)
        raw = task.mean + model(u, i)
    low, high = data.rating_range
    assert ((pred >= low) & (pred <= high)).all()
    torch.testing.assert_close(pred, raw.clamp(low, high))
    assert raw.min() >= task.levels.min() - 1e-4 and raw.max() <= task.levels.max() + 1e-4
    batch = {"user": u, "item": i, "rating": torch.from_numpy(t.rating.astype(np.float32))}
    model.train()
    torch.manual_seed(5)  # the same dropout draws for both
    out = task.training_step(batch)
    target = torch.bucketize(batch["rating"], task.levels)
    torch.manual_seed(5)
    torch.testing.assert_close(out["loss"], torch.nn.functional.cross_entropy(model.level_logits(u, i), target))


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["model.name=biased_mf", "task.loss=ce"], "task.loss=ce needs a model over the rating levels"),
        (["model.name=gcmc", "task.loss=bpr"], "rating_prediction trains with mse (or ce for gcmc)"),
        (["model.name=gcmc", "task.name=item_ranking"], "model 'gcmc' predicts ratings over their levels; use task"),
    ],
)
def test_losses_and_tasks_that_do_not_fit_are_one_line_errors(tmp_path, rec_table, deepkit_cli, args, fragment):
    table = rec_table(tmp_path, users=10, items=8, per_user=4)
    code, _, err = deepkit_cli("train", "interactions_mf", f"data.path={table}", *args, *QUIET, "--out",
                               tmp_path / "run")  # fmt: skip
    assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1, err
    assert not (Path(tmp_path) / "run").exists()

"""Recommenders: rating prediction, implicit top-K ranking and next-item prediction on interaction tables.

Data: ``deepkit.data.interactions`` / ``deepkit.data.recsys`` (MovieLens 100k with its canonical splits, or your own
CSV/TSV table; random, temporal and leave-one-out splits; implicit feedback from ratings). Models: biased MF, GMF,
NCF MLP, NeuMF, I-AutoRec, a two-tower model with side features, GC-MC (a graph auto-encoder over the training
ratings, trained by cross-entropy over the rating levels), SASRec. Tasks: ``deepkit.tasks.recommendation``.

A run keeps its catalogue (``catalogue.json``: the id maps, titles, side-feature encoders), every interaction it read
(``interactions.safetensors``: what ``recommend`` leaves out and what I-AutoRec and SASRec read) and, for
leave-one-out ranking, the sampled protocol's candidates (``candidates.safetensors``: drawn once per ``data.seed``,
so every model is scored on the same ones). The report adds the baselines on the same split, scored by the same
code: the global mean and user + item biases (ratings), the most popular items (ranking).

Verb: ``recommend`` (``deepkit recommend RUN_DIR --user 42 -k 10``, ``--similar-to ITEM``, ``--items A,B``;
Python ``deepkit.load(run).recommend([42], k=10)``, ``similar_items``, ``score``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from deepkit.cli_options import flag
from deepkit.errors import CheckpointError, ConfigError, DataError, ShapeError, suggest
from deepkit.families.base import ExportSpec, Family, Finish, Predictor, Saved, ServeHook

if TYPE_CHECKING:
    import numpy as np
    import torch

    from deepkit.data.interactions import Catalogue, Interactions
    from deepkit.data.recsys import RecData
    from deepkit.recipe import Recipe
    from deepkit.tasks.base import Task

TASKS = {
    "rating_prediction": "explicit ratings (biased MF, NCF, I-AutoRec, two-tower, GC-MC): MSE or cross-entropy over "
    "the rating levels; RMSE/MAE vs mean and biases",
    "item_ranking": "implicit top-K (BCE/BPR, sampled negatives): full-ranking HR/NDCG/Recall/MAP@K, coverage, "
    "sampled protocol; vs most popular",
    "next_item": "next-item prediction from a user's sequence (SASRec): full-ranking and sampled metrics",
}
KIND = {"rating_prediction": "rating", "item_ranking": "ranking", "next_item": "next_item"}
DEFAULT_LOSS = {"rating_prediction": "mse", "item_ranking": "bce", "next_item": "ce"}
MAX_LEVELS = 20  # distinct training ratings a model over rating levels (GC-MC) accepts
FILES = ("catalogue.json", "interactions.safetensors")


@dataclass
class RecTaskConfig:
    """The ``task`` section of recommender recipes."""

    name: str = "rating_prediction"
    loss: str = "auto"  # rating_prediction: mse, or ce over the rating levels (gcmc); item_ranking: bce or bpr;
    # next_item: ce or bce (auto: the first; gcmc: ce)
    negatives: int = 4  # item_ranking: sampled negatives per training positive (drawn afresh every epoch)
    k: int = 10  # cut-off of HR/NDCG/Recall/MAP/coverage
    reg: float = 0.0  # L2 on the embedding rows a batch uses (per interaction)


# --- what a run keeps -------------------------------------------------------------------------------------------------
@dataclass
class RecSaved(Saved):
    """A recommender run keeps its catalogue, the interactions it read and, for leave-one-out ranking, the sampled
    protocol's candidates; the checkpoint's metadata holds the rest and the id maps' fingerprint."""

    task: str
    catalogue: Catalogue
    interactions: Interactions  # every split's, in the order train, val, test
    split_of: np.ndarray  # 0 train, 1 val, 2 test, per interaction
    rating_range: tuple[float, float]
    mean: float
    threshold: float | None = None
    max_len: int = 200
    candidates: dict[str, np.ndarray] = field(default_factory=dict)

    def meta(self) -> dict[str, Any]:
        return {
            "recommender": {
                "task": self.task,
                "fingerprint": self.catalogue.fingerprint(),
                "num_users": self.catalogue.num_users,
                "num_items": self.catalogue.num_items,
                "rating_range": list(self.rating_range),
                "mean": self.mean,
                "threshold": self.threshold,
                "max_len": self.max_len,
            }
        }

    def write(self, run_dir: Path) -> None:
        import numpy as np
        import torch
        from safetensors.torch import save_file

        from deepkit.weights import atomic_write_text

        atomic_write_text(run_dir / "catalogue.json", json.dumps(self.catalogue.to_dict()))
        t = self.interactions
        tensors = {
            "user": torch.from_numpy(t.user),
            "item": torch.from_numpy(t.item),
            "rating": torch.from_numpy(t.rating.astype(np.float32)),
            "time": torch.from_numpy(t.time),
            "split": torch.from_numpy(self.split_of.astype(np.int8)),
        }
        save_file(tensors, str(run_dir / "interactions.safetensors"))
        if self.candidates:
            cands = {k: torch.from_numpy(v) for k, v in self.candidates.items()}
            save_file(cands, str(run_dir / "candidates.safetensors"))

    @classmethod
    def from_meta(cls, folder: Path, meta: dict[str, Any]) -> RecSaved:
        """Read back: the files are looked for in ``folder`` and up to 3 parents (RUN_DIR/checkpoints/best, ...)."""
        from safetensors.torch import load_file

        from deepkit.data.interactions import Catalogue, Interactions

        info = meta.get("recommender")
        if not info:
            raise CheckpointError(f"{folder}: no recommender metadata in the checkpoint (not a recommender run)")
        start = folder if folder.is_dir() else folder.parent
        home = next((d for d in [start, *start.parents][:4] if (d / FILES[0]).is_file()), None)
        if home is None or not (home / FILES[1]).is_file():
            raise CheckpointError(
                f"{folder}: this recommender needs its run's {' and '.join(FILES)} (written by deepkit train) and "
                "they were not found next to it"
            )
        catalogue = Catalogue.from_dict(json.loads((home / FILES[0]).read_text()))
        if catalogue.fingerprint() != info["fingerprint"]:
            raise CheckpointError(
                f"{home / FILES[0]} is not the id map this model was trained with (fingerprint "
                f"{catalogue.fingerprint()} vs {info['fingerprint']})"
            )
        tensors = {k: v.numpy() for k, v in load_file(str(home / FILES[1])).items()}
        interactions = Interactions(tensors["user"], tensors["item"], tensors["rating"], tensors["time"])
        cand_file = home / "candidates.safetensors"
        candidates = {k: v.numpy() for k, v in load_file(str(cand_file)).items()} if cand_file.is_file() else {}
        return cls(
            info["task"],
            catalogue,
            interactions,
            tensors["split"],
            tuple(info["rating_range"]),
            info["mean"],
            info.get("threshold"),
            info.get("max_len", 200),
            candidates,
        )


# --- the family -------------------------------------------------------------------------------------------------------
def model_inputs(model_name: str) -> str:
    """What a registered model reads (pairs, item_vectors, sequence); a model that is no recommender is an error."""
    from deepkit.models.base import Recommender
    from deepkit.models.registry import get_entry, list_models

    cls = get_entry(model_name).cls
    if not issubclass(cls, Recommender):
        names = [n for n in list_models() if issubclass(get_entry(n).cls, Recommender)]
        raise ShapeError(f"model '{model_name}' is not a recommender; expected one of {', '.join(names)}")
    return cls.inputs


def check_fit(task: str, model: str, inputs: str, split: str) -> None:
    """The task, the model and the split fit together, else a one-line error saying what would."""
    if task == "next_item":
        if inputs != "sequence":
            raise ConfigError(f"task next_item needs a sequence model (sasrec); model '{model}' scores {inputs}")
        if split != "leave_one_out":
            raise ConfigError(
                f"task next_item predicts each user's next item: it needs data.split=leave_one_out, got {split}"
            )
    elif inputs == "sequence":
        raise ConfigError(f"model '{model}' predicts the next item of a sequence; use task.name=next_item")
    elif inputs == "item_vectors" and task != "rating_prediction":
        raise ConfigError(f"model '{model}' reconstructs ratings; use task.name=rating_prediction")
    elif task != "rating_prediction" and predicts_levels(model):
        raise ConfigError(f"model '{model}' predicts ratings over their levels; use task.name=rating_prediction")


def predicts_levels(model_name: str) -> bool:
    """The model gives a distribution over the rating levels (``level_logits``), as GC-MC does."""
    from deepkit.models.registry import get_entry

    return hasattr(get_entry(model_name).cls, "level_logits")


def loss_of(rec: Recipe) -> str:
    if rec.task.loss != "auto":
        return rec.task.loss
    if rec.task.name == "rating_prediction" and predicts_levels(rec.model["name"]):
        return "ce"
    return DEFAULT_LOSS[rec.task.name]


def rating_levels(data: RecData) -> np.ndarray:
    """The distinct training ratings, sorted: the levels of a model over rating levels (GC-MC's graph edges)."""
    import numpy as np

    levels = np.unique(data.parts["train"].rating)
    if len(levels) > MAX_LEVELS or len(levels) < 2:
        raise DataError(
            f"the training ratings take {len(levels)} distinct values; a model over rating levels needs 2 to "
            f"{MAX_LEVELS} (e.g. 1..5 stars)"
        )
    return levels


def read_run_weights(path: str, expect: str, catalogue: Catalogue) -> dict[str, torch.Tensor]:
    """The best weights of a trained run of model ``expect`` whose id maps are ``catalogue``'s."""
    from deepkit.rundir import read_checkpoint

    found, state, meta = read_checkpoint(Path(path), "best")
    if meta.get("model") != expect:
        raise ConfigError(f"{path} holds a '{meta.get('model')}' run; expected a trained {expect} run")
    theirs = (meta.get("recommender") or {}).get("fingerprint")
    if theirs != catalogue.fingerprint():
        raise ConfigError(
            f"{path} was trained on other users/items (id-map fingerprint {theirs} vs {catalogue.fingerprint()}); "
            "pretrain GMF and MLP on the same data"
        )
    return state


class RecommenderFamily(Family):
    name = "recommenders"
    description = "recommender systems: rating prediction, top-K ranking, next-item prediction"
    tasks = TASKS

    def task_config(self, task: str) -> type:
        return RecTaskConfig

    def data_config(self, task: str) -> type:
        from deepkit.data.interactions import RecDataConfig

        return RecDataConfig

    def datasets(self, task: str) -> dict[str, str]:
        from deepkit.data.interactions import DATASETS

        return DATASETS

    def build_data(self, rec: Recipe, saved: Saved | None = None, given: Any = None) -> RecData:
        from deepkit.data.recsys import build_rec_data

        if given is not None:
            raise ConfigError(f"task '{rec.task.name}' reads its data from the recipe's data section, not arrays")
        self.check_dataset(rec)
        inputs = model_inputs(rec.model["name"])
        check_fit(rec.task.name, rec.model["name"], inputs, rec.data.split)
        loss = loss_of(rec)
        negatives = 0
        if rec.task.name == "item_ranking":
            if rec.task.negatives < 1:
                raise ConfigError(f"task.negatives must be >= 1 (negatives per positive), got {rec.task.negatives}")
            negatives = rec.task.negatives
        elif rec.task.name == "next_item" and loss == "bce":
            negatives = 1
        elif rec.task.name == "rating_prediction" and loss not in ("mse", "ce"):
            raise ConfigError(f"task.loss: rating_prediction trains with mse (or ce for gcmc), got '{loss}'")
        elif rec.task.name == "rating_prediction" and loss == "ce" and not predicts_levels(rec.model["name"]):
            raise ConfigError(
                f"task.loss=ce needs a model over the rating levels (gcmc); model '{rec.model['name']}' trains with mse"
            )
        old = saved if isinstance(saved, RecSaved) else None
        return build_rec_data(
            rec.data,
            KIND[rec.task.name],
            inputs,
            negatives,
            old.catalogue if old else None,
            old.candidates if old else None,
        )

    def build_model(self, rec: Recipe, data: RecData) -> torch.nn.Module:
        import torch

        from deepkit.config import field_types
        from deepkit.models.registry import create_model, get_entry

        name = rec.model["name"]
        overrides = {k: v for k, v in rec.model.items() if k != "name"}
        fields = field_types(get_entry(name).config_cls)
        sizes = {"num_users": data.num_users, "num_items": data.num_items, "max_len": data.max_len}
        cat = data.catalogue
        train = data.parts["train"]
        if "num_edges" in fields:  # a graph model: the training ratings are its edges
            sizes["num_edges"] = len(train)
            sizes["num_levels"] = len(rating_levels(data))
        side = overrides.get("side_features", getattr(get_entry(name).config_cls, "side_features", True))
        if "user_features" in fields and side:
            if cat.user_features is None or cat.item_features is None:
                raise ShapeError(
                    f"model '{name}' needs user and item side features; dataset '{rec.data.name}' has none "
                    "(movielens100k has them)"
                )
            sizes["user_features"] = cat.user_features.matrix.shape[1]
            sizes["item_features"] = cat.item_features.matrix.shape[1]
        for key, value in sizes.items():
            if key not in fields:
                continue
            if key in overrides and overrides[key] != value:
                raise ShapeError(
                    f"model.{key}={overrides[key]} does not fit the data ({data.num_users} users, {data.num_items} "
                    f"items, data.max_len={data.max_len}); expected {key}={value} (or leave it out)"
                )
            overrides[key] = value
        model = create_model(name, **overrides)
        if hasattr(model, "set_features"):
            model.set_features(torch.from_numpy(cat.user_features.matrix), torch.from_numpy(cat.item_features.matrix))
        if getattr(model.cfg, "side_features", False):
            model.set_side_features(
                torch.from_numpy(cat.user_features.matrix), torch.from_numpy(cat.item_features.matrix)
            )
        if hasattr(model, "set_graph"):  # the training split only: no validation or test rating is an edge
            import numpy as np

            levels = rating_levels(data)
            model.set_graph(
                torch.from_numpy(train.user),
                torch.from_numpy(train.item),
                torch.from_numpy(np.searchsorted(levels, train.rating)),
                torch.from_numpy(levels - data.global_mean).float(),
            )
        return model

    def setup(self, rec: Recipe, model: torch.nn.Module, data: RecData, fresh: bool) -> list:
        cfg = getattr(model, "cfg", None)
        gmf, mlp = getattr(cfg, "pretrained_gmf", None), getattr(cfg, "pretrained_mlp", None)
        if fresh and (gmf or mlp):
            from deepkit.models.ncf import init_from_pretrained

            if not (gmf and mlp):
                raise ConfigError("NeuMF pretraining needs both model.pretrained_gmf and model.pretrained_mlp runs")
            init_from_pretrained(
                model,
                read_run_weights(gmf, "gmf", data.catalogue),
                read_run_weights(mlp, "ncf_mlp", data.catalogue),
                cfg.alpha,
            )
            data.notes.append(f"NeuMF initialized from {gmf} (GMF) and {mlp} (MLP), alpha={cfg.alpha}")
        if getattr(cfg, "average", 0) > 0 and hasattr(model, "update_average"):
            return [weight_average()]
        return []

    def build_task(self, rec: Recipe, model: torch.nn.Module, data: RecData) -> Task:
        from deepkit.tasks.recommendation import NextItemTask, RankingTask, RatingTask

        t = rec.task
        if t.name == "rating_prediction":
            matrix = data.item_matrix() if data.inputs == "item_vectors" else None
            levels = None
            if loss_of(rec) == "ce":
                import torch

                levels = torch.from_numpy(rating_levels(data)).float()
            return RatingTask(model, data.global_mean, data.rating_range, t.reg, matrix, levels)
        cls = NextItemTask if t.name == "next_item" else RankingTask
        return cls(model, data.num_items, loss_of(rec), t.k, t.reg)

    def saved(self, rec: Recipe, data: RecData) -> RecSaved:
        import numpy as np

        from deepkit.data.interactions import Interactions

        splits = [s for s in ("train", "val", "test") if s in data.parts]
        return RecSaved(
            rec.task.name,
            data.catalogue,
            Interactions.concat(*(data.parts[s] for s in splits)),
            np.concatenate([np.full(len(data.parts[s]), j) for j, s in enumerate(splits)]),
            data.rating_range,
            data.global_mean,
            data.threshold,
            data.max_len,
            dict(data.candidates),
        )

    def load_saved(self, folder: Path, meta: dict[str, Any]) -> RecSaved:
        return RecSaved.from_meta(folder, meta)

    def on_create(self, rec: Recipe, run_dir: Path, model: torch.nn.Module, data: RecData) -> None:
        if data.notes:
            with open(run_dir / "log.txt", "a") as f:
                f.writelines(f"note: {line}\n" for line in data.notes)

    def report(self, run: Finish) -> dict[str, Any]:
        """Baselines on the report split, scored by the same task code; a few users' top items."""
        run.metrics.update(baselines(run))
        predictor = RecommenderPredictor(run.task.model, run.recipe.task.name, self.saved(run.recipe, run.data))
        users = [run.data.catalogue.users[u] for u in run.data.eval_users(run.split)[:3]]
        examples = {u: predictor.recommend([u], k=5)[0] for u in users} if users else {}
        run.task.model.train(False)
        return {"recommendations": examples}

    def predictor(self, model: torch.nn.Module, task: str, saved: Saved, run_dir: Path | None) -> Predictor:
        return RecommenderPredictor(model, task, saved, run_dir)


def weight_average() -> Any:
    """A callback stepping the model's moving average of its weights (GC-MC's ``average``) after every optimizer
    step (defined here so that importing the family loads no torch)."""
    from deepkit.train.callbacks import Callback

    class WeightAverage(Callback):
        def on_step_end(self, trainer: Any) -> None:
            trainer.task.model.update_average()

    return WeightAverage()


def baselines(run: Finish) -> dict[str, float]:
    """Rating runs: the global mean and user + item biases; ranking runs: the most popular items."""
    from deepkit.tasks.recommendation import Biases, Popularity, RankingTask, RatingTask

    data, split = run.data, run.split
    out: dict[str, float] = {}
    if data.kind == "rating":
        t = data.parts["train"]
        models = {
            "global_mean": Biases(None, None, None, data.num_users, data.num_items),
            "biases": Biases(t.user, t.item, t.rating, data.num_users, data.num_items),
        }
        for name, model in models.items():
            task = RatingTask(model, data.global_mean, data.rating_range)
            for k, v in run.trainer.evaluate(task, data, split).items():
                if k != "loss":
                    out[f"baseline_{name}_{k}"] = v
        return out
    pop = Popularity(data.positives("train").item, data.num_items)
    task = RankingTask(pop, data.num_items, k=run.recipe.task.k)
    for k, v in run.trainer.evaluate(task, data, split).items():
        if k != "loss":
            out[f"baseline_most_popular_{k}"] = v
    return out


def find_item(catalogue: Catalogue, item: Any) -> int:
    """An item by raw id, else by title (exact, any case; or the one title containing the text)."""
    cat = catalogue
    key = str(item)
    if key in cat.item_index:
        return cat.item_index[key]
    if cat.titles:
        low = key.lower()
        exact = [i for i, t in enumerate(cat.titles) if t.lower() == low]
        if len(exact) == 1:
            return exact[0]
        part = [i for i, t in enumerate(cat.titles) if low in t.lower()] or exact
        if len(part) == 1:
            return part[0]
        if part:
            shown = "; ".join(f"{cat.items[i]}: {cat.titles[i]}" for i in part[:5])
            raise DataError(
                f"'{item}' matches {len(part)} titles ({shown}{' ...' if len(part) > 5 else ''}); give the item id"
            )
    raise DataError(
        f"item '{item}' is not one of this run's {cat.num_items} items (by id or title)"
        f"{suggest(key, cat.items) if len(cat.items) < 5000 else ''}"
    )


def item_record(catalogue: Catalogue, i: int, score: float) -> dict[str, Any]:
    """``{"item", "title", "genres", "score"}`` of internal item ``i`` (what the verbs return and print)."""
    out = {"item": catalogue.items[i], "title": catalogue.describe_item(i)}
    if catalogue.genres:
        out["genres"] = catalogue.genres[i]
    out["score"] = round(float(score), 4)
    return out


# --- using a trained run ----------------------------------------------------------------------------------------------
class RecommenderPredictor(Predictor):
    """A trained recommender with its catalogue and the interactions it knows.

    Example:
        >>> rec = deepkit.load("runs/movielens_mf")                # doctest: +SKIP
        >>> rec.recommend([42], k=10)[0][0]                         # doctest: +SKIP
        {'item': '50', 'title': 'Star Wars (1977)', 'genres': 'Action|Adventure|...', 'score': 4.71}
    """

    kind = "recommender run"
    verbs = {"recommend": ("recommend", "similar_items", "score")}

    def __init__(self, model: torch.nn.Module, task_name: str, saved: RecSaved, run_dir: Path | None = None):

        from deepkit.data.interactions import PairSet

        super().__init__(model, task_name, saved, run_dir)
        self.catalogue = saved.catalogue
        t = saved.interactions
        self.known = PairSet(t.user, t.item, self.catalogue.num_items)
        self.inputs = getattr(model, "inputs", "pairs")
        self.rating = task_name == "rating_prediction"
        self._matrix: torch.Tensor | None = None

    def serve_hooks(self) -> dict[str, ServeHook]:
        """``deepkit serve``: ``POST /recommend`` ``{"user": ID, "k": 10}`` -> the user's top-k items."""

        def run(user: str, k: int) -> list[dict[str, Any]]:
            return self.recommend([user], k)[0]

        params = {
            "user": {"type": "string", "maxLength": 200},
            "k": {"type": "integer", "default": 10, "minimum": 1, "maximum": 1000},
        }
        return {"recommend": ServeHook(run, params, description="a user's top-k items (rated ones left out)")}

    def serve_page(self) -> dict[str, Any]:
        users = self.catalogue.users
        note = f"{len(users):,} users; the first {min(500, len(users))} listed, any id can be typed"
        return {"input": "choice", "choices": users[:500], "show": "list", "hook": "recommend", "param": "user",
                "note": note}  # fmt: skip

    def export_spec(self) -> ExportSpec:
        """User ids -> the score of every item, already-known items at ``-inf`` (what ``recommend`` ranks; SASRec:
        item histories -> scores, the history's items at ``-inf``). The id maps go in the sidecar: input ``user`` is
        the index of the user's raw id in ``users``, output column ``i`` is the item ``outputs.scores.labels[i]``."""
        import torch

        from deepkit.tasks.recommendation import HistoryRecommendInference, RecommendInference

        cat, saved = self.catalogue, self.saved
        nu, ni = cat.num_users, cat.num_items
        sequence = self.inputs == "sequence"
        matrix = self._item_matrix() if self.inputs == "item_vectors" else None
        scorer = self.model.export_scorer(matrix)
        seen = None
        if not sequence:
            seen = torch.zeros(nu * ni, dtype=torch.bool)
            seen[torch.from_numpy(self.known.keys)] = True
            seen = seen.view(nu, ni).to(self.device)
        rating = (saved.mean, *saved.rating_range) if self.rating else None
        module = (HistoryRecommendInference if sequence else RecommendInference)(scorer, seen, rating, ni).eval()
        name = "history" if sequence else "user"

        def sample(batch: int, seed: int) -> dict[str, torch.Tensor]:
            g = torch.Generator().manual_seed(seed)
            if not sequence:
                return {name: torch.randint(0, nu, (batch,), generator=g)}
            t = int(torch.randint(2, min(saved.max_len, 12) + 1, (), generator=g))
            seq = torch.randint(0, ni, (batch, t), generator=g)
            pad = torch.randint(0, t, (batch,), generator=g)
            pad[0] = 0  # the longest fills the width, as padded_sequences gives it
            seq[torch.arange(t)[None] < pad[:, None]] = ni  # left padding
            return {name: seq}

        if sequence:
            inputs = {name: {"dtype": "int64", "shape": ["sequence"], "range": [0, ni], "padding": ni}}
            note = "the user's items, oldest first, left-padded with the padding id; its items are left out"
        else:
            inputs = {name: {"dtype": "int64", "shape": [], "range": [0, nu - 1]}}
            note = "the index of the user's id in 'users'; the items the run knows for the user are left out"
        sidecar = {
            "task": self.task_name,
            "inputs": inputs,
            "outputs": {"scores": {"shape": [ni], "labels": list(cat.items), "known_items": "-inf"}},
            "page": self.serve_page(),
            "recommender": {
                "input": note,
                "scores": "predicted ratings" if self.rating else "model scores (higher ranks first)",
                "users": list(cat.users),
                "titles": [cat.describe_item(i) for i in range(ni)],
                "max_len": saved.max_len if sequence else None,
            },
        }
        example = sample(2, 0)
        dynamic = {name: {1: "sequence"}} if sequence else {}
        return ExportSpec(module, example, ["scores"], sidecar, sample, dynamic=dynamic)

    # --- ids ---------------------------------------------------------------------------------------------------------
    def _user(self, user: Any) -> int | None:
        key = str(user)
        i = self.catalogue.user_index.get(key)
        return i

    def _unknown_user(self, user: Any) -> DataError:
        cat = self.catalogue
        hint = (
            "; a two-tower run scores a new user from features=... (--features age=..,gender=..)"
            if hasattr(self.model, "set_features")
            else ""
        )
        return DataError(
            f"user '{user}' is not one of this run's {cat.num_users} users (ids like '{cat.users[0]}' .. "
            f"'{cat.users[-1]}'){suggest(str(user), cat.users) if len(cat.users) < 5000 else ''}{hint}"
        )

    def _known_users(self, users: list[Any]) -> list[int]:
        """Internal ids of users the run was trained with; an unknown one is an error."""
        out = []
        for u in users:
            i = self._user(u)
            if i is None:
                raise self._unknown_user(u)
            out.append(i)
        return out

    def _check_k(self, k: int, n: int, what: str) -> None:
        if not 1 <= k <= n:
            raise ConfigError(f"k={k}, but the catalogue has {n} {what}; expected 1 <= k <= {n}")

    # --- scores ------------------------------------------------------------------------------------------------------
    def _item_matrix(self) -> torch.Tensor:
        """I-AutoRec's inputs: every known rating as item vectors (I, U) centred on the training mean."""
        import torch

        if self._matrix is None:
            t = self.saved.interactions
            m = torch.zeros(self.catalogue.num_items, self.catalogue.num_users)
            m[t.item, t.user] = torch.from_numpy(t.rating - self.saved.mean).float()
            self._matrix = m.to(self.device)
        return self._matrix

    def _sequences(self, users: list[int]) -> torch.Tensor:
        """SASRec's inputs: each user's known positives in time order (the latest ``max_len``)."""
        import numpy as np

        from deepkit.data.recsys import padded_sequences

        t = self.saved.interactions
        if self.saved.threshold is not None:
            t = t.take(np.nonzero(t.rating >= self.saved.threshold)[0])
        n = self.catalogue.num_items
        return padded_sequences(t, np.asarray(users), self.saved.max_len, n).to(self.device)

    def _score_users(self, users: list[int], user_x: torch.Tensor | None = None) -> torch.Tensor:
        """Scores of every item for internal users (B, I): predicted ratings for rating runs."""
        import torch

        u = torch.tensor(users, dtype=torch.long, device=self.device)
        with torch.no_grad():
            if self.inputs == "item_vectors":
                out = self.model(self._item_matrix()).T[u]
            elif self.inputs == "sequence":
                out = self.model.score_all(self._sequences(users))
            elif user_x is not None:
                out = self.model.score_all(u, user_x=user_x)
            else:
                out = self.model.score_all(u)
        out = out.float().cpu()
        if self.rating:
            lo, hi = self.saved.rating_range
            out = (self.saved.mean + out).clamp(lo, hi)
        return out

    def recommend(
        self,
        users: Any,
        k: int = 10,
        exclude_rated: bool = True,
        features: list[dict[str, Any]] | dict[str, Any] | None = None,
    ) -> list[list[dict[str, Any]]]:
        """The top ``k`` items for each user: ``{"item", "title", "genres", "score"}`` dicts, best first; ``score``
        is the predicted rating (rating runs) or the model's score. Items a user already interacted with are left
        out (``exclude_rated``), so a user may get fewer than ``k``.

        Args:
            users: user ids as in the data (one, or a list).
            features: a two-tower run scores users it was not trained with from their side features: one mapping per
                user (``{"age": 25, "gender": "F", "occupation": "student"}``), or one for all.
        """
        import numpy as np
        import torch

        users = [users] if isinstance(users, str | int) else list(users)
        cat = self.catalogue
        self._check_k(k, cat.num_items, "items")
        user_x = None
        if features is not None:
            if not hasattr(self.model, "set_features") or cat.user_features is None:
                raise ConfigError(
                    f"features= needs a two-tower run; this is a '{getattr(self.model, 'model_name', '?')}' run"
                )
            rows = [features] * len(users) if isinstance(features, dict) else list(features)
            if len(rows) != len(users):
                raise DataError(f"{len(users)} users but {len(rows)} feature mappings; expected one per user")
            from deepkit.data.interactions import encode_features

            user_x = torch.from_numpy(encode_features(cat.user_features.columns, rows, "features")).to(self.device)
            ids = [self._user(u) for u in users]
            internal = [cat.num_users if i is None else i for i in ids]  # the unknown-user row for new users
        else:
            internal = self._known_users(users)
        scores = self._score_users(internal, user_x)
        out = []
        for row, u in zip(scores, internal, strict=True):
            if exclude_rated and u < cat.num_users:
                rated = self.known.contains(np.full(cat.num_items, u), np.arange(cat.num_items))
                row = row.masked_fill(torch.from_numpy(rated), float("-inf"))
            top = row.topk(min(k, cat.num_items))
            out.append(
                [
                    item_record(self.catalogue, i, s)
                    for s, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)
                    if s > float("-inf")
                ]
            )
        return out

    def similar_items(self, item: Any, k: int = 10) -> list[dict[str, Any]]:
        """The ``k`` items nearest to ``item`` (an id or a title) by cosine similarity of the model's item vectors
        (I-AutoRec: the codes of the items' rating vectors); ``score`` is the similarity."""
        import torch

        i = find_item(self.catalogue, item)
        n = self.catalogue.num_items
        self._check_k(k, n - 1, "other items")
        with torch.no_grad():
            if self.inputs == "item_vectors":
                vecs = self.model.encode(self._item_matrix())
            else:
                vecs = self.model.item_vectors()
            unit = torch.nn.functional.normalize(vecs.float().cpu(), dim=1)
        sims = unit @ unit[i]
        sims[i] = float("-inf")
        top = sims.topk(k)
        return [
            item_record(self.catalogue, j, s) for s, j in zip(top.values.tolist(), top.indices.tolist(), strict=True)
        ]

    def score(self, users: Any, items: Any) -> np.ndarray:
        """The score of each (user, item) pair: predicted ratings (clipped to the rating range) for rating runs, the
        model's scores otherwise. ``users`` and ``items``: ids, one each or lists of one length (or one user)."""
        import numpy as np

        users = [users] if isinstance(users, str | int) else list(users)
        items = [items] if isinstance(items, str | int) else list(items)
        if len(users) == 1 and len(items) > 1:
            users = users * len(items)
        if len(users) != len(items):
            raise DataError(f"{len(users)} users but {len(items)} items; expected pairs of one length (or one user)")
        uid = self._known_users(users)
        iid = [find_item(self.catalogue, i) for i in items]
        scores = self._score_users(sorted(set(uid)))
        row = {u: r for r, u in enumerate(sorted(set(uid)))}
        return np.array([float(scores[row[u], i]) for u, i in zip(uid, iid, strict=True)])


# --- CLI verb ---------------------------------------------------------------------------------------------------------
def parse_features(text: str) -> dict[str, str]:
    """``age=25,gender=F`` -> ``{"age": "25", "gender": "F"}``."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in part:
            raise ConfigError(f"--features takes NAME=VALUE pairs separated by commas, got {part!r}")
        key, value = part.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def recommend(
    predictor: RecommenderPredictor,
    user: Annotated[list[str] | None, typer.Option("--user", help="A user id as in the data (repeatable).")] = None,
    k: Annotated[int, typer.Option("-k", help="How many items to list.")] = 10,
    similar_to: Annotated[
        str | None, typer.Option("--similar-to", help="List the items nearest to ITEM (an id or a title) instead.")
    ] = None,
    items: Annotated[
        str | None, typer.Option("--items", help="Score these items (comma-separated ids) for --user instead.")
    ] = None,
    features: Annotated[
        str | None,
        typer.Option(
            "--features",
            help="Two-tower runs: score a new user from features, e.g. age=25,gender=F,occupation=student.",
        ),
    ] = None,
    include_rated: Annotated[bool, flag("--include-rated", help="Also list items the user already rated.")] = False,
    as_json: Annotated[bool, flag("--json", help="Print one JSON object.")] = False,
) -> None:
    """Recommend items to users (titles with scores; items a user already rated are left out), list the items
    nearest to an item, or score given items.

    Examples: deepkit recommend runs/movielens_mf --user 42 -k 10;
    deepkit recommend runs/movielens_mf --similar-to "Star Wars (1977)";
    deepkit recommend runs/movielens_two_tower --user new --features age=25,gender=F,occupation=student
    """
    if similar_to is not None:
        found = predictor.similar_items(similar_to, k)
        if as_json:
            typer.echo(json.dumps(found))
            return
        i = find_item(predictor.catalogue, similar_to)
        typer.echo(f"items nearest to {predictor.catalogue.describe_item(i)} (cosine similarity):")
        _print_items(found)
        return
    if not user:
        raise ConfigError("recommend needs --user ID (repeatable), or --similar-to ITEM")
    if items is not None:
        ids = [s.strip() for s in items.split(",") if s.strip()]
        values = predictor.score(user[0], ids) if len(user) == 1 else predictor.score(user, ids)
        what = "predicted rating" if predictor.rating else "score"
        rows = [
            item_record(predictor.catalogue, find_item(predictor.catalogue, i), v)
            for i, v in zip(ids, values, strict=True)
        ]
        if as_json:
            typer.echo(json.dumps(rows))
            return
        typer.echo(f"user {user[0]}: {what} of {len(rows)} items")
        _print_items(rows, numbered=False)
        return
    feats = parse_features(features) if features else None
    found = predictor.recommend(user, k, exclude_rated=not include_rated, features=feats)
    if as_json:
        typer.echo(json.dumps(dict(zip(user, found, strict=True))))
        return
    what = "predicted rating" if predictor.rating else "score"
    for u, rows in zip(user, found, strict=True):
        typer.echo(f"user {u}: top {len(rows)} ({what}{', rated items left out' if not include_rated else ''})")
        _print_items(rows)


def _print_items(rows: list[dict[str, Any]], numbered: bool = True) -> None:
    for n, r in enumerate(rows, start=1):
        genres = f"  [{r['genres']}]" if r.get("genres") else ""
        head = f"{n:>3}. " if numbered else "     "
        label = r["title"] if r["title"] == r["item"] else f"{r['title']} (id {r['item']})"
        typer.echo(f"{head}{r['score']:>8.3f}  {label}{genres}")


RecommenderFamily.commands = (recommend,)
FAMILY = RecommenderFamily()

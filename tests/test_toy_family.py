"""Adding a family is one file: this test file defines a whole family (task, data section, data, model binding, task,
saved state, end-of-run report, predictor with its own verb) and trains, evaluates, predicts and resumes it through
the CLI, without editing any module of deepkit. It is also found as a plugin through ``DEEPKIT_FAMILIES``."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pytest
import torch
import typer
import yaml

import deepkit
from deepkit.data import DataBundle, Preprocessing
from deepkit.families import Family, Finish, Predictor, Saved, family_of, register_family
from deepkit.models import create_model
from deepkit.tasks import ClassificationTask
from deepkit.train import Callback


# --- the family ------------------------------------------------------------------------------------------------------
@dataclass
class SignTask:
    """The ``task`` section."""

    name: str = "toy_sign"
    label_smoothing: float = 0.0


@dataclass
class SignData:
    """The ``data`` section: random vectors whose label is the sign of their sum."""

    name: str = "random_signs"
    n: int = 600
    dim: int = 6
    seed: int = 0
    batch_size: int = 32
    eval_batch_size: int = 256


@dataclass
class Width(Saved):
    """What a run keeps to predict later: the input width."""

    dim: int

    def meta(self) -> dict[str, Any]:
        return {"toy": {"dim": self.dim}}


class SignPredictor(Predictor):
    kind = "toy sign run"
    verbs = {"predict": ("predict_files",), "sign": ("sign",)}

    def sign(self, x: np.ndarray) -> np.ndarray:
        """-1 or +1 per row."""
        with torch.no_grad():
            logits = self.model(torch.as_tensor(np.atleast_2d(x), dtype=torch.float32))
        return np.where(logits.argmax(1).numpy() == 1, 1, -1)

    def predict_files(self, paths: list[str | Path], top_k: int = 1) -> list[dict[str, Any]]:
        """.npy files of rows."""
        out = []
        for path in paths:
            for i, s in enumerate(self.sign(np.load(path))):
                out.append({"input": f"{path}:{i}", "class": "positive" if s > 0 else "negative", "probability": 1.0})
        return out


def sign(
    predictor: SignPredictor,
    values: Annotated[str, typer.Option("--values", help="Comma-separated numbers: one input row.")],
) -> None:
    """Print the sign the model gives one row."""
    typer.echo(int(predictor.sign(np.array([float(v) for v in values.split(",")]))[0]))


class SignFamily(Family):
    name = "toy"
    description = "a family defined in a test"
    tasks = {"toy_sign": "the sign of the sum of a random vector"}
    commands = (sign,)

    def task_config(self, task: str) -> type:
        return SignTask

    def data_config(self, task: str) -> type:
        return SignData

    def build_data(self, rec, saved=None, given=None) -> DataBundle:
        cfg = rec.data
        g = torch.Generator().manual_seed(cfg.seed)
        x = torch.randn(cfg.n, cfg.dim, generator=g)
        y = (x.sum(1) > 0).long()
        a, b = int(cfg.n * 0.7), int(cfg.n * 0.85)
        prep = Preprocessing(kind="tabular", input_shape=[cfg.dim], class_names=["negative", "positive"])
        return DataBundle(
            "toy_sign", (x[:a], y[:a]), (x[a:b], y[a:b]), (x[b:], y[b:]), prep, cfg.batch_size, cfg.eval_batch_size
        )

    def build_model(self, rec, data):
        sizes = {**rec.model, "in_features": rec.data.dim, "num_classes": 2}  # a resumed run's section has them
        return create_model(**sizes)

    def build_task(self, rec, model, data):
        return ClassificationTask(model, 2, data.preprocessing, rec.task.label_smoothing)

    def saved(self, rec, data) -> Width:
        return Width(rec.data.dim)

    def load_saved(self, folder, meta) -> Width:
        return Width(meta["toy"]["dim"])

    def report(self, run: Finish) -> dict[str, Any]:
        run.metrics["chance_accuracy"] = 0.5
        return {"note": f"{run.data.sizes()['test']} test vectors"}

    def predictor(self, model, task, saved, run_dir) -> Predictor:
        return SignPredictor(model, task, saved, run_dir)


FAMILY = SignFamily()
register_family(FAMILY)

RECIPE = {
    "name": "toy",
    "task": {"name": "toy_sign"},
    "model": {"name": "mlp", "depth": 1, "width": 16},
    "data": {"name": "random_signs"},
    "trainer": {"epochs": 4, "optimizer": {"name": "adam", "lr": 0.01}, "progress": "none", "checkpoint_every": 5},
}


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(RECIPE))
    return path


class StopAt(Callback):
    """Interrupts training after ``step`` optimizer steps, as Ctrl-C would (a checkpoint is written every 5)."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, trainer):
        if trainer.state.step == self.step:
            raise KeyboardInterrupt


def test_a_family_defined_in_one_file_trains_evaluates_predicts_and_resumes_through_the_cli(
    recipe, tmp_path, deepkit_cli
):
    run = tmp_path / "run"
    code, out, err = deepkit_cli("train", recipe, "--out", run)
    assert code == 0, err
    results = json.loads((run / "results.json").read_text())
    assert results["metrics"]["accuracy"] > 0.8 and results["metrics"]["chance_accuracy"] == 0.5
    assert results["note"] == "90 test vectors"
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert set(config) == {"name", "description", "task", "model", "data", "trainer", "meta"}
    assert config["data"] == {"name": "random_signs", "n": 600, "dim": 6, "seed": 0, "batch_size": 32,
                              "eval_batch_size": 256}  # fmt: skip

    code, out, err = deepkit_cli("eval", run, "--json")
    assert code == 0, err
    assert json.loads(out)["accuracy"] == pytest.approx(results["metrics"]["accuracy"])

    np.save(tmp_path / "rows.npy", np.array([[1.0] * 6, [-1.0] * 6], dtype=np.float32))
    code, out, err = deepkit_cli("predict", run, tmp_path / "rows.npy", "--json")
    assert code == 0, err
    assert [r["class"] for r in json.loads(out)] == ["positive", "negative"]
    code, out, err = deepkit_cli("sign", run, "--values", "-3,-1,-2,0,-1,-4")
    assert code == 0 and out.strip() == "-1", err
    assert isinstance(deepkit.load(run), SignPredictor)

    code, _, err = deepkit_cli("train", "--resume", run, "trainer.epochs=6")  # a finished run, extended
    assert code == 0, err
    assert len((run / "metrics.csv").read_text().splitlines()) == 1 + 6


def test_a_family_defined_in_one_file_resumes_exactly(recipe, tmp_path, deepkit_cli):
    straight = deepkit.train(recipe, out=tmp_path / "straight")
    with pytest.raises(KeyboardInterrupt):
        deepkit.train(recipe, out=tmp_path / "cut", callbacks=[StopAt(33)])  # 14 batches an epoch: in epoch 3
    loop = json.loads((tmp_path / "cut" / "checkpoints" / "last" / "state.json").read_text())["loop"]
    assert (loop["epoch"], loop["batch"], loop["step"]) == (2, 2, 30)  # the last checkpoint: mid-epoch
    code, _, err = deepkit_cli("train", "--resume", tmp_path / "cut")
    assert code == 0, err
    a, _ = deepkit.weights.load_weights(straight.run_dir / "checkpoints" / "last" / "model.safetensors")
    b, _ = deepkit.weights.load_weights(tmp_path / "cut" / "checkpoints" / "last" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_family_module_is_found_through_deepkit_families(tmp_path, monkeypatch):
    (tmp_path / "toy_plugin_family.py").write_text(
        "from dataclasses import dataclass\n"
        "from deepkit.families import Family\n\n"
        "@dataclass\nclass Section:\n    name: str = 'plugin_task'\n\n"
        "class PluginFamily(Family):\n"
        "    name = 'toy_plugin'\n    tasks = {'plugin_task': 'a task of a plugin'}\n"
        "    def task_config(self, task):\n        return Section\n\n"
        "FAMILY = PluginFamily()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("DEEPKIT_FAMILIES", "toy_plugin_family")
    assert family_of("plugin_task").name == "toy_plugin"
    assert "toy_plugin_family" in sys.modules


def test_a_family_that_reuses_a_task_name_is_refused():
    class Clash(SignFamily):
        name = "clash"
        tasks = {"classification": "taken"}

    with pytest.raises(deepkit.DeepkitError, match="task 'classification' of family 'clash' already belongs"):
        register_family(Clash())

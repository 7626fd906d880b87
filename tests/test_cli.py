"""The ``deepkit`` command end to end (subprocesses), and the Python API it mirrors."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import deepkit
from deepkit.api import Predictor, RunResult


def last_json(stdout: str):
    """The JSON document a --json command printed (its last non-empty line)."""
    return json.loads([line for line in stdout.splitlines() if line.strip()][-1])


def yaml_rows(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def png_ok(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000


# --- discovery -------------------------------------------------------------------------------------------------------


def test_help_lists_commands(run_cli):
    proc = run_cli("--help")
    assert proc.returncode == 0, proc.stderr
    for command in ("train", "eval", "predict", "models", "recipes", "doctor", "lr-find"):
        assert re.search(rf"\b{command}\b", proc.stdout), command
    assert "--debug" in proc.stdout


def test_models_lists_registry(run_cli):
    proc = run_cli("models")
    assert proc.returncode == 0, proc.stderr
    names = [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]
    assert names == deepkit.list_models()
    assert {"mlp", "lenet5", "simple_cnn"} <= set(names)


def test_recipes_lists_bundled(run_cli):
    proc = run_cli("recipes")
    assert proc.returncode == 0, proc.stderr
    names = {line.split()[0] for line in proc.stdout.splitlines() if line.strip()}
    assert {"digits_cnn", "digits_mlp", "mnist_cnn", "diabetes_regression", "csv_classification"} <= names
    assert "Target" in proc.stdout  # descriptions are shown


# --- train / eval / predict on digits --------------------------------------------------------------------------------


def test_train_writes_a_complete_run_directory(digits_run):
    out, proc = digits_run
    assert f"run directory: {out}" in proc.stdout
    assert re.search(r"test metrics: loss [\d.]+ +accuracy [\d.]+", proc.stdout)
    assert proc.stderr.strip() == ""

    config = yaml.safe_load((out / "config.yaml").read_text())
    assert "git_commit" in config["meta"]
    commit = config["meta"]["git_commit"]
    assert commit is None or re.fullmatch(r"[0-9a-f]{40}", commit)
    assert "train digits_mlp trainer.epochs=2" in config["meta"]["command"]
    assert config["trainer"]["epochs"] == 2 and config["model"]["in_features"] == 64  # inferred from the data
    assert config["name"] == "digits_mlp"

    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert {"train_loss", "val_loss", "val_accuracy", "lr"} <= set(rows[0])
    log = [line for line in (out / "log.txt").read_text().splitlines() if not line.startswith(("speed plan", "  ["))]
    assert len(log) == 2 and log[0].startswith("epoch 1") and log[1].startswith("epoch 2")

    for f in (
        "checkpoints/last/model.safetensors",
        "checkpoints/last/state.json",
        "checkpoints/best/model.safetensors",
    ):
        assert (out / f).is_file(), f
    for plot in ("loss", "accuracy", "confusion_matrix"):
        assert png_ok(out / "plots" / f"{plot}.png"), plot

    status = json.loads((out / "run.json").read_text())
    assert status["status"] == "finished" and 0.5 < status["metrics"]["accuracy"] <= 1
    results = json.loads((out / "results.json").read_text())
    assert results["split"] == "test" and results["metrics"] == status["metrics"]
    matrix = json.loads((out / "confusion_matrix.json").read_text())
    assert matrix["classes"] == [str(i) for i in range(10)]
    cm = np.array(matrix["matrix"])
    assert cm.sum() == 359 and np.trace(cm) / cm.sum() == pytest.approx(status["metrics"]["accuracy"], abs=1e-6)
    assert len(list((out / "samples").glob("*.png"))) == 8


def test_eval_json(digits_run, run_cli):
    out, _ = digits_run
    proc = run_cli("eval", out, "--json")
    assert proc.returncode == 0, proc.stderr
    metrics = last_json(proc.stdout)
    assert {"loss", "accuracy", "f1"} <= set(metrics)
    stored = json.loads((out / "run.json").read_text())["metrics"]
    assert metrics["accuracy"] == pytest.approx(stored["accuracy"], abs=1e-6)
    assert metrics["loss"] == pytest.approx(stored["loss"], rel=1e-5)
    val = last_json(run_cli("eval", out, "--json", "--split", "val").stdout)
    assert val["accuracy"] != metrics["accuracy"] or val["loss"] != metrics["loss"]


def test_predict_images(digits_run, run_cli):
    out, _ = digits_run
    samples = sorted((out / "samples").glob("*.png"))
    proc = run_cli("predict", out, *samples)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == len(samples) == 8
    correct = 0
    for line, path in zip(lines, samples, strict=True):
        m = re.fullmatch(rf"{re.escape(str(path))}: (\d) \(p=([\d.]+)\)", line)
        assert m, line
        assert 0 < float(m.group(2)) <= 1
        correct += m.group(1) == path.stem.rsplit("_", 1)[1]
    assert correct >= 5, "a 90%-accurate model should get most held-out samples right"


def test_predict_json_and_top_k(digits_run, run_cli):
    out, _ = digits_run
    samples = sorted((out / "samples").glob("*.png"))[:3]
    records = last_json(run_cli("predict", out, *samples, "--json").stdout)
    assert [r["input"] for r in records] == [str(p) for p in samples]
    assert all(r["class"] in [str(i) for i in range(10)] and 0 <= r["probability"] <= 1 for r in records)
    top = last_json(run_cli("predict", out, samples[0], "--json", "--top-k", "3").stdout)[0]
    probs = [t["probability"] for t in top["top_k"]]
    assert len(probs) == 3 and probs == sorted(probs, reverse=True)
    assert top["top_k"][0]["class"] == top["class"]


@pytest.mark.slow  # one more CLI start-up (~3 s); runs with `make test-all`
def test_predict_npy(digits_run, run_cli, tmp_path):
    out, _ = digits_run
    from sklearn.datasets import load_digits

    images = (load_digits().images[:3] / 16.0).astype(np.float32)[:, None]  # raw (N, 1, 8, 8)
    np.save(tmp_path / "batch.npy", images)
    np.save(tmp_path / "one.npy", images[0])
    proc = run_cli("predict", out, tmp_path / "batch.npy", tmp_path / "one.npy", "--json")
    assert proc.returncode == 0, proc.stderr
    records = last_json(proc.stdout)
    assert [r["input"].rsplit("/", 1)[-1] for r in records] == [
        "batch.npy[0]",
        "batch.npy[1]",
        "batch.npy[2]",
        "one.npy",
    ]
    assert records[0]["class"] == records[3]["class"]  # the same image


# --- regression and CSV ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def diabetes_run(tmp_path_factory, run_cli):
    out = tmp_path_factory.mktemp("cli") / "diabetes"
    proc = run_cli("train", "diabetes_regression", "trainer.epochs=3", "--out", out)
    assert proc.returncode == 0, proc.stderr
    return out


def test_regression_run(diabetes_run, run_cli):
    out = diabetes_run
    assert png_ok(out / "plots" / "pred_vs_true.png")
    assert not (out / "plots" / "confusion_matrix.png").exists()
    metrics = last_json(run_cli("eval", out, "--json").stdout)
    assert {"loss", "r2", "rmse", "mae"} <= set(metrics)
    assert metrics["rmse"] > 10, "metrics are reported in the target's units (disease progression ~25-350)"
    rows = out / "samples" / "test_rows.csv"
    n_rows = len(rows.read_text().strip().splitlines()) - 1
    proc = run_cli("predict", out, rows)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == n_rows == 8
    values = [float(line.rsplit(": ", 1)[1]) for line in lines]
    assert all(np.isfinite(values)) and 0 < np.mean(values) < 400


def write_csv(path: Path, n: int = 90, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    names = ["red", "green", "blue"]
    lines = ["height,weight,age,colour"]
    for i in range(n):
        c = i % 3
        h, w, a = rng.normal([10 * c, -5 * c, 2 * c], 0.5)
        lines.append(f"{h:.3f},{w:.3f},{a:.3f},{names[c]}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def csv_run(tmp_path_factory, run_cli):
    root = tmp_path_factory.mktemp("cli")
    table = write_csv(root / "colours.csv")
    out = root / "csvrun"
    proc = run_cli(
        "train",
        "csv_classification",
        f"data.path={table}",
        "trainer.epochs=20",
        "trainer.optimizer.lr=0.01",
        "trainer.tensorboard=true",
        "--out",
        out,
    )
    assert proc.returncode == 0, proc.stderr
    return out


def test_csv_classification_run(csv_run, run_cli):
    out = csv_run
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["model"]["in_features"] == 3 and config["model"]["num_classes"] == 3
    metrics = last_json(run_cli("eval", out, "--json").stdout)
    assert metrics["accuracy"] >= 0.8
    proc = run_cli("predict", out, out / "samples" / "test_rows.csv", "--json")
    assert proc.returncode == 0, proc.stderr
    records = last_json(proc.stdout)
    assert len(records) == 8 and {r["class"] for r in records} <= {"red", "green", "blue"}


def test_tensorboard_events(csv_run):
    pytest.importorskip("tensorboard")
    events = list((csv_run / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(csv_run / "tensorboard"))
    acc.Reload()
    assert {"train/loss", "val/loss", "val/accuracy"} <= set(acc.Tags()["scalars"])
    assert len(acc.Scalars("train/loss")) == len(yaml_rows(csv_run))


@pytest.mark.slow  # one more CLI start-up (~3 s); runs with `make test-all`
def test_eval_on_other_data(csv_run, run_cli, tmp_path):
    other = write_csv(tmp_path / "other.csv", n=60, seed=5)
    proc = run_cli("eval", csv_run, "--data", f"path={other}", "--json")
    assert proc.returncode == 0, proc.stderr
    assert last_json(proc.stdout)["accuracy"] >= 0.8


# --- Python API ------------------------------------------------------------------------------------------------------


def test_python_api_train_load_predict(tmp_path):
    from sklearn.datasets import load_digits

    result = deepkit.train(
        "digits_mlp", "trainer.epochs=1", "trainer.progress=none", out=tmp_path / "api", model={"width": 64}
    )
    assert isinstance(result, RunResult) and result.run_dir == tmp_path / "api"
    assert len(result.history) == 1 and {"loss", "accuracy", "f1"} <= set(result.metrics)
    assert yaml.safe_load((result.run_dir / "config.yaml").read_text())["model"]["width"] == 64

    predictor = deepkit.load(result.run_dir)
    assert isinstance(predictor, Predictor) and predictor.class_names == [str(i) for i in range(10)]
    d = load_digits()
    images = (d.images[:200] / 16.0).astype(np.float32)[:, None]
    labels = predictor.predict(images)
    assert labels.shape == (200,) and labels.dtype.kind == "i" and set(labels.tolist()) <= set(range(10))
    assert (labels == d.target[:200]).mean() > 0.7
    assert predictor.predict(images[0]).shape == (1,)  # one sample without a batch dimension
    proba = predictor.predict_proba(torch.from_numpy(images[:5]))
    np.testing.assert_allclose(proba.sum(1), 1, atol=1e-5)
    assert (proba.argmax(1) == labels[:5]).all()
    assert deepkit.evaluate(result.run_dir)["accuracy"] == pytest.approx(result.metrics["accuracy"], abs=1e-6)


def test_default_run_directories_do_not_collide(in_tmp):
    args = ("digits_mlp", "trainer.epochs=1", "trainer.progress=none", "model.width=16")
    first = deepkit.train(*args)
    second = deepkit.train(*args)
    assert first.run_dir == Path("runs/digits_mlp") and second.run_dir == Path("runs/digits_mlp-2")
    assert (in_tmp / "runs" / "digits_mlp" / "run.json").is_file()
    assert (in_tmp / "runs" / "digits_mlp-2" / "checkpoints" / "best" / "model.safetensors").is_file()


def test_overwrite_replaces_a_run(tmp_path):
    out = tmp_path / "run"
    args = ("digits_mlp", "trainer.epochs=1", "trainer.progress=none", "model.width=16")
    deepkit.train(*args, out=out)
    (out / "stale.txt").write_text("from the old run")
    with pytest.raises(deepkit.DeepkitError, match="already exists"):
        deepkit.train(*args, out=out)
    deepkit.train(*args, "model.width=8", out=out, overwrite=True)
    assert not (out / "stale.txt").exists()
    assert yaml.safe_load((out / "config.yaml").read_text())["model"]["width"] == 8


def test_python_api_with_array_data(tmp_path, blobs):
    from deepkit.data import from_arrays

    x, y = blobs(n_per_class=30)
    result = deepkit.train(
        {
            "model": {"name": "mlp", "width": 16},
            "trainer": {"epochs": 10, "progress": "none", "optimizer": {"lr": 0.01}},
        },
        data=from_arrays(x, y),
        out=tmp_path / "arrays",
    )
    assert result.metrics["accuracy"] >= 0.8
    assert deepkit.load(result.run_dir).predict(x[:7]).shape == (7,)


def test_version_recipe_printing_flags_and_debug_in_every_verbs_help(run_cli):
    from deepkit.cli import app
    from deepkit.version import __version__

    assert run_cli("--version").stdout.strip() == f"deepkit {__version__}"
    proc = run_cli("recipes", "digits_cnn")
    assert proc.returncode == 0 and proc.stdout.startswith("description: CNN") and "name: simple_cnn" in proc.stdout
    proc = run_cli("recipes", "digits_cn")
    assert proc.returncode == 2 and "did you mean 'digits_cnn'" in proc.stderr
    verbs = [info.name or info.callback.__name__ for info in app.registered_commands if not info.hidden]
    assert {"train", "eval", "predict", "generate", "translate", "forecast", "sample", "encode"} <= set(verbs)
    for verb in verbs:
        text = run_cli(verb, "--help").stdout
        assert "--debug" in text, verb  # every verb says how to get a traceback
        assert "<bool>" not in text, verb  # boolean options are flags: --json, not --json <bool>
    generate_help = run_cli("generate", "--help").stdout
    assert "[default: (a newline)]" in " ".join(generate_help.split())


def test_start_up_imports_only_what_each_command_uses(digits_run, make_cli_env):
    """``import deepkit`` and ``deepkit --help`` load no torch; predicting loads no torchmetrics and no matplotlib
    (their times are measured by benchmarks/startup.py)."""
    out, _ = digits_run
    image = sorted((out / "samples").glob("*.png"))[0]
    probes = {
        "import deepkit": ("import deepkit", {"torch", "torchmetrics", "matplotlib"}),
        "deepkit --help": ("import deepkit.cli", {"torch", "torchmetrics", "matplotlib"}),
        "predict": (
            f"import deepkit; deepkit.load({str(out)!r}).predict({str(image)!r})",
            {"torchmetrics", "matplotlib"},
        ),
    }
    for name, (code, absent) in probes.items():
        probe = f"{code}\nimport sys\nprint(sorted(m for m in {sorted(absent)!r} if m in sys.modules))"
        proc = subprocess.run([sys.executable, "-c", probe], env=make_cli_env(), capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "[]", f"{name} imports {proc.stdout.strip()}"


def test_piped_output_says_what_the_run_is_doing(run_cli, tmp_path):
    proc = run_cli("train", "digits_mlp", "trainer.epochs=2", "--out", tmp_path / "run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()

    def first(prefix: str) -> int:
        return next(i for i, line in enumerate(lines) if line.startswith(prefix))

    assert first("loading data: digits") < first("data: 1,294 train, 144 val, 359 test") < first("epoch 1")
    assert first("epoch 2") < first("evaluating the best checkpoint (epoch") < first("writing the report")
    assert "on the test split (359 samples)" in lines[first("evaluating")]
    quiet = run_cli("train", "digits_mlp", "trainer.epochs=1", "trainer.progress=none", "--out", tmp_path / "q")
    assert not any(line.startswith(("loading data", "evaluating")) for line in quiet.stdout.splitlines())

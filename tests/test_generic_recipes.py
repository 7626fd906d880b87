"""The generic recipes for one's own data (csv_regression, image_folder_cnn, text_classification, text_lm): listed
by ``deepkit recipes``, a one-line error without data.path, and each trains end-to-end on a tiny generated dataset,
keeping its own name and description in the run's config.yaml."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

import deepkit

GENERIC = ("csv_regression", "image_folder_cnn", "text_classification", "text_lm")


def test_listed_with_a_description_that_asks_for_data_path(deepkit_cli):
    code, out, err = deepkit_cli("recipes")
    assert code == 0, err
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    for name in (*GENERIC, "csv_classification"):
        assert name in lines and "needs data.path" in lines[name], out


@pytest.mark.parametrize(
    "name,fragment",
    [
        ("csv_regression", "data.path is not set"),
        ("image_folder_cnn", "data.path is not set"),
        ("text_classification", "needs data.path"),
        ("text_lm", "needs data.path"),
    ],
)
def test_without_data_path_a_one_line_error(run_cli, tmp_path, name, fragment):
    proc = run_cli("train", name, "--out", tmp_path / "run")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], proc.stderr
    assert not (tmp_path / "run").exists()


def config_of(run) -> dict:
    return yaml.safe_load((run / "config.yaml").read_text())


def test_csv_regression_with_a_categorical_column(tmp_path, run_cli):
    rng = np.random.default_rng(0)
    offset = {"north": 10.0, "south": -10.0, "east": 0.0}
    lines = ["size,region,rooms,price"]
    for i in range(200):
        region = list(offset)[i % 3]
        size, rooms = rng.uniform(20, 120), rng.integers(1, 6)
        price = 2 * size + 5 * rooms + offset[region] + rng.normal()
        lines.append(f"{size:.1f},{region},{'' if i % 20 == 5 else rooms},{price:.2f}")
    table = tmp_path / "houses.csv"
    table.write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    proc = run_cli("train", "csv_regression", f"data.path={table}", "trainer.progress=none", "--out", out)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((out / "results.json").read_text())["metrics"]
    assert metrics["r2"] > 0.9, metrics
    assert config_of(out)["name"] == "csv_regression"
    proc = run_cli("predict", out, out / "samples" / "test_rows.csv", "--json")
    assert proc.returncode == 0, proc.stderr
    assert all(0 < r["value"] < 400 for r in json.loads(proc.stdout.strip().splitlines()[-1]))


def test_image_folder_cnn(tmp_path):
    from tests.data.test_image_folders import digit_folder

    folder = digit_folder(tmp_path / "imgs", per_class=12, rgb=())
    result = deepkit.train(
        "image_folder_cnn",
        f"data.path={folder}",
        "model.channels=[8,16,16]",
        "model.hidden=32",
        "trainer.epochs=2",
        "trainer.progress=none",
        out=tmp_path / "run",
    )
    config = config_of(tmp_path / "run")
    assert config["name"] == "image_folder_cnn" and "digits" not in config["description"]
    assert config["data"]["image_size"] == [64, 64] and deepkit.load(tmp_path / "run").class_names == [
        f"digit_{c}" for c in range(4)
    ]
    assert "accuracy" in result.metrics


def test_text_classification(tmp_path):
    rng = np.random.default_rng(0)
    good, bad, filler = ["great", "lovely", "superb"], ["awful", "boring", "dull"], ["the", "film", "was", "plot"]
    rows = ["text\tlabel"]
    for i in range(120):
        words = list(rng.choice(filler, 4)) + [str(rng.choice(good if i % 2 else bad))]
        rows.append(" ".join(rng.permutation(words)) + "\t" + ("pos" if i % 2 else "neg"))
    table = tmp_path / "reviews.tsv"
    table.write_text("\n".join(rows) + "\n")
    result = deepkit.train(
        "text_classification",
        f"data.path={table}",
        "model.embed_dim=16",
        "model.hidden_size=16",
        "trainer.epochs=15",
        "trainer.optimizer.lr=0.01",
        "trainer.early_stopping=null",
        "trainer.progress=none",
        out=tmp_path / "run",
    )
    assert result.metrics["accuracy"] >= 0.8, result.metrics
    assert config_of(tmp_path / "run")["name"] == "text_classification"
    assert deepkit.load(tmp_path / "run").predict(["the film was great"]) is not None


def test_text_lm(tmp_path):
    text = tmp_path / "book.txt"
    text.write_text("the cat sat on the mat. " * 300)
    result = deepkit.train(
        "text_lm",
        f"data.path={text}",
        "model.embed_dim=16",
        "model.hidden_size=32",
        "model.num_layers=1",
        "data.text.block_size=32",
        "trainer.epochs=4",
        "trainer.optimizer.lr=0.01",
        "trainer.progress=none",
        out=tmp_path / "run",
    )
    assert result.metrics["loss"] < np.log(11) - 0.5, result.metrics  # 11 characters: well below guessing
    assert config_of(tmp_path / "run")["name"] == "text_lm"
    out = deepkit.load(tmp_path / "run").generate("the cat", max_new_tokens=10, seed=0)
    assert out.startswith("the cat")

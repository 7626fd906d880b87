"""Bringing one's own CSV through the CLI and the Python API (issue 13, part 3): a table with a categorical column
and empty cells trains, predicts its own samples and new rows (gaps, unseen categories), evaluates on another file;
a 3-row table fails early naming the training split; a float target classified warns and writes no giant
confusion matrix. Uses only the public interface (the unit tests of the encoding: tests/data/test_tables.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import deepkit


# --- through training, prediction and evaluation ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def colour_run(colour_table, tmp_path_factory):
    root = tmp_path_factory.mktemp("owncsv")
    path = colour_table(root / "colours.csv")
    result = deepkit.train(
        "csv_classification",
        f"data.path={path}",
        "trainer.epochs=40",
        "trainer.optimizer.lr=0.01",
        "trainer.progress=none",
        "trainer.early_stopping=null",
        out=root / "run",
    )
    return root, result


def test_categorical_csv_trains_and_predicts_its_own_samples(colour_run, run_cli):
    root, result = colour_run
    run = root / "run"
    assert result.metrics["accuracy"] >= 0.85, result.metrics  # xor with the colour: impossible without it
    log = (run / "log.txt").read_text()
    assert "column 'colour' is categorical" in log and "filled" in log
    samples = (run / "samples" / "test_rows.csv").read_text().splitlines()
    assert samples[0] == "a,colour,b" and any(",red," in s or ",blue," in s or ",green," in s for s in samples[1:])
    proc = run_cli("predict", run, run / "samples" / "test_rows.csv", "--json")
    assert proc.returncode == 0, proc.stderr
    records = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(records) == 8 and {r["class"] for r in records} <= {"yes", "no"}


def test_predict_rows_with_gaps_and_unseen_categories(colour_run, run_cli, tmp_path):
    root, _ = colour_run
    rows = tmp_path / "new.csv"
    rows.write_text("b,colour,a\n0.1,red,1.5\n0.2,,-1\n0.3,purple,2\n")  # other column order, a gap, an unseen one
    proc = run_cli("predict", root / "run", rows, "--json")
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout.strip().splitlines()[-1])) == 3
    warnings_ = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings_) == 1 and "'purple'" in warnings_[0] and "all zeros" in warnings_[0]
    p = deepkit.load(root / "run")
    table = np.array([["1.5", "red", "0.1"], [None, "blue", 0.2]], dtype=object)
    assert p.predict(table).shape == (2,)
    assert p.predict_proba([[1.5, "red", 0.1]]).shape == (1, 2)


def test_eval_on_another_csv_uses_the_saved_encoding(colour_table, colour_run, run_cli, tmp_path):
    root, result = colour_run
    other = colour_table(tmp_path / "other.csv", n=90, seed=3)
    proc = run_cli("eval", root / "run", "--data", f"path={other}", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["accuracy"] >= 0.8


# --- small and odd tables ------------------------------------------------------------------------------------------
def test_three_row_csv_fails_early_naming_the_training_split(write_table, tmp_path, run_cli):
    path = write_table(tmp_path / "tiny.csv", ["a", "b", "y"], [[1, 2, 0], [3, 4, 1], [5, 6, 0]])
    proc = run_cli("train", "csv_classification", f"data.path={path}", "--out", tmp_path / "run")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "the training split has 1 row" in lines[0], proc.stderr
    assert "data.test_split" in lines[0] and "nan" not in lines[0]
    assert not (tmp_path / "run").exists()
    ok = run_cli(
        "train",
        "csv_classification",
        f"data.path={path}",
        "data.test_split=0",
        "data.val_split=0",
        "trainer.epochs=2",
        "--out",
        tmp_path / "run2",
    )
    assert ok.returncode == 0, ok.stderr


def test_float_target_classified_warns_and_caps_the_confusion_plot(write_table, tmp_path, run_cli):
    rng = np.random.default_rng(0)
    rows = [[f"{a:.3f}", f"{3 * a + rng.normal() * 0.1:.2f}"] for a in rng.normal(size=300)]
    path = write_table(tmp_path / "f.csv", ["a", "y"], rows)
    proc = run_cli("train", "csv_classification", f"data.path={path}", "trainer.epochs=1", "--out", tmp_path / "run")
    assert proc.returncode == 0, proc.stderr
    assert "use task.name=regression" in proc.stderr
    run = tmp_path / "run"
    assert not (run / "plots" / "confusion_matrix.png").exists()
    k = len(json.loads((run / "confusion_matrix.json").read_text())["classes"])
    assert k > 100
    log = (run / "log.txt").read_text()
    assert "warning:" in log and "task.name=regression" in log and "confusion matrix: " in log


def test_confusion_matrix_plot_is_capped(tmp_path):
    from PIL import Image

    from deepkit.viz.plots import plot_confusion_matrix

    k = 90
    path = plot_confusion_matrix(np.eye(k, dtype=np.int64), [str(i) for i in range(k)], tmp_path / "cm.png")
    assert max(Image.open(path).size) <= 2000

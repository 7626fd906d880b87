"""Run directories written by the release before the family seam (commit a57365d, tests/fixtures/release_a57365d)
still load for eval, predict and resume: one per family that release had (tables/images, text, generative, series).

Their configs hold every family's sections (the union schema of that release); a stored config is read with the
sections of its own family only."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import deepkit

FIXTURES = Path(__file__).parent / "fixtures" / "release_a57365d"


@pytest.fixture
def old(tmp_path, monkeypatch) -> Path:
    """A copy of the fixtures (resuming writes into a run), as the working directory: data paths are relative."""
    dst = tmp_path / "old"
    shutil.copytree(FIXTURES, dst)
    monkeypatch.chdir(dst)
    return dst


def results(run: Path) -> dict[str, float]:
    return json.loads((run / "results.json").read_text())["metrics"]


@pytest.mark.parametrize(
    "run,keys",
    [
        ("digits_mlp", ("loss", "accuracy", "f1")),
        ("char_lm", ("loss", "perplexity")),
        ("vae", ("loss", "recon", "kl")),
        ("forecast", ("loss", "rmse", "mae")),
    ],
)
def test_an_old_run_evaluates_to_the_figures_it_wrote(old, run, keys, deepkit_cli):
    code, out, err = deepkit_cli("eval", old / run, "--json")
    assert code == 0, err
    got, want = json.loads(out), results(old / run)
    for key in keys:
        assert got[key] == pytest.approx(want[key], rel=1e-4), key


def test_an_old_run_predicts_with_its_family_verbs(old, deepkit_cli):
    code, out, err = deepkit_cli("predict", old / "digits_mlp", *sorted((old / "digits_mlp" / "samples").glob("*.png")))
    assert code == 0, err
    labels = [line.split("label_")[1].split(".png")[0] for line in out.splitlines()]
    predicted = [line.split(": ")[1].split(" ")[0] for line in out.splitlines()]
    assert len(labels) == 8 and sum(a == b for a, b in zip(labels, predicted, strict=True)) >= 2

    code, out, err = deepkit_cli("generate", old / "char_lm", "--prompt", "the", "--max-new-tokens", 20, "--seed", 0)
    assert code == 0 and out.startswith("the") and len(out.strip()) > 3, err

    code, out, err = deepkit_cli("sample", old / "vae", "-n", 8, "--out", old / "s.png")
    assert code == 0 and (old / "s.png").is_file(), err

    values = np.loadtxt(old / "series.csv", delimiter=",", skiprows=1)[:, 1]
    code, out, err = deepkit_cli("forecast", old / "forecast", "--csv", old / "series.csv", "--steps", 3, "--json")
    assert code == 0, err
    pred = json.loads(out)
    assert len(pred) == 3 and all(abs(p - values.mean()) < 4 * values.std() for p in pred)
    predictor = deepkit.load(old / "forecast")
    np.testing.assert_allclose(predictor.forecast(values, 3), pred, rtol=1e-5)


@pytest.mark.parametrize("run,epochs", [("digits_mlp", 3), ("char_lm", 2), ("vae", 2), ("forecast", 4)])
def test_an_old_run_resumes(old, run, epochs, deepkit_cli):
    before = len((old / run / "metrics.csv").read_text().splitlines())
    code, _, err = deepkit_cli("train", "--resume", old / run, f"trainer.epochs={epochs}")
    assert code == 0, err
    status = json.loads((old / run / "run.json").read_text())
    assert status["status"] == "finished" and "resumed" in status
    assert len((old / run / "metrics.csv").read_text().splitlines()) == before + 1  # one more epoch, appended

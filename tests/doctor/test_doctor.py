"""`deepkit doctor` and `deepkit lr-find` on real runs: a few planted faults from benchmarks/doctor.py (short
digits runs; the full suite is the benchmark), healthy, failed (NaN), interrupted and still-running runs."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import pytest

import deepkit
from deepkit.doctor import diagnose
from deepkit.rundir import RunLock, read_status
from deepkit.train import Callback, TrainingDiverged

REPO = Path(__file__).resolve().parents[2]
QUICK = ["trainer.progress=none", "trainer.threads=1", "model.width=64"]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("doctor_bench", REPO / "benchmarks" / "doctor.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def train(out: Path, *overrides: str, **kw) -> Path:
    with contextlib.suppress(TrainingDiverged):  # a failed run is diagnosed too
        deepkit.train("digits_mlp", *QUICK, *overrides, out=out, **kw)
    return out


def kinds(d) -> list[tuple[str, str]]:
    return [(f.kind, f.severity) for f in d.findings]


@pytest.fixture(scope="module")
def healthy(tmp_path_factory) -> Path:
    return train(tmp_path_factory.mktemp("doc") / "healthy", "trainer.epochs=6")


def test_a_healthy_run_is_healthy(healthy):
    d = diagnose(healthy)
    assert d.healthy and d.state == "finished", kinds(d)
    assert all(f.severity == "info" for f in d.findings) and not d.notes


@pytest.mark.parametrize(
    "fault, overrides, plant, first",
    [
        ("lr_high", ["trainer.epochs=4", "trainer.optimizer.lr=0.5"], None, ("lr_too_high", "error")),
        ("lr_low", ["trainer.epochs=4", "trainer.optimizer.lr=1e-6"], None, ("lr_too_low", "error")),
        ("dead_relu", ["trainer.epochs=3"], "dead", ("dead_relus", "error")),
        (
            "sigmoid",
            ["trainer.epochs=4", "model.act=sigmoid", "model.depth=8", "model.dropout=0"],
            None,
            ("vanishing_gradients", "error"),
        ),
        ("leak", ["trainer.epochs=3"], "leak", ("leakage", "error")),
        ("unnormalized", ["trainer.epochs=3"], "scale", ("unnormalized_inputs", "error")),
    ],
)
def test_a_planted_fault_is_the_first_finding(fault, overrides, plant, first, bench, tmp_path):
    data, callbacks = None, ()
    if plant == "dead":
        callbacks = [bench.KillReLUs()]
    elif plant == "leak":
        data = bench.copy_test_into_train(bench.bundle("digits", normalize="feature", batch_size=32), 0.3, 0)
    elif plant == "scale":
        data = bench.scale_inputs(bench.bundle("digits", normalize="none", batch_size=32), 255.0)
    d = diagnose(train(tmp_path / fault, *overrides, data=data, callbacks=callbacks))
    assert kinds(d)[0] == first, kinds(d)
    assert d.findings[0].plot and (tmp_path / fault / "doctor" / d.findings[0].plot).is_file()


def test_the_cli_writes_the_report_and_findings(run_cli, tmp_path):
    run = train(tmp_path / "hot", "trainer.epochs=3", "trainer.optimizer.lr=0.5")
    before = tree_hashes(run)
    proc = run_cli("doctor", run, "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["healthy"] is False and out["findings"][0]["kind"] == "lr_too_high"
    assert "deepkit lr-find" in out["findings"][0]["change"] and out["findings"][0]["evidence"]["initial_loss"] > 0
    saved = json.loads((run / "doctor" / "findings.json").read_text())
    assert saved["findings"] == out["findings"]
    html = (run / "doctor" / "report.html").read_text()
    for f in out["findings"]:
        assert f"<img src='{f['plot']}'" in html and (run / "doctor" / f["plot"]).stat().st_size > 5000
    assert tree_hashes(run) == before, "the doctor changed the run directory outside doctor/"
    text = run_cli("doctor", run)
    assert (
        text.returncode == 0
        and "1. [error] learning rate too high" in text.stdout
        and "change: trainer.optimizer.lr=0.05" in text.stdout
    )


def tree_hashes(run: Path) -> dict[str, str]:
    return {
        str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in run.rglob("*")
        if p.is_file() and "doctor" not in p.relative_to(run).parts
    }


def test_a_failed_nan_run(tmp_path):
    run = train(tmp_path / "nan", "trainer.epochs=2", "trainer.optimizer.name=sgd", "trainer.optimizer.lr=1e4")
    assert read_status(run)["status"] == "failed"
    d = diagnose(run)
    assert d.state.startswith("failed: ") and kinds(d)[0] == ("lr_too_high", "error")
    assert d.findings[0].evidence["nonfinite_at_step"] is not None


class StopAt(Callback):
    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, trainer):
        if trainer.state.step == self.step:
            raise KeyboardInterrupt("stop")


def test_an_interrupted_run_and_one_still_training(tmp_path, healthy):
    run = tmp_path / "stopped"
    with pytest.raises(KeyboardInterrupt):
        deepkit.train("digits_mlp", *QUICK, "trainer.epochs=3", out=run, callbacks=[StopAt(50)])
    d = diagnose(run)
    assert read_status(run)["status"] == "interrupted" and d.state == "interrupted after step 50", d.state
    with RunLock(healthy):  # a writer holds the run: the doctor reads it anyway and says so
        d = diagnose(healthy, out=tmp_path / "report")
    assert d.state.startswith("still training") and (tmp_path / "report" / "report.html").is_file()


def test_a_run_without_records_is_read_from_its_metrics(tmp_path):
    run = train(tmp_path / "plain", "trainer.epochs=2", "trainer.record.enabled=false")
    d = diagnose(run)
    assert d.notes and "no recordings" in d.notes[0] and d.healthy


def test_lr_find_suggests_a_learning_rate_and_writes_no_run_directory(run_cli, tmp_path):
    proc = run_cli("lr-find", "digits_mlp", "model.width=64", "--steps", "60", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert 1e-4 <= out["suggestion"] <= 0.1 and out["valley"]["from_lr"] < out["suggestion"] <= out["valley"]["to_lr"]
    assert out["steps"] <= 60 and len(out["losses"]) == out["steps"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lr-find-digits_mlp.png"]


def test_an_unnormalized_plant_that_changes_nothing_stops_the_benchmark(bench):
    """Round 2's dev2/digits-mlp/unnormalized planted nothing (the digits loader already scales to [0, 1]): the
    benchmark's check stops such a case; the corrected plant (the raw 0-16 counts) and a x255 one pass."""
    as_loaded = bench.bundle("digits", normalize="none", batch_size=32)
    with pytest.raises(bench.PlantError, match="near unit scale"):
        bench.check_unnormalized_plant("digits", *bench.bundle_input_stats(as_loaded), "train")
    for factor in (16.0, 255.0):
        planted = bench.scale_inputs(bench.bundle("digits", normalize="none", batch_size=32), factor)
        bench.check_unnormalized_plant("digits", *bench.bundle_input_stats(planted), "train")
    with pytest.raises(bench.PlantError):  # the recorded inputs of a standardized run
        bench.check_unnormalized_plant("digits", [0.01, -0.02], [1.0, 0.98], "record/inputs.json")


def test_the_held_out_sets_meet_the_issues_shape(bench):
    """Each held-out round (dev2, dev3, eval) has >= 30 scored planted runs of >= 10 kinds, >= 10 healthy runs and
    one unscored 5% label-noise run; case names are unique and carry their set's prefix."""
    cases = bench.cases()
    assert len({c.name for c in cases}) == len(cases)
    for split in ("dev2", "dev3", "eval"):
        mine = [c for c in cases if c.split == split]
        planted = [c for c in mine if c.fault and c.scored]
        assert all(c.name.startswith(f"{split}/") for c in mine), split
        assert len(planted) >= 30 and len({c.fault for c in planted}) >= 10, split
        assert sum(1 for c in mine if c.fault is None) >= 10, split
        assert [c.name for c in mine if not c.scored] == [f"{split}/mnist-mlp/label_noise_5pct"], split

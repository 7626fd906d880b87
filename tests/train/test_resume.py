"""Exact resume: a run killed mid-epoch (a real SIGKILL) and resumed ends bit-identical to an uninterrupted run."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import deepkit
from conftest import read_loop
from deepkit import Trainer, create_model
from deepkit.data import from_arrays
from deepkit.tasks import ClassificationTask
from deepkit.train import Callback, ModelCheckpoint

# digits_mlp made slow enough (wide, small batches) that a mid-epoch kill is easy to place; 4 epochs of ~81 batches
TRAIN_ARGS = [
    "train",
    "digits_mlp",
    "trainer.epochs=4",
    "model.width=512",
    "data.batch_size=16",
    "trainer.checkpoint_every=5",
    "trainer.progress=plain",
]


TIMING = ("samples_per_s", "time", "peak_rss_mb")


def metrics_rows(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def killed_and_reference(tmp_path_factory, make_cli_env, kill_mid_epoch):
    """Run A is SIGKILLed mid-epoch (after >= 1 full epoch); run B is the same command left to finish."""
    root = tmp_path_factory.mktemp("resume")
    a, b = root / "A", root / "B"
    env = make_cli_env()
    seen, returncode = kill_mid_epoch(TRAIN_ARGS, a, root / "a.log", max_batch=50)  # mid-epoch, before its end
    if seen is None:
        pytest.fail(
            f"never saw a mid-epoch checkpoint before the run ended (rc={returncode}):\n"
            + (root / "a.log").read_text()[-2000:]
        )
    ref = subprocess.run(
        [sys.executable, "-m", "deepkit", *TRAIN_ARGS, "--out", str(b)],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ref.returncode == 0, ref.stderr
    return {"a": a, "b": b, "returncode": returncode, "seen": seen}


def test_sigkill_leaves_a_running_resumable_run(killed_and_reference):
    a = killed_and_reference["a"]
    assert killed_and_reference["returncode"] == -signal.SIGKILL
    assert json.loads((a / "run.json").read_text())["status"] == "running"
    assert not (a / "results.json").exists()
    loop = read_loop(a / "checkpoints" / "last")
    assert loop is not None and loop["epoch"] >= 1 and loop["batch"] > 0, f"kill did not land mid-epoch: {loop}"
    assert loop["step"] >= killed_and_reference["seen"]["step"]


def test_resume_after_sigkill_is_bit_identical(killed_and_reference, run_cli_process):
    a, b = killed_and_reference["a"], killed_and_reference["b"]
    proc = run_cli_process("train", "--resume", a, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((a / "run.json").read_text())["status"] == "finished"
    for ckpt in ("last", "best"):
        wa = load_file(str(a / "checkpoints" / ckpt / "model.safetensors"))
        wb = load_file(str(b / "checkpoints" / ckpt / "model.safetensors"))
        assert set(wa) == set(wb)
        for k in wb:
            assert torch.equal(wa[k], wb[k]), f"{ckpt}: {k} differs after resume"
    ra, rb = metrics_rows(a), metrics_rows(b)
    assert len(ra) == len(rb) == 4
    for col in ("epoch", "step", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr"):
        assert [r[col] for r in ra] == [r[col] for r in rb], col
    assert json.loads((a / "results.json").read_text()) == json.loads((b / "results.json").read_text())


# --- in-process versions (fast) --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(160, 6)).astype(np.float32)
    y = (x[:, :3].sum(1) > 0).astype(np.int64) + (x[:, 3] > 1).astype(np.int64)
    return from_arrays(x, y, batch_size=16)  # 115 train samples -> 8 batches per epoch


def make_task(seed: int = 0) -> ClassificationTask:
    torch.manual_seed(seed)
    model = create_model("mlp", in_features=6, num_classes=3, width=32, dropout=0.3)
    return ClassificationTask(model, 3)


CONFIG = {
    "epochs": 3,
    "seed": 5,
    "optimizer": {"name": "adamw", "lr": 0.01, "weight_decay": 0.01},
    "schedule": {"name": "cosine", "warmup_steps": 3},
    "progress": "none",
}


class Crash(Callback):
    """Raise after the optimizer step ``at`` (after the built-in callbacks saved their checkpoint)."""

    def __init__(self, at: int):
        self.at = at

    def on_step_end(self, trainer):
        if trainer.state.step == self.at:
            raise KeyboardInterrupt("simulated crash")


def test_in_process_mid_epoch_resume_is_exact(data, tmp_path):
    ref_task = make_task()
    ref = Trainer(CONFIG, run_dir=tmp_path / "ref")
    ref_history = ref.fit(ref_task, data)

    crashed = Trainer({**CONFIG, "checkpoint_every": 1}, run_dir=tmp_path / "run", callbacks=[Crash(at=11)])
    with pytest.raises(KeyboardInterrupt):
        crashed.fit(make_task(), data)
    last = tmp_path / "run" / "checkpoints" / "last"
    assert read_loop(last)["step"] == 11 and read_loop(last)["batch"] == 3  # epoch 2, batch 3 of 8

    resumed_task = make_task(seed=99)  # different init: everything must come from the checkpoint
    resumed = Trainer({**CONFIG, "checkpoint_every": 1}, run_dir=tmp_path / "run")
    history = resumed.fit(resumed_task, data, resume=last)
    for k, v in ref_task.model.state_dict().items():
        assert torch.equal(v, resumed_task.model.state_dict()[k]), k
    keys = ("epoch", "step", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr")
    assert [[h[k] for k in keys] for h in history] == [[h[k] for k in keys] for h in ref_history]
    assert resumed.state.step == ref.state.step == 24


def test_in_process_resume_on_the_cpu_fast_path_is_exact(tmp_path):
    """A conv net on the CPU defaults (channels_last kernels + fused AdamW): the restored optimizer state must take
    its parameters' layout, or the fused step pairs the moments with the wrong weights (issue 13)."""
    rng = np.random.default_rng(0)
    images = from_arrays(rng.random((120, 1, 8, 8), dtype=np.float32), np.arange(120) % 3, batch_size=16)

    def conv_task(seed: int = 0) -> ClassificationTask:
        torch.manual_seed(seed)
        model = create_model("simple_cnn", in_channels=1, num_classes=3, channels=[4, 8], input_size=[8, 8], hidden=8)
        return ClassificationTask(model, 3)

    cfg = {**CONFIG, "checkpoint_every": 1}
    ref_task = conv_task()
    ref = Trainer(cfg, run_dir=tmp_path / "ref")
    ref.fit(ref_task, images)
    assert ref.speed.on("channels_last") and ref.speed.on("fused_optimizer"), ref.speed.table()

    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, run_dir=tmp_path / "run", callbacks=[Crash(at=8)]).fit(conv_task(), images)
    resumed_task = conv_task(seed=99)
    Trainer(cfg, run_dir=tmp_path / "run").fit(resumed_task, images, resume=tmp_path / "run" / "checkpoints" / "last")
    for k, v in ref_task.model.state_dict().items():
        assert torch.equal(v, resumed_task.model.state_dict()[k]), k


def test_resume_with_other_progress_keeps_callback_state(data, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    first = Trainer({**CONFIG, "progress": "plain"}, run_dir=run)
    first.fit(make_task(), data)
    best = next(cb for cb in first.callbacks if isinstance(cb, ModelCheckpoint))
    assert best.best is not None

    again = Trainer({**CONFIG, "progress": "none"}, run_dir=run)  # a different callback list
    again.fit(make_task(), data, resume=run / "checkpoints" / "last")
    restored = next(cb for cb in again.callbacks if isinstance(cb, ModelCheckpoint))
    assert (restored.best, restored.best_epoch) == (best.best, best.best_epoch)


def test_resume_finished_run_with_more_epochs(tmp_path):
    out = tmp_path / "run"
    first = deepkit.train("digits_mlp", "trainer.epochs=1", "trainer.progress=none", "model.width=32", out=out)
    assert len(first.history) == 1
    more = deepkit.train(resume=out, **{"trainer.epochs": 2})
    assert more.run_dir == out
    assert [h["epoch"] for h in more.history] == [1, 2]
    assert more.history[0] == first.history[0], "the stored epoch must be kept, not retrained"
    steps = first.history[0]["step"]
    assert more.history[1]["step"] == 2 * steps
    assert [r["epoch"] for r in metrics_rows(out)] == ["1", "2"]
    assert read_loop(out / "checkpoints" / "last")["epoch"] == 2
    assert json.loads((out / "run.json").read_text())["status"] == "finished"


# --- Ctrl-C: the step in progress ends, checkpoints/last is written there, one line says where ------------------------


class CtrlC(Callback):
    """Send this process SIGINT ``times`` times at the end of optimizer step ``at``, as Ctrl-C would."""

    def __init__(self, at: int, times: int = 1):
        self.at, self.times = at, times

    def on_step_end(self, trainer):
        if trainer.state.step == self.at:
            for _ in range(self.times):
                os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_saves_where_it_stops_and_says_how_to_continue(tmp_path, capsys):
    args = ["digits_mlp", "trainer.epochs=2", "model.width=32", "trainer.progress=none"]
    ref = deepkit.train(*args, out=tmp_path / "ref")
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt) as stopped:
        deepkit.train(*args, out=run, callbacks=[CtrlC(at=50)])  # epoch 2 (41 batches an epoch), no periodic saves
    last = run / "checkpoints" / "last"
    assert read_loop(last) | {"history": None} == read_loop(last) | {
        "epoch": 1, "batch": 9, "step": 50, "history": None
    }  # fmt: skip
    line = str(stopped.value)
    assert line == (
        f"interrupted at epoch 2, batch 9/41 (step 50); last checkpoint: {last}, at epoch 2, batch 9/41 (step 50); "
        f"continue with: deepkit train --resume {run}"
    )
    assert (run / "log.txt").read_text().rstrip().endswith(line)
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored after the loop

    capsys.readouterr()
    more = deepkit.train(resume=run, **{"trainer.progress": "plain"})
    said = f"resuming {run} from epoch 2, batch 9/41 (step 50) of 2 epochs"
    out = capsys.readouterr().out.splitlines()
    assert said in out and out.index(said) < next(i for i, line in enumerate(out) if line.startswith("epoch "))
    assert said in (run / "log.txt").read_text()
    for k, v in load_file(str(ref.run_dir / "checkpoints/last/model.safetensors")).items():
        assert torch.equal(v, load_file(str(last / "model.safetensors"))[k]), k
    assert more.history == [h | {k: more.history[i][k] for k in TIMING} for i, h in enumerate(ref.history)]


def test_second_ctrl_c_stops_at_once(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt) as stopped:
        deepkit.train(
            "digits_mlp", "trainer.epochs=1", "model.width=32", "trainer.progress=none", "trainer.checkpoint_every=4",
            out=run, callbacks=[CtrlC(at=10, times=2)],
        )  # fmt: skip
    assert read_loop(run / "checkpoints" / "last")["step"] == 8  # the last periodic checkpoint: step 10 was not saved
    assert re.fullmatch(
        r"interrupted at epoch 1, batch 10/41 \(step 10\); last checkpoint: .*, at epoch 1, batch 8/41 \(step 8\); "
        r"continue with: deepkit train --resume .*",
        str(stopped.value),
    )
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_in_an_accumulation_group_finishes_the_group(data, tmp_path):
    """SIGINT during the 2nd micro-batch of a group of 3: the group's optimizer step is taken and saved."""
    cfg = {**CONFIG, "accumulate": 3}
    ref_task = make_task()
    Trainer(cfg).fit(ref_task, data)

    task = make_task()
    calls = [0]
    step = task.training_step

    def training_step(batch):
        calls[0] += 1
        if calls[0] == 11:  # epoch 2 (8 batches: groups of 3, 3, 2), its 3rd batch: the 2nd of its 1st group
            os.kill(os.getpid(), signal.SIGINT)
        return step(batch)

    task.training_step = training_step
    with pytest.raises(KeyboardInterrupt, match=r"interrupted at epoch 2, batch 3/8 \(step 4\)"):
        Trainer(cfg, run_dir=tmp_path / "run").fit(task, data)
    last = tmp_path / "run" / "checkpoints" / "last"
    assert (read_loop(last)["batch"], read_loop(last)["step"]) == (3, 4)
    resumed = make_task(seed=99)
    Trainer(cfg, run_dir=tmp_path / "run").fit(resumed, data, resume=last)
    for k, v in ref_task.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k

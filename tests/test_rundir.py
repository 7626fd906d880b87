"""A run directory belongs to one process at a time (issue 12, point 10): a second writer is refused with a one-line
error naming the process that writes it; a lock left by a killed process (SIGKILL) does not block a resume; eval and
predict on a running run read its last complete checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import deepkit
from deepkit.rundir import RunLock, RunLocked, StillTraining, holder


def test_a_lock_is_exclusive_and_names_its_holder(tmp_path):
    with RunLock(tmp_path):
        assert holder(tmp_path)["pid"] == os.getpid()
        with pytest.raises(RunLocked, match=rf"{tmp_path} is in use: process {os.getpid()} is writing it since "):
            RunLock(tmp_path).acquire()
    assert holder(tmp_path) is None
    RunLock(tmp_path).acquire().release()  # free again


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"training stopped or stalled (return code {proc.poll()})")
        time.sleep(0.05)


def test_one_writer_readers_see_complete_checkpoints_and_a_killed_writer_does_not_block_resume(
    tmp_path, make_cli_env, deepkit_cli
):
    out = tmp_path / "run"
    args = ["train", "digits_mlp", "model.width=32", "trainer.epochs=500", "trainer.checkpoint_every=3"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "deepkit", *args, "trainer.progress=none", "--out", str(out)],
        env=make_cli_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(lambda: (out / "checkpoints" / "best" / "model.safetensors").is_file(), proc)
        assert holder(out)["pid"] == proc.pid

        # a second writer, of either kind, is refused in one line naming the first; it changes nothing
        code, _, err = deepkit_cli("train", "--resume", out)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert f"is in use: process {proc.pid} is writing it since" in err and "deepkit train digits_mlp" in err
        code, _, err = deepkit_cli("train", "digits_mlp", "--out", out, "--overwrite")
        assert code == 2 and f"cannot overwrite {out}: process {proc.pid} is writing it" in err, err
        assert json.loads((out / "run.json").read_text())["status"] == "running"

        # readers, while checkpoints are replaced every 3 steps
        images = np.random.default_rng(0).random((4, 1, 8, 8))
        for _ in range(10):
            with pytest.warns(StillTraining, match=rf"still training \(process {proc.pid}\); this used its best "):
                assert 0 <= deepkit.evaluate(out)["accuracy"] <= 1
            with pytest.warns(StillTraining, match=r"its last checkpoint \(epoch \d+, step \d+\)"):
                assert deepkit.load(out, checkpoint="last").predict(images).shape == (4,)
        code, _, err = deepkit_cli("eval", out)
        assert (
            code == 0
            and f"warning: {out} is still training (process {proc.pid}); this used its best checkpoint (epoch" in err
        )
        assert proc.poll() is None, "the run should still be training"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    assert holder(out) is None  # the kernel dropped the lock with the process
    epoch = json.loads((out / "checkpoints" / "last" / "state.json").read_text())["loop"]["epoch"]
    code, stdout, err = deepkit_cli("train", "--resume", out, f"trainer.epochs={epoch + 1}")
    assert code == 0, err
    assert json.loads((out / "run.json").read_text())["status"] == "finished"
    assert holder(out) is None


def test_resume_of_a_directory_that_is_no_run_takes_no_lock(tmp_path):
    with pytest.raises(deepkit.DeepkitError, match="no config.yaml"):
        deepkit.train(resume=tmp_path)
    assert not (tmp_path / ".lock").exists()
    assert not list(Path(tmp_path).iterdir())

"""Distributed training: N processes (gloo, CPU) reproduce one process with the same global batch.

Process groups are real: ``torch.multiprocessing`` spawns 2 ranks that join through MASTER_ADDR/PORT (what torchrun
sets), and the CLI tests go through ``deepkit train --nproc 2`` (torch's elastic launcher). Every comparison is of
final weights in the checkpoints rank 0 wrote (plain safetensors) and of the logged metrics.
"""

from __future__ import annotations

import csv
import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from deepkit import Trainer, create_model
from deepkit.data import from_arrays
from deepkit.tasks import ClassificationTask
from deepkit.train.distributed import ShardedLoader

N_TRAIN = 57  # 7 batches of 8 and one of 1: the short last batch leaves rank 1 with no sample (weight-0 stand-in)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _data():
    rng = np.random.default_rng(0)
    n = N_TRAIN + 21  # + 21 validation samples (val_split below; no test split)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] * x[:, 2] > 0).astype(np.int64) + (x[:, 3] > 1).astype(np.int64)
    return from_arrays(x, y, batch_size=8, eval_batch_size=5, val_split=21 / n, test_split=0.0, normalize="none")


def _fit(run_dir: Path, strategy: str, accumulate: int = 2) -> list[dict[str, float]]:
    """Train a small MLP (no dropout, no BatchNorm: the parts that are per-rank by design) for 2 epochs."""
    torch.manual_seed(0)
    data = _data()
    assert len(data.train[0]) == N_TRAIN
    task = ClassificationTask(create_model("mlp", in_features=6, num_classes=3, width=32, depth=2), 3)
    trainer = Trainer(
        run_dir=run_dir,
        epochs=2,
        optimizer={"name": "adamw", "lr": 0.01, "weight_decay": 0.01},
        schedule={"name": "cosine"},
        accumulate=accumulate,
        grad_clip=1.0,
        l2=1e-3,
        log_every=1,
        progress="plain",
        device="cpu",
        strategy=strategy,
    )
    return trainer.fit(task, data)


def _worker(rank: int, world: int, port: int, run_dir: str, strategy: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world)
    )
    torch.set_num_threads(1)
    from deepkit.train import distributed

    try:
        history = _fit(Path(run_dir), strategy)
        Path(run_dir, f"history-rank{rank}.json").write_text(json.dumps(history))
    finally:
        distributed.teardown()


def _spawn(run_dir: Path, strategy: str, world: int = 2) -> None:
    mp.start_processes(_worker, args=(world, free_port(), str(run_dir), strategy), nprocs=world, start_method="spawn")


def _weights(run: Path, which: str = "last") -> dict[str, torch.Tensor]:
    return load_file(run / "checkpoints" / which / "model.safetensors")


def _assert_same_weights(a: dict, b: dict, atol: float = 1e-5) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=atol, rtol=1e-4, msg=f"weight {k} differs")


def _rows(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def _assert_same_metrics(a: list[dict], b: list[dict], atol: float = 1e-5) -> None:
    assert len(a) == len(b)
    for ra, rb in zip(a, b, strict=True):
        for k in ("epoch", "step", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_f1", "lr"):
            assert float(ra[k]) == pytest.approx(float(rb[k]), abs=atol), k


# --- the sharding itself (no process group) ----------------------------------------------------------------------
def test_sharded_loader_splits_each_global_batch_like_tensor_split():
    x, y = torch.arange(17).float()[:, None], torch.arange(17)
    from deepkit.data.loader import TensorLoader

    shares = []
    for rank in range(3):
        loader = ShardedLoader(TensorLoader(x, y, batch_size=9), rank, 3, pad=True)
        got = [(b[1].tolist(), loader.local_n, loader.global_n, loader.weight) for b in loader]
        shares.append(got)
    # batch 1: 9 samples -> 3/3/3; batch 2: 8 samples -> 3/3/2 (torch.tensor_split's split)
    assert [s[0][0] for s in shares] == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert [s[1][0] for s in shares] == [[9, 10, 11], [12, 13, 14], [15, 16]]
    assert [s[1][3] for s in shares] == pytest.approx([9 / 8, 9 / 8, 6 / 8])  # local_n * world / global_n
    # the weighted per-rank means average (as DDP does) to the global mean
    means = [np.mean(s[1][0]) * s[1][3] for s in shares]
    assert np.mean(means) == pytest.approx(np.mean(range(9, 17)))


def test_sharded_loader_pads_an_empty_share_with_a_weight_zero_sample_and_skips_it_in_evaluation():
    from deepkit.data.loader import TensorLoader

    x, y = torch.arange(5).float()[:, None], torch.arange(5)
    train = ShardedLoader(TensorLoader(x, y, batch_size=4), 1, 2, pad=True)
    got = [(b[1].tolist(), train.local_n, train.weight) for b in train]
    assert got == [([2, 3], 2, 1.0), ([4], 0, 0.0)]  # batch 2 holds 1 sample: rank 1 runs a stand-in, weight 0
    val = ShardedLoader(TensorLoader(x, y, batch_size=4), 1, 2, pad=False)
    assert [b[1].tolist() for b in val] == [[2, 3]]
    assert len(train) == len(val) == 2  # the same number of steps on every rank


# --- real process groups -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("dist") / "one"
    _fit(run, "auto")
    return run


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path, one_process, strategy):
    run = tmp_path / strategy
    _spawn(run, strategy)
    _assert_same_weights(_weights(run), _weights(one_process))
    _assert_same_weights(_weights(run, "best"), _weights(one_process, "best"))
    _assert_same_metrics(_rows(run), _rows(one_process))
    # every rank saw the same (all-reduced) epoch logs, so early stopping / best-checkpoint decisions agree
    h0, h1 = (json.loads((run / f"history-rank{r}.json").read_text()) for r in (0, 1))
    assert [row["val_accuracy"] for row in h0] == [row["val_accuracy"] for row in h1]
    assert h0[-1]["step"] == 8  # 2 epochs x ceil(8 batches / accumulate 2)
    # only rank 0 wrote files: the same set as the one-process run, one log line per epoch
    files = sorted(p.relative_to(run).as_posix() for p in run.rglob("*") if "history-rank" not in p.name)
    # what the recorder documents as absent in a distributed run: validation predictions; FSDP: per-parameter records
    absent = {"record/val_predictions.npz"} | ({"record/layers.csv"} if strategy == "fsdp" else set())
    one = [p.relative_to(one_process).as_posix() for p in one_process.rglob("*")]
    assert files == sorted(f for f in one if f not in absent)
    lines = (run / "log.txt").read_text().splitlines()
    assert sum(line.startswith("speed plan") for line in lines) == 1  # written once, by rank 0
    assert sum(line.startswith("epoch ") for line in lines) == 2  # one line per epoch, not one per rank


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_checkpoint_of_two_processes_resumes_in_one_and_vice_versa(tmp_path, one_process, strategy):
    from deepkit.train import distributed

    # 2 processes, epoch 1 -> 1 process continues to epoch 2 (FSDP2: weights and AdamW state gathered from shards)
    first = tmp_path / "two-then-one"
    mp.start_processes(_epoch1_worker, args=(2, free_port(), str(first), strategy), nprocs=2, start_method="spawn")
    _resume(first)
    _assert_same_weights(_weights(first), _weights(one_process))
    _assert_same_metrics(_rows(first), _rows(one_process))
    assert distributed.env_world_size() == 1
    # 1 process, epoch 1 -> 2 processes continue to epoch 2 (FSDP2: each rank loads its shard of both)
    second = tmp_path / "one-then-two"
    _fit_epochs(second, 1)
    mp.start_processes(_resume_worker, args=(2, free_port(), str(second), strategy), nprocs=2, start_method="spawn")
    _assert_same_weights(_weights(second), _weights(one_process))
    _assert_same_metrics(_rows(second), _rows(one_process))


def _fit_epochs(run: Path, epochs: int, resume: Path | None = None, strategy: str = "auto") -> None:
    torch.manual_seed(0)
    data = _data()
    task = ClassificationTask(create_model("mlp", in_features=6, num_classes=3, width=32, depth=2), 3)
    # the schedule spans the 2-epoch run (its length is fixed by max_steps, so epoch 1 alone is the same run's start)
    trainer = Trainer(
        run_dir=run,
        epochs=epochs,
        max_steps=8,
        optimizer={"name": "adamw", "lr": 0.01, "weight_decay": 0.01},
        schedule={"name": "cosine"},
        accumulate=2,
        grad_clip=1.0,
        l2=1e-3,
        log_every=1,
        progress="none",
        device="cpu",
        strategy=strategy,
    )
    trainer.fit(task, data, resume=resume)


def _resume(run: Path, strategy: str = "auto") -> None:
    _fit_epochs(run, 2, resume=run / "checkpoints" / "last", strategy=strategy)


def _epoch1_worker(rank: int, world: int, port: int, run_dir: str, strategy: str) -> None:
    _in_group(rank, world, port, lambda: _fit_epochs(Path(run_dir), 1, strategy=strategy))


def _resume_worker(rank: int, world: int, port: int, run_dir: str, strategy: str) -> None:
    _in_group(rank, world, port, lambda: _resume(Path(run_dir), strategy))


def _in_group(rank: int, world: int, port: int, fn) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world)
    )
    torch.set_num_threads(1)
    from deepkit.train import distributed

    try:
        fn()
    finally:
        distributed.teardown()


# --- the CLI launcher --------------------------------------------------------------------------------------------
def test_cli_nproc_2_trains_and_matches_one_process(tmp_path, run_cli_process):
    args = ["train", "digits_mlp", "trainer.epochs=1", "model.dropout=0", "model.width=64", "data.batch_size=48"]
    two = run_cli_process(*args, "--nproc", "2", "--out", "two", "trainer.progress=plain", cwd=tmp_path)
    assert two.returncode == 0, two.stderr[-2000:]
    assert two.stdout.count("run directory:") == 1  # rank 0 speaks for all
    one = run_cli_process(*args, "--out", "one", "trainer.progress=plain", cwd=tmp_path)
    assert one.returncode == 0, one.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "two"]  # no stray run directory from rank 1
    _assert_same_weights(_weights(tmp_path / "two"), _weights(tmp_path / "one"))
    _assert_same_metrics(_rows(tmp_path / "two"), _rows(tmp_path / "one"))
    r1 = json.loads((tmp_path / "one" / "results.json").read_text())["metrics"]
    r2 = json.loads((tmp_path / "two" / "results.json").read_text())["metrics"]
    assert r2["accuracy"] == pytest.approx(r1["accuracy"], abs=1e-6)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--nproc", "0"], "--nproc must be >= 1, got 0"),
        (["--nproc", "2", "data.batch_size=31"], "data.batch_size=31 is the global batch and must divide evenly"),
        (["--nproc", "2", "trainer.strategy=none"], "needs trainer.strategy auto, ddp or fsdp (got none)"),
        (["trainer.strategy=zero"], "trainer.strategy"),
    ],
)
def test_bad_distributed_input_is_one_line(tmp_path, run_cli, args, message):
    proc = run_cli("train", "digits_mlp", *args, "--out", "r", cwd=tmp_path)  # refused before any process starts
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr
    assert not (tmp_path / "r").exists()


def test_an_error_in_the_launched_processes_is_one_line_from_rank_0(tmp_path, run_cli_process):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "config.yaml").write_text("name: x\n")
    proc = run_cli_process("train", "digits_mlp", "--nproc", "2", "--out", "taken", cwd=tmp_path)  # found by rank 0
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: run directory taken already exists"), proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_launcher_exit_code_is_rank_0s_even_when_another_rank_was_killed_by_a_signal():
    from types import SimpleNamespace

    from deepkit.train.distributed import _exit_code

    fail = lambda code: SimpleNamespace(exitcode=code)  # noqa: E731
    assert _exit_code({1: fail(-6), 0: fail(2)}) == 2
    assert _exit_code({1: fail(-6)}) == 1
    assert _exit_code({0: fail(-9), 1: fail(3)}) == 3

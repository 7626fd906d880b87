"""The resume matrix: each recipe family's default CPU configuration, killed mid-epoch by a real SIGKILL or SIGINT
(Ctrl-C) and continued with ``deepkit train --resume``, ends bit-identical to the same run left uninterrupted.

Configurations (tiny models on embedded or synthetic data, seconds each; ``trainer.threads=1``):

=========  ==========================================================================================================
conv       digits_cnn: channels_last weights + fused AdamW (the CPU fast path, asserted from the speed plan)
lstm       char_shakespeare (char LSTM language model) on a small text file: fused AdamW, gradient clipping
gpt        shakespeare_char_gpt (char GPT) on the same file: fused AdamW, warmup + cosine
gan        mnist_cdcgan on the embedded digits: two optimizers stepped by the task, generator EMA, channels_last
finetune   mnist_cnn fine-tuned from a tiny pretrained run: backbone frozen in epoch 1, killed after unfreezing
accum      digits_cnn with trainer.accumulate=3: 41 batches an epoch, 13 groups of 3 and a last one of 2
bf16       digits_cnn with trainer.precision=bf16 (CPU autocast)
detection  scenes_faster_rcnn (two-stage detector, list-of-images batches) on MNIST scenes of the synthetic MNIST
segment    scenes_unet (U-Net, image + mask batches, random crops and 90° turns per sample) on the same scenes
ranking    interactions_ranking (NeuMF, BCE) on a generated ratings table: negatives drawn afresh every epoch
nextitem   movielens_sasrec (SASRec, dropout) on the same table, leave-one-out: dropout's RNG, sequence windows
speech     fsdd_digits_cnn (waveform CNN) on a synthetic FSDD: per-clip gains and delays, SpecAugment's masks
=========  ==========================================================================================================

Each is killed by SIGKILL (nextitem's with -m slow), and the conv net and the GAN also by SIGINT (the others'
SIGINT variants: -m slow).
After SIGINT the run must exit 130 with checkpoints/last written at the step where it stopped and one line saying
so; the resume must say where it continues. Compared bit for bit with the uninterrupted run: the final weights
(checkpoints/last), the optimizer state and metrics.csv (but its timing columns).

The killed runs are processes of their own, sent real signals: children of a multiprocessing fork server that has
torch and deepkit imported (saving seconds of imports per run), and for conv/SIGINT a ``python -m deepkit``
process (the CLI's own exit on Ctrl-C). The reference and the resumed runs run in this process (``run_cli``), which
gives the same bits as a separate process (one torch thread in both); the reference trains while the killed
process runs.
"""

from __future__ import annotations

import csv
import json
import multiprocessing
import multiprocessing.forkserver
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import _rec_table, _run_main, _write_fsdd, _write_mnist, cli_env, read_loop

# columns of metrics.csv that measure time or memory, not the computation
TIMING = {"samples_per_s", "time", "peak_rss_mb", "peak_gpu_mb"}
COMMON = ["trainer.threads=1", "trainer.progress=plain"]
DIGITS_CNN = ["digits_cnn", "model.channels=[8,16]", "model.hidden=32", "trainer.epochs=2", "data.batch_size=32"]


@dataclass(frozen=True)
class Case:
    """One configuration: its ``deepkit train`` arguments (given the assets folder), the speed-plan switches it
    must run with, and where the kill lands: in epoch >= ``min_epoch`` (0-based), after a checkpoint at a batch in
    (0, ``max_batch``] of that epoch (wide windows: a loaded machine still catches one before the epoch ends)."""

    args: Callable[[Path], list[str]]
    fast_path: tuple[str, ...]
    max_batch: int
    min_epoch: int = 1


def text_args(recipe: str, *model: str) -> Callable[[Path], list[str]]:
    """A character-level language model on the small text file: 46 batches of 8 windows of 32 characters."""
    return lambda a: [
        recipe, "data.name=text_file", f"data.path={a / 'corpus.txt'}", *model, "data.text.block_size=32",
        "data.batch_size=8", "trainer.epochs=2", "trainer.checkpoint_every=4",
    ]  # fmt: skip


CASES = {
    # 41 batches an epoch, a checkpoint every 4 steps; killed in epoch 2
    "conv": Case(lambda a: [*DIGITS_CNN, "trainer.checkpoint_every=4"], ("channels_last", "fused_optimizer"), 32),
    "lstm": Case(
        text_args("char_shakespeare", "model.embed_dim=16", "model.hidden_size=32", "model.num_layers=1"),
        ("fused_optimizer",),
        36,
    ),
    "gpt": Case(
        text_args(
            "shakespeare_char_gpt",
            "model.n_layer=2",
            "model.n_head=2",
            "model.n_embd=32",
            "model.n_positions=32",
            "trainer.schedule.warmup_steps=10",
        ),
        ("fused_optimizer",),
        36,
    ),  # fmt: skip
    # two optimizers stepped by the task (not fused), generator EMA; 41 batches an epoch
    "gan": Case(
        lambda a: [
            "mnist_cdcgan",
            "data.name=digits",
            "data.batch_size=32",
            "data.val_split=0.1",
            "model.g_width=8",
            "model.d_width=8",
            "model.latent_dim=8",
            "trainer.epochs=2",
            "trainer.schedule.name=cosine",
            "trainer.checkpoint_every=4",
        ],
        ("channels_last",),
        32,
    ),  # fmt: skip
    # 23 batches an epoch; epoch 1 trains the head only, epochs 2-3 everything: killed after unfreezing, so the
    # checkpoint holds the backbone's (channels_last) optimizer state too
    "finetune": Case(
        lambda a: [
            "mnist_cnn",
            f"data.path={a / 'mnist'}",
            "model.channels=[4,8]",
            "model.hidden=16",
            "data.batch_size=8",
            "data.classes=[0,1,2,3,4]",
            "trainer.epochs=3",
            f"finetune.weights={a / 'pretrained'}",
            "finetune.freeze_backbone_epochs=1",
            "finetune.backbone_lr_mult=0.5",
            "trainer.checkpoint_every=2",
        ],
        ("channels_last", "fused_optimizer"),
        18,
    ),  # fmt: skip
    # 41 batches = 14 steps an epoch (the last of 2 batches), a checkpoint every 2 steps (6 batches)
    "accum": Case(
        lambda a: [*DIGITS_CNN, "trainer.accumulate=3", "trainer.checkpoint_every=2"],
        ("channels_last", "fused_optimizer"),
        30,
    ),
    # the detection family: Faster R-CNN (its sampler draws from the global RNG) on MNIST scenes made from the
    # synthetic MNIST; 12 batches of 4 list-of-images batches an epoch, a checkpoint every 2 steps
    "detection": Case(
        lambda a: [
            "scenes_faster_rcnn",
            f"data.path={a / 'mnist'}",
            "data.scenes.train=48",
            "data.scenes.val=8",
            "data.scenes.test=8",
            "data.batch_size=4",
            "trainer.epochs=2",
            "trainer.checkpoint_every=2",
            "trainer.schedule.warmup_steps=4",
        ],
        ("fused_optimizer",),
        10,
    ),  # fmt: skip
    # the segmentation family: U-Net on MNIST scenes' masks with random crops and 90° turns drawn per sample;
    # 12 batches of 4 an epoch, a checkpoint every 2 steps
    "segment": Case(
        lambda a: [
            "scenes_unet",
            f"data.path={a / 'mnist'}",
            "data.scenes.train=48",
            "data.scenes.val=8",
            "data.scenes.test=8",
            "data.batch_size=4",
            "data.crop=48",
            "data.augment.rot90=true",
            "model.width=4",
            "trainer.epochs=2",
            "trainer.checkpoint_every=2",
            "trainer.schedule.warmup_steps=4",
        ],
        ("channels_last", "fused_optimizer"),
        10,
    ),  # fmt: skip
    "bf16": Case(
        lambda a: [*DIGITS_CNN, "trainer.precision=bf16", "trainer.checkpoint_every=4"],
        ("channels_last", "fused_optimizer", "bf16_autocast"),
        32,
    ),
    # 60 users x 14 interactions, leave-one-out: 720 training positives, 45 batches of 16 an epoch, each with 4
    # negatives per positive drawn from (seed, epoch): a resumed run must draw the same ones mid-epoch
    "ranking": Case(
        lambda a: [
            "interactions_ranking",
            f"data.path={a / 'rec' / 'ratings.csv'}",
            "data.eval_negatives=10",
            "data.batch_size=16",
            "model.dim=8",
            "model.layers=[16,8]",
            "trainer.epochs=2",
            "trainer.early_stopping=null",
            "trainer.checkpoint_every=4",
        ],
        ("fused_optimizer",),
        36,
    ),  # fmt: skip
    # 60 windows of up to 9 items, 15 batches of 4 an epoch: dropout draws from the restored RNG
    "nextitem": Case(
        lambda a: [
            "movielens_sasrec",
            "data.name=interactions",
            f"data.path={a / 'rec' / 'ratings.csv'}",
            "data.max_len=8",
            "data.eval_negatives=10",
            "data.batch_size=4",
            "model.dim=16",
            "trainer.epochs=2",
            "trainer.early_stopping=null",
            "trainer.checkpoint_every=2",
        ],
        ("fused_optimizer",),
        12,
    ),  # fmt: skip
    # the speech family: a waveform CNN on a synthetic FSDD, random gains and delays per clip from (seed, epoch,
    # batch), SpecAugment's masks from the restored global RNG; 13 batches of 8 an epoch, a checkpoint every 2 steps
    "speech": Case(
        lambda a: [
            "fsdd_digits_cnn",
            f"data.path={a / 'fsdd'}",
            "data.batch_size=8",
            "data.val_per_group=1",
            "model.channels=[4,8]",
            "model.n_mels=16",
            "trainer.epochs=2",
            "trainer.checkpoint_every=2",
            "trainer.schedule.warmup_steps=4",
        ],
        ("fused_optimizer",),
        10,
    ),  # fmt: skip
}
SIGNALS = {"SIGKILL": signal.SIGKILL, "SIGINT": signal.SIGINT}
# SIGKILL for every configuration (SASRec's, 16 s, with -m slow: the ranking case already resumes a recommender's
# per-epoch draws mid-epoch by default); SIGINT (Ctrl-C) for the conv net and the GAN by default, the rest with -m slow
SLOW_SIGKILL = ("nextitem",)
MATRIX = [
    pytest.param(name, "SIGKILL", id=f"{name}-SIGKILL", marks=pytest.mark.slow if name in SLOW_SIGKILL else ())
    for name in CASES
] + [
    pytest.param(name, "SIGINT", id=f"{name}-SIGINT", marks=() if name in ("conv", "gan") else pytest.mark.slow)
    for name in CASES
]


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> Path:
    """A small text file (word salad of 14 words, 16.6k characters), a synthetic MNIST folder, and a pretrained
    run (mnist_cnn, one epoch on it) for the fine-tuning case."""
    root = tmp_path_factory.mktemp("assets")
    rng = np.random.default_rng(0)
    words = ["the", "king", "shall", "speak", "and", "we", "will", "go", "to", "war", "my", "lord", "o", "love"]
    lines = [" ".join(rng.choice(words, rng.integers(3, 9))).capitalize() + "." for _ in range(700)]
    (root / "corpus.txt").write_text("\n".join(lines) + "\n")
    _write_mnist(root / "mnist", n_train=400, n_test=40)
    _rec_table(root / "rec", users=60, items=30, per_user=14)
    _write_fsdd(root / "fsdd", takes=12)
    pre = _run_main(
        "train", "mnist_cnn", f"data.path={root / 'mnist'}", "model.channels=[4,8]", "model.hidden=16",
        "data.batch_size=16", "trainer.epochs=1", *COMMON, "--out", root / "pretrained",
    )  # fmt: skip
    assert pre.returncode == 0, pre.stderr
    return root


# what a training run imports, loaded once by the fork server whose children are the interrupted runs
PRELOAD = ["conftest", "deepkit.cli", "deepkit.api", "deepkit.families.supervised", "deepkit.families.text",
           "deepkit.families.generative", "deepkit.families.detection", "deepkit.families.segmentation",
           "deepkit.families.recommenders", "deepkit.families.speech",
           "deepkit.viz.plots", "kornia"]  # fmt: skip


def train_in_child(args: list[str], stdout: str, stderr: str, env: dict[str, str]) -> None:
    """``deepkit ARGS`` in a process forked from the fork server (torch and deepkit already imported): the CLI's
    ``main`` with stdout and stderr in files; exits with its code (130 after Ctrl-C), or dies of the signal."""
    os.environ.clear()
    os.environ.update(env)
    for fd, path in ((1, stdout), (2, stderr)):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 (for the life of the process)
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    from deepkit.cli import main

    main(args)


class Interrupted:
    """``deepkit train ARGS --out OUT`` in a process of its own, sent ``sig`` from a watcher thread as soon as its
    checkpoints/last shows epoch >= ``min_epoch`` and a batch in (0, ``max_batch``]: mid-epoch, after a mid-epoch
    checkpoint. The watcher starts the process and watches it while this process trains the reference.

    ``real=True``: ``python -m deepkit`` (seconds of imports); otherwise a child of a multiprocessing fork server
    that has torch and deepkit imported (a process of its own all the same: its own memory, killed for real)."""

    def __init__(self, args: list[str], out: Path, sig: int, case: Case, real: bool = False, wait: float = 150):
        self.args, self.out, self.sig, self.case, self.real = [*args, "--out", str(out)], out, sig, case, real
        self.stdout, self.stderr = out.with_name(out.name + ".out"), out.with_name(out.name + ".err")
        self.seen: dict | None = None
        self.proc = None
        self.deadline = time.monotonic() + wait
        self.watcher = threading.Thread(target=self._watch, daemon=True)
        self.watcher.start()

    def _start(self) -> None:
        if self.real:
            with open(self.stdout, "w") as so, open(self.stderr, "w") as se:
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "deepkit", *self.args], env=cli_env(), stdin=subprocess.DEVNULL,
                    stdout=so, stderr=se,
                )  # fmt: skip
            return
        self.proc = multiprocessing.get_context("forkserver").Process(
            target=train_in_child, args=(self.args, str(self.stdout), str(self.stderr), cli_env())
        )
        self.proc.start()

    def _alive(self) -> bool:
        return self.proc.poll() is None if self.real else self.proc.is_alive()

    def _watch(self) -> None:
        self._start()
        last = self.out / "checkpoints" / "last"
        while time.monotonic() < self.deadline and self._alive():
            loop = read_loop(last)
            if loop and loop["epoch"] >= self.case.min_epoch and 0 < loop["batch"] <= self.case.max_batch:
                self.seen = loop
                os.kill(self.proc.pid, self.sig)
                return
            time.sleep(0.005)

    def finish(self) -> tuple[int, str, str]:
        """Wait for the watcher and the process: (return code, stdout, stderr)."""
        self.watcher.join(timeout=max(1.0, self.deadline - time.monotonic()))
        assert self.proc is not None, f"could not start {self.args}"
        if self.seen is None and self._alive():
            self.proc.kill()
        if self.real:
            code = self.proc.wait(timeout=60)
        else:
            self.proc.join(timeout=60)
            code = self.proc.exitcode
        return code, self.stdout.read_text(), self.stderr.read_text()


REAL = ("conv", "SIGINT")  # the one `python -m deepkit` process (the CLI's own exit on Ctrl-C); needs no assets


@pytest.fixture(scope="module")
def interrupted(request, tmp_path_factory) -> Callable[[str, str, Path], Interrupted]:
    """``interrupted(name, signame, assets)``: the interrupted run of a configuration, started. The fork server
    starts importing at once, and so does the ``python -m deepkit`` process if its test is selected (it needs no
    assets): both then import while the first tests run."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    multiprocessing.forkserver.ensure_running()
    started: dict[tuple[str, str], Interrupted] = {}

    def start(name: str, signame: str, assets: Path | None) -> Interrupted:
        if (name, signame) in started:
            return started.pop((name, signame))
        run = tmp_path_factory.mktemp(f"{name}-{signame}") / "run"
        case = CASES[name]
        args = ["train", *case.args(assets), *COMMON]
        return Interrupted(args, run, SIGNALS[signame], case, real=(name, signame) == REAL)

    if any(item.nodeid.endswith(f"[{'-'.join(REAL)}]") for item in request.session.items):
        started[REAL] = start(*REAL, None)
    return start


@pytest.fixture(scope="module")
def reference(assets, tmp_path_factory) -> Callable[[str], Path]:
    """``reference(name)``: the uninterrupted run of a configuration (trained once, here)."""
    runs: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in runs:
            out = tmp_path_factory.mktemp("reference") / name
            proc = _run_main("train", *CASES[name].args(assets), *COMMON, "--out", out)
            assert proc.returncode == 0, proc.stderr
            runs[name] = out
        return runs[name]

    return get


def metrics_rows(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(f)]


def max_abs_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert set(a) == set(b)
    return max(((a[k].double() - b[k].double()).abs().max().item() if a[k].numel() else 0.0) for k in a)


def plan_switches(run: Path) -> set[str]:
    """The speed-plan switches that were on ("[x] name" lines of the plan table in log.txt)."""
    lines = (run / "log.txt").read_text().splitlines()
    return {line.split()[1] for line in lines if line.strip().startswith("[x]")}


@pytest.mark.parametrize("name, signame", MATRIX)
def test_resume_after_kill_is_bit_identical(name, signame, interrupted, assets, reference):
    case = CASES[name]
    if "bf16_autocast" in case.fast_path and not torch.amp.is_autocast_available("cpu"):
        pytest.skip("no CPU autocast in this torch")
    killed = interrupted(name, signame, assets)
    run = killed.out
    t0 = time.perf_counter()
    ref = reference(name)  # trains while the killed process starts
    t1 = time.perf_counter()
    code, _, err = killed.finish()
    t2 = time.perf_counter()
    assert killed.seen is not None, f"never saw a mid-epoch checkpoint (rc={code}):\n{err[-3000:]}"
    assert set(case.fast_path) <= plan_switches(ref), f"{name} no longer runs {case.fast_path}"

    loop = read_loop(run / "checkpoints" / "last")
    assert loop is not None and loop["step"] >= killed.seen["step"] and loop["batch"] > 0, (loop, killed.seen)
    assert not (run / "results.json").exists()
    if signame == "SIGKILL":
        assert code == -signal.SIGKILL
        assert json.loads((run / "run.json").read_text())["status"] == "running"
    else:  # Ctrl-C: the step in progress ends, checkpoints/last is written there, one line says so
        assert code == 130, err
        assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
        line = err.strip().splitlines()[-1]
        said = re.fullmatch(r"interrupted at (.+); last checkpoint: (.+), at (.+); continue with: (.+)", line)
        assert said, line
        assert said[1] == said[3], f"Ctrl-C should stop where it saved: {line}"
        assert said[2] == str(run / "checkpoints" / "last") and said[4] == f"deepkit train --resume {run}"
        assert re.fullmatch(rf"epoch {loop['epoch'] + 1}, batch {loop['batch']}/\d+ \(step {loop['step']}\)", said[3])
        if name == "accum":
            assert loop["batch"] % 3 == 0, f"Ctrl-C should finish the accumulation group: {line}"
        assert (run / "log.txt").read_text().rstrip().endswith(line)

    t3 = time.perf_counter()
    resumed = _run_main("train", "--resume", run)
    t4 = time.perf_counter()
    assert resumed.returncode == 0, resumed.stderr
    said = rf"resuming {re.escape(str(run))} from epoch {loop['epoch'] + 1}, batch {loop['batch']}/\d+ "
    said += rf"\(step {loop['step']}\) of \d+ epochs"
    assert re.search(said, resumed.stdout), resumed.stdout[:500]
    assert re.search(said, (run / "log.txt").read_text())

    wa = load_file(str(run / "checkpoints" / "last" / "model.safetensors"))
    wb = load_file(str(ref / "checkpoints" / "last" / "model.safetensors"))
    diff = max_abs_diff(wa, wb)
    where = f"epoch {loop['epoch'] + 1}, batch {loop['batch']}, step {loop['step']}"
    print(f"resume matrix {name} {signame}: resumed at {where}; final weights max|d| = {diff:.3g}")
    print(f"  seconds: reference {t1 - t0:.1f}, then waiting for the kill {t2 - t1:.1f}, resume {t4 - t3:.1f}")
    assert diff == 0, f"{name}: final weights differ after resuming at {where}: max|d| = {diff:.3g}"
    sa = load_file(str(run / "checkpoints" / "last" / "state.safetensors"))
    sb = load_file(str(ref / "checkpoints" / "last" / "state.safetensors"))
    optim = sorted(k for k in sb if k.startswith("optim"))
    assert optim and sorted(k for k in sa if k.startswith("optim")) == optim
    for k in optim:
        assert torch.equal(sa[k], sb[k]), f"{name}: optimizer state {k} differs"
    assert metrics_rows(run) == metrics_rows(ref)
    assert_same_records(run, ref)


def record_rows(run: Path, name: str) -> list[list[str]]:
    with open(run / "record" / name, newline="") as f:
        return list(csv.reader(f))


def assert_same_records(run: Path, ref: Path) -> None:
    """The doctor's records (trainer.record, on by default) of the resumed run equal the uninterrupted run's: every
    step once, in order, with the same losses, learning rates, gradient/weight norms and activation statistics
    (timings differ)."""
    for name in ("steps.csv", "layers.csv", "activations.csv"):
        assert (run / "record" / name).is_file() == (ref / "record" / name).is_file(), name
        if name == "activations.csv" and not (ref / "record" / name).is_file():
            continue  # a model without activation modules (an LSTM)
        assert (run / "record" / name).read_text().endswith("\n"), f"{name}: a half-written last line"
        got, want = record_rows(run, name), record_rows(ref, name)
        assert got[0] == want[0] and len(got) == len(want), f"{name}: {len(got)} rows after resuming, {len(want)}"
        assert got == want, f"{name} differs after resuming"
    steps = [int(row[0]) for row in record_rows(run, "steps.csv")[1:]]
    assert steps == list(range(1, len(steps) + 1)), "steps.csv: every step once, in order"
    timing = record_rows(run, "timing.csv")[1:]
    assert all(int(a) < int(b) for a, b, *_ in timing), timing

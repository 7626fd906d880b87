"""Shared fixtures: temporary run directories, a CLI runner, synthetic datasets and one trained run per session.

Every test runs torch on ONE intra-op thread (and every CLI subprocess gets ``OMP_NUM_THREADS=1``): on a small
machine shared with other jobs, two contending torch threads make a tiny MLP step ~100× slower, and one thread
also keeps float reductions in a fixed order, which the bit-exact resume tests rely on.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from deepkit.data.idx import write_idx

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO.parent / "shared" / "datasets"
CLI_TIMEOUT = 180  # seconds; a CLI call in this suite normally takes 3-10 s

torch.set_num_threads(1)


def datasets_root() -> Path:
    """Where the real public datasets live: ``$DEEPKIT_DATA`` if set, else ``../shared/datasets`` next to the repo."""
    env = os.environ.get("DEEPKIT_DATA")
    return Path(env).expanduser() if env else SHARED_DATASETS


def cli_env(**extra: str) -> dict[str, str]:
    """Environment of a CLI subprocess: the current one, one torch thread, no debug mode, DEEPKIT_DATA set."""
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["MKL_NUM_THREADS"] = "1"
    env.pop("DEEPKIT_DEBUG", None)
    if "DEEPKIT_DATA" not in env and SHARED_DATASETS.is_dir():
        env["DEEPKIT_DATA"] = str(SHARED_DATASETS)
    env.update(extra)
    return env


def _run_cli(
    *args: str | os.PathLike,
    cwd: str | os.PathLike | None = None,
    timeout: float = CLI_TIMEOUT,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run ``python -m deepkit ARGS`` and return the finished process (text stdout/stderr captured)."""
    return subprocess.run(
        [sys.executable, "-m", "deepkit", *map(str, args)],
        cwd=cwd,
        env=env or cli_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _run_main(
    *args: str | os.PathLike,
    cwd: str | os.PathLike | None = None,
    timeout: float = CLI_TIMEOUT,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """``deepkit ARGS`` in this process: ``deepkit.cli.main`` with stdout, stderr and deepkit's warnings captured,
    as a CompletedProcess. What a CLI test checks (exit code, one-line errors, output, files) without the seconds
    of starting Python and importing torch again; with ``env`` it runs as a real process."""
    import contextlib
    import io
    import traceback
    import warnings

    from deepkit.cli import main

    if env is not None:
        return _run_cli(*args, cwd=cwd, timeout=timeout, env=env)
    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
        warnings.resetwarnings()  # as in a fresh process: every warning shown once, on stderr
        warnings.simplefilter("default")
        warnings.showwarning = lambda m, c, f, n, file=None, line=None: sys.stderr.write(
            warnings.formatwarning(m, c, f, n, line)
        )
        try:
            if cwd is not None:
                os.chdir(cwd)
            main([str(a) for a in args])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except Exception:  # what the interpreter does with an uncaught exception (--debug re-raises)
            traceback.print_exc()
            code = 1
        finally:
            os.chdir(old)
    return subprocess.CompletedProcess(["deepkit", *map(str, args)], code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="session")
def run_cli() -> Callable[..., subprocess.CompletedProcess]:
    """``run_cli(*args, cwd=None, timeout=..., env=None)`` -> CompletedProcess of ``deepkit ARGS`` run in this
    process (see ``_run_main``); ``run_cli_process`` where the process itself matters (signals, launchers)."""
    return _run_main


@pytest.fixture(scope="session")
def deepkit_cli() -> Callable[..., tuple[int, str, str]]:
    """``deepkit_cli(*args, cwd=None)`` -> (exit code, stdout, stderr) of ``deepkit ARGS`` run in this process."""

    def call(*args: str | os.PathLike, cwd: str | os.PathLike | None = None) -> tuple[int, str, str]:
        proc = _run_main(*args, cwd=cwd)
        return proc.returncode, proc.stdout, proc.stderr

    return call


@pytest.fixture(scope="session")
def run_cli_process() -> Callable[..., subprocess.CompletedProcess]:
    """``run_cli_process(*args, cwd=None, timeout=..., env=None)`` -> CompletedProcess of ``python -m deepkit ARGS``."""
    return _run_cli


@pytest.fixture(scope="session")
def make_cli_env() -> Callable[..., dict[str, str]]:
    """``make_cli_env(**extra)`` -> the environment ``run_cli`` uses, with ``extra`` variables added."""
    return cli_env


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A path for a run directory that does not exist yet."""
    return tmp_path / "run"


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Change into tmp_path, so anything written to ``runs/`` lands there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def mnist_dir() -> Path:
    """The real MNIST folder (four IDX .gz files); skips the test when it is absent."""
    folder = datasets_root() / "mnist"
    if not (folder / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real MNIST not found at {folder} (set DEEPKIT_DATA or provide ../shared/datasets/mnist)")
    return folder


def _write_mnist(folder: Path, n_train: int = 200, n_test: int = 50, gz: bool = True, seed: int = 0) -> Path:
    """Write a tiny synthetic MNIST (four IDX files, 28×28 uint8 images, labels cycling 0..9) into ``folder``."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte{ext}", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{ext}", labels)
    return folder


def _write_fsdd(folder: Path, speakers: tuple[str, ...] = ("ann", "bob"), takes: int = 12, rate: int = 8000) -> Path:
    """A synthetic Free Spoken Digit Dataset: ``{digit}_{speaker}_{take}.wav`` at 8 kHz, each 'digit' two tones that
    depend on the digit (a little on the speaker), a noise floor and a fade; 0.30-0.33 s each."""
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    for s, name in enumerate(speakers):
        for d in range(10):
            for i in range(takes):
                rng = np.random.default_rng(1000 * d + 100 * s + i)
                t = np.arange(int(0.3 * rate * (1 + 0.1 * rng.random()))) / rate
                f1, f2 = 250 + 150 * d + 20 * s, 2900 - 180 * d
                x = 0.4 * np.sin(2 * np.pi * f1 * t) + 0.2 * np.sin(2 * np.pi * f2 * t)
                x = (x + 0.02 * rng.standard_normal(len(t))) * np.hanning(len(t))
                sf.write(str(folder / f"{d}_{name}_{i}.wav"), x.astype(np.float32), rate, subtype="PCM_16")
    return folder


def _blobs(
    n_per_class: int = 40, num_classes: int = 3, features: int = 4, spread: float = 0.5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Well separated Gaussian blobs: x (N, features) float32, y (N,) int64 labels."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=4.0, size=(num_classes, features))
    x = np.concatenate([c + spread * rng.normal(size=(n_per_class, features)) for c in centers]).astype(np.float32)
    y = np.repeat(np.arange(num_classes), n_per_class).astype(np.int64)
    return x, y


def _write_table(path, header: list[str], rows: list[list]) -> str:
    path.write_text("\n".join([",".join(header)] + [",".join(map(str, r)) for r in rows]) + "\n")
    return str(path)


def _colour_table(path, n: int = 240, seed: int = 0, gaps: bool = True) -> str:
    """label = (colour is red) xor (a > 0): learnable only with the categorical column; every 10th 'a' is empty,
    every 15th colour 'NA' (with ``gaps``)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        colour = ["red", "green", "blue"][i % 3]
        a, b = rng.normal(), rng.normal()
        label = "yes" if (colour == "red") != (a > 0) else "no"
        rows.append(
            [
                "" if gaps and i % 10 == 3 else f"{a:.3f}",
                "NA" if gaps and i % 15 == 7 else colour,
                f"{b:.3f}",
                label,
            ]
        )
    return _write_table(path, ["a", "colour", "b", "label"], rows)


@pytest.fixture(scope="session")
def write_table() -> Callable[..., str]:
    """``write_table(path, header, rows)`` -> the path of a CSV with those rows."""
    return _write_table


@pytest.fixture(scope="session")
def colour_table() -> Callable[..., str]:
    """``colour_table(path, n=240, seed=0, gaps=True)`` -> a CSV whose label needs its categorical column."""
    return _colour_table


@pytest.fixture
def write_mnist() -> Callable[..., Path]:
    """``write_mnist(folder, n_train=200, n_test=50, gz=True)``: a tiny synthetic MNIST folder."""
    return _write_mnist


@pytest.fixture
def blobs() -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    """``blobs(n_per_class=40, num_classes=3, features=4, spread=0.5, seed=0)`` -> separable (x, y)."""
    return _blobs


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    """``deepkit train digits_mlp trainer.epochs=2 --out D`` through the CLI, once per session: (D, process)."""
    out = tmp_path_factory.mktemp("cli") / "digits"
    proc = _run_cli("train", "digits_mlp", "trainer.epochs=2", "--out", out, cwd=out.parent)
    assert proc.returncode == 0, f"training digits_mlp failed:\n{proc.stdout}\n{proc.stderr}"
    return out, proc


def read_loop(last: Path) -> dict | None:
    """The loop position in a run's checkpoints/last (or .old-last mid-swap); None while nothing readable is there."""
    for candidate in (last, last.with_name(".old-" + last.name)):
        try:
            return json.loads((candidate / "state.json").read_text())["loop"]
        except (OSError, ValueError, KeyError):
            continue
    return None


def _kill_mid_epoch(
    args: list[str], out: Path, log: Path, max_batch: int, wait: float = 150
) -> tuple[dict | None, int]:
    """Start ``deepkit ARGS --out OUT``, SIGKILL it as soon as checkpoints/last shows epoch >= 1 and a batch in
    (0, max_batch], i.e. mid-epoch after one full epoch. Returns (loop position seen or None, return code)."""
    seen = None
    with open(log, "w") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "deepkit", *args, "--out", str(out)],
            env=cli_env(),
            stdin=subprocess.DEVNULL,
            stdout=f,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and proc.poll() is None:
                loop = read_loop(out / "checkpoints" / "last")
                if loop and loop["epoch"] >= 1 and 0 < loop["batch"] <= max_batch:
                    seen = loop
                    os.kill(proc.pid, signal.SIGKILL)
                    break
                time.sleep(0.005)
        finally:
            if proc.poll() is None and seen is None:
                proc.kill()
            proc.wait(timeout=30)
    return seen, proc.returncode


@pytest.fixture(scope="session")
def kill_mid_epoch() -> Callable[..., tuple[dict | None, int]]:
    """``kill_mid_epoch(args, out, log, max_batch)`` -> (loop seen, returncode): a real SIGKILL mid-epoch."""
    return _kill_mid_epoch


def _rec_table(
    folder: Path, users: int = 40, items: int = 30, per_user: int = 12, seed: int = 0, features: bool = False
) -> Path:
    """A tiny interactions table ``ratings.csv`` (user,item,rating,timestamp) in ``folder``, generated here (no real
    data): users u0.. and items i0.. fall in two groups; a user rates items of their own group 5 (or 4) and the others
    1 (or 2), and consumes items in a run (item j, then j + 1, ...) from a random start, one per time step, so both
    the ratings and the next item are learnable. ``features``: also ``users.csv`` (group as a category "a"/"b", an
    age) and ``items.csv`` (kind "a"/"b", a year) whose group columns explain the ratings."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    t = 1_000_000
    for u in range(users):
        start = int(rng.integers(items))
        for j in range(per_user):
            i = (start + j) % items
            same = u % 2 == i % 2
            r = (5 if rng.random() < 0.8 else 4) if same else (1 if rng.random() < 0.8 else 2)
            t += int(rng.integers(1, 5))
            rows.append(f"u{u},i{i},{r},{t}")
    path = folder / "ratings.csv"
    path.write_text("user,item,rating,timestamp\n" + "\n".join(rows) + "\n")
    if features:
        (folder / "users.csv").write_text(
            "id,group,age\n" + "".join(f"u{u},{'ab'[u % 2]},{20 + u % 30}\n" for u in range(users))
        )
        (folder / "items.csv").write_text(
            "id,kind,year\n" + "".join(f"i{i},{'ab'[i % 2]},{1990 + i % 20}\n" for i in range(items))
        )
    return path


@pytest.fixture(scope="session")
def rec_table() -> Callable[..., Path]:
    """``rec_table(folder, users=40, items=30, per_user=12, seed=0, features=False)`` -> a generated ratings.csv."""
    return _rec_table

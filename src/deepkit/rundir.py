"""Run directories: creating one, its status file, its resolved config, and the lock that gives it one writer.

A run directory belongs to one process at a time: ``deepkit train`` (new, ``--resume`` or ``--overwrite``) holds an
exclusive ``flock`` on ``RUN_DIR/.lock`` while it trains. A second writer is refused with a one-line error naming the
process that holds it. The kernel drops the lock when its process ends, however it ends (SIGKILL included), so a
killed run never blocks its own resume. Readers (``deepkit eval``, ``predict``) take no lock: checkpoints are
swapped in atomically, and :func:`read_checkpoint` retries if a checkpoint is replaced while it reads it.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from deepkit.errors import CheckpointError, ConfigError, DeepkitError

LOCK = ".lock"


class RunLocked(DeepkitError):
    """Another process is writing this run directory."""


class StillTraining(UserWarning):
    """A run directory read (eval, predict) while a process still trains in it."""


def now() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")


def command_line(argv: list[str] | None = None) -> str:
    """This process's command as a user would type it: ``deepkit train ...`` for the CLI (also ``python -m``)."""
    argv = list(sys.argv if argv is None else argv)
    if argv and Path(argv[0]).name in ("deepkit", "__main__.py"):
        return " ".join(["deepkit", *argv[1:]])
    return " ".join(argv)


def git_commit() -> str | None:
    try:
        return (
            subprocess.run(
                ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        return None


# --- the lock ------------------------------------------------------------------------------------------------------
class RunLock:
    """An exclusive lock on a run directory, held until :meth:`release` or the end of the process.

    Example:
        >>> with RunLock("runs/demo"):          # doctest: +SKIP
        ...     ...                             # train, write checkpoints
    """

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.fd: int | None = None

    def acquire(self) -> RunLock:
        import fcntl

        path = self.run_dir / LOCK
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise RunLocked(f"{self.run_dir} is in use: {describe_holder(self.run_dir)}") from None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": now(), "command": command_line()}
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(info).encode())
        os.fsync(fd)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            import fcntl

            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def holder(run_dir: str | Path) -> dict[str, Any] | None:
    """Who writes ``run_dir`` now (``{"pid", "host", "since", "command"}``), or None if nobody does."""
    path = Path(run_dir) / LOCK
    if not path.is_file():
        return None
    import fcntl

    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            try:
                return json.loads(path.read_text() or "{}") or {"pid": "?"}
            except (OSError, json.JSONDecodeError):
                return {"pid": "?"}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def describe_holder(run_dir: str | Path) -> str:
    info = holder(run_dir) or {}
    who = f"process {info.get('pid', '?')}"
    if info.get("host") and info["host"] != socket.gethostname():
        who += f" on {info['host']}"
    since = f" since {info['since']}" if info.get("since") else ""
    command = f" (`{info['command']}`)" if info.get("command") else ""
    return f"{who} is writing it{since}{command}; wait for it to finish or stop it first"


# --- creating a run directory ----------------------------------------------------------------------------------------
def new_run_dir(out: str | Path | None, name: str, overwrite: bool) -> Path:
    """Create the run directory: ``out``, or ``runs/NAME`` (``runs/NAME-2``, ... if taken)."""
    if out is not None:
        path = Path(out)
        if path.exists() and not path.is_dir():
            raise ConfigError(f"--out {path} is a file; expected a directory for the run (or a new name)")
        if path.exists() and any(path.iterdir()):
            is_run = (path / "run.json").is_file() or (path / "config.yaml").is_file()
            if not is_run:
                raise ConfigError(
                    f"--out {path} is a folder with files that is not a deepkit run directory (no config.yaml); "
                    "choose a new or empty folder"
                )
            if not overwrite:
                raise ConfigError(
                    f"run directory {path} already exists; pass --overwrite to replace it, "
                    f"--resume {path} to continue it, or another --out"
                )
            if holder(path) is not None:
                raise RunLocked(f"cannot overwrite {path}: {describe_holder(path)}")
            shutil.rmtree(path)
        path.mkdir(parents=True, exist_ok=True)
        return path
    root = Path("runs")
    path, i = root / name, 1
    while path.exists():
        i += 1
        path = root / f"{name}-{i}"
    path.mkdir(parents=True)
    return path


def write_status(run_dir: Path, status: str, **extra: Any) -> None:
    """Update ``run.json``: running | finished | failed | interrupted, with a timestamp and ``extra`` fields."""
    from deepkit.weights import atomic_write_text

    path = run_dir / "run.json"
    info = json.loads(path.read_text()) if path.is_file() else {}
    info.update(status=status, updated=now(), **extra)
    atomic_write_text(path, json.dumps(info, indent=1))


def read_status(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / "run.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}


def write_config(run_dir: Path, resolved: dict[str, Any], command: list[str] | None) -> None:
    """``config.yaml``: the fully resolved recipe plus ``meta`` (git commit, command line, versions, time)."""
    import torch
    import yaml

    from deepkit.version import __version__
    from deepkit.weights import atomic_write_text

    resolved = dict(resolved)
    resolved["meta"] = {
        "git_commit": git_commit(),
        "command": command_line(command),
        "deepkit": __version__,
        "torch": str(torch.__version__),
        "created": now(),
    }
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(resolved, sort_keys=False))


# --- reading checkpoints -------------------------------------------------------------------------------------------
def checkpoint_dir(path: str | Path, which: str = "best") -> Path:
    """``RUN_DIR`` -> ``RUN_DIR/checkpoints/<which>`` (or its previous copy mid-swap); other paths unchanged."""
    from deepkit.train.checkpoint import find_checkpoint

    path = Path(path)
    if path.is_dir() and (path / "checkpoints").is_dir():
        found = find_checkpoint(path / "checkpoints" / which)
        if found is None:
            raise CheckpointError(f"{path} has no '{which}' checkpoint (did the run finish an epoch?)")
        return found
    return path


def read_checkpoint(path: str | Path, which: str = "best", tries: int = 5) -> tuple[Path, dict, dict]:
    """(checkpoint path, weights, metadata) of a run directory's ``which`` checkpoint, a checkpoint directory or a
    weights file. A run that is still training may swap the checkpoint while it is read: then it is read again."""
    from deepkit.weights import load_weights

    for attempt in range(tries):
        found = checkpoint_dir(path, which)
        try:
            state, meta = load_weights(found)
            return found, state, meta
        except (CheckpointError, FileNotFoundError):
            if attempt == tries - 1 or holder(path) is None:
                raise
            time.sleep(0.2)
    raise AssertionError("unreachable")  # pragma: no cover


def checkpoint_summary(found: Path, meta: dict[str, Any]) -> str:
    """Which weights a checkpoint holds, for messages: "best checkpoint (epoch 3, val_loss 0.1234)"."""
    name = found.name.removeprefix(".old-")
    parts = []
    epoch = meta.get("epoch")
    if epoch is None and (found / "state.json").is_file():
        try:
            loop = json.loads((found / "state.json").read_text())["loop"]
            epoch, parts = loop["epoch"] + (1 if loop["batch"] else 0), [f"step {loop['step']}"]
        except (OSError, KeyError, json.JSONDecodeError):
            pass
    if epoch is not None:
        parts.insert(0, f"epoch {epoch}")
    if meta.get("monitor") and meta.get("value") is not None:
        parts.append(f"{meta['monitor']} {meta['value']:.4g}")
    return f"{name} checkpoint" + (f" ({', '.join(parts)})" if parts else "")


def warn_if_training(run_dir: Path, found: Path, meta: dict[str, Any]) -> None:
    """Reading a run that still trains gives the weights of the moment: say so, and which ones."""
    import warnings

    info = holder(run_dir) if (Path(run_dir) / LOCK).is_file() else None
    if info is not None:
        warnings.warn(
            f"{run_dir} is still training (process {info.get('pid', '?')}); this used its "
            f"{checkpoint_summary(found, meta)}, the latest complete one",
            StillTraining,
            stacklevel=3,
        )

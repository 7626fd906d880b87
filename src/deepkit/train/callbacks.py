"""Callbacks: no-op ``on_*`` hooks fired through one function (``Trainer._fire``).

A callback with state implements ``state_dict``/``load_state_dict`` (JSON-safe), so a resumed run continues exactly.
"""

from __future__ import annotations

import csv
import io
import math
import sys
import time
from pathlib import Path
from typing import Any

from deepkit.errors import ConfigError
from deepkit.weights import atomic_write_text

Trainer = Any  # deepkit.train.trainer.Trainer, which imports this module (so it is not imported here)


class Callback:
    """Base class. Hooks: on_fit_start, on_epoch_start, on_batch_start, on_before_optimizer_step, on_step_end,
    on_epoch_end, on_fit_end, on_exception. A hook must not change the training numbers unless that is its job
    (no random draws, no change to weights or gradients)."""

    def on_fit_start(self, trainer: Trainer) -> None: ...
    def on_epoch_start(self, trainer: Trainer) -> None: ...
    def on_batch_start(self, trainer: Trainer, batch: Any) -> None: ...  # a (micro-)batch has arrived from the loader
    def on_before_optimizer_step(self, trainer: Trainer) -> None: ...  # gradients complete, before clipping and step
    def on_step_end(self, trainer: Trainer) -> None: ...  # after each optimizer step
    def on_epoch_end(self, trainer: Trainer, logs: dict[str, float]) -> None: ...
    def on_fit_end(self, trainer: Trainer) -> None: ...
    def on_exception(self, trainer: Trainer, error: BaseException) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def _better(value: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    if best is None or math.isnan(best):
        return not math.isnan(value)
    return value < best - min_delta if mode == "min" else value > best + min_delta


def resolve_monitor(name: str, mode: str, trainer: Trainer) -> tuple[str, str]:
    """``auto`` -> the task's default (``val_accuracy``/max or ``val_loss``/min); no validation -> train_*."""
    task = trainer.task
    if name == "auto":
        name, auto_mode = task.monitor, task.monitor_mode
    else:
        auto_mode = "min" if name.endswith(("loss", "rmse", "mae", "error")) else "max"
    if name.startswith("val_") and not trainer.has_val:
        name = "train_" + name[4:]
    return name, auto_mode if mode == "auto" else mode


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs."""

    def __init__(self, monitor: str = "val_loss", mode: str = "auto", patience: int = 5, min_delta: float = 0.0):
        self.monitor, self.mode, self.patience, self.min_delta = monitor, mode, patience, min_delta
        self.best: float | None = None
        self.wait = 0
        self.stopped_epoch: int | None = None

    def on_fit_start(self, trainer):
        self.monitor, self.mode = resolve_monitor(self.monitor, self.mode, trainer)

    def on_epoch_end(self, trainer, logs):
        if self.monitor not in logs:
            raise ConfigError(f"early_stopping.monitor '{self.monitor}' is not logged; logged: {', '.join(logs)}")
        value = logs[self.monitor]
        if _better(value, self.best, self.mode, self.min_delta):
            self.best, self.wait = value, 0
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.stopped_epoch = int(logs["epoch"])
                trainer.state.stop = True
                trainer.log(
                    f"early stopping: {self.monitor} has not improved for {self.patience} epochs (best {self.best:.4g})"
                )

    def state_dict(self):
        return {"best": self.best, "wait": self.wait, "stopped_epoch": self.stopped_epoch}

    def load_state_dict(self, state):
        self.best, self.wait, self.stopped_epoch = state["best"], state["wait"], state["stopped_epoch"]


class ModelCheckpoint(Callback):
    """Keep ``checkpoints/last`` (resumable; every epoch and every ``every_n_steps``) and ``checkpoints/best``."""

    def __init__(self, run_dir: str | Path, monitor: str = "auto", mode: str = "auto", every_n_steps: int = 0):
        self.dir = Path(run_dir) / "checkpoints"
        self.monitor, self.mode, self.every = monitor, mode, every_n_steps
        self.best: float | None = None
        self.best_epoch: int | None = None

    def on_fit_start(self, trainer):
        self.monitor, self.mode = resolve_monitor(self.monitor, self.mode, trainer)

    def on_step_end(self, trainer):
        if self.every and trainer.state.step % self.every == 0 and trainer.state.batch < trainer.batches_per_epoch:
            trainer.save_checkpoint(self.dir / "last")

    def on_epoch_end(self, trainer, logs):
        value = logs.get(self.monitor, float("nan"))
        if _better(value, self.best, self.mode):
            self.best, self.best_epoch = value, int(logs["epoch"])
            trainer.save_checkpoint(
                self.dir / "best",
                resumable=False,
                extra={"epoch": int(logs["epoch"]), "monitor": self.monitor, "value": value},
            )
        trainer.save_checkpoint(self.dir / "last")

    def on_fit_end(self, trainer):
        if self.best is None:  # nothing was ever better (e.g. NaN metrics): best = last weights, say so in meta
            trainer.save_checkpoint(self.dir / "best", resumable=False, extra={"monitor": self.monitor, "value": None})

    def state_dict(self):
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state):
        self.best, self.best_epoch = state["best"], state["best_epoch"]


class CSVLogger(Callback):
    """``metrics.csv``: one row per epoch, rewritten from the loop history (so a resumed run's file is exact)."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / "metrics.csv"

    def on_epoch_end(self, trainer, logs):
        rows = trainer.state.history
        fields: list[str] = []
        for row in rows:
            fields += [k for k in row if k not in fields]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        atomic_write_text(self.path, buf.getvalue())


class TensorBoardLogger(Callback):
    """TensorBoard scalars under ``RUN_DIR/tensorboard`` (needs the ``tensorboard`` package)."""

    def __init__(self, run_dir: str | Path):
        self.dir = Path(run_dir) / "tensorboard"
        self.writer = None

    def on_fit_start(self, trainer):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError(
                "trainer.tensorboard=true needs the tensorboard package: pip install tensorboard"
            ) from None
        self.writer = SummaryWriter(str(self.dir), purge_step=trainer.state.step or None)

    def on_epoch_end(self, trainer, logs):
        for k, v in logs.items():
            if k not in ("epoch", "step"):
                self.writer.add_scalar(k.replace("_", "/", 1), v, trainer.state.step)
        self.writer.flush()

    def on_fit_end(self, trainer):
        if self.writer:
            self.writer.close()

    on_exception = lambda self, trainer, error: self.on_fit_end(trainer)  # noqa: E731


class ProgressLogger(Callback):
    """A rich progress bar with loss, metrics and samples/s on a terminal; plain log lines otherwise."""

    def __init__(self, mode: str = "auto", log_every: int = 50):
        self.mode = ("bar" if sys.stdout.isatty() else "plain") if mode == "auto" else mode
        self.log_every = max(1, log_every)
        self.progress = None
        self.task_id = None
        self.t0 = 0.0
        self.samples0 = 0
        self.last_line = time.perf_counter()  # piped output: when the last line was printed
        self.quiet_s = 10.0  # piped output: at most one in-epoch line per this many seconds

    def on_fit_start(self, trainer):
        if self.mode == "bar":
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[info]}"),
                transient=False,
            )
            self.progress.start()

    def on_epoch_start(self, trainer):
        self.t0, self.samples0 = time.perf_counter(), trainer.state.samples
        if self.progress is not None:
            desc = f"epoch {trainer.state.epoch + 1}/{trainer.config.epochs}"
            self.task_id = self.progress.add_task(
                desc, total=trainer.batches_per_epoch, info="", completed=trainer.state.batch
            )

    def on_step_end(self, trainer):
        s = trainer.state
        logged = s.step % self.log_every == 0
        if self.progress is not None:
            # the bar moves every step (no device sync); loss and speed are refreshed at log intervals only
            info = {}
            if logged or s.batch == trainer.batches_per_epoch:
                rate = (s.samples - self.samples0) / max(1e-9, time.perf_counter() - self.t0)
                info["info"] = f"loss {trainer.running('loss'):.4f}  {rate:,.0f} samples/s"
            self.progress.update(self.task_id, completed=s.batch, **info)
        elif self.mode == "plain" and logged and time.perf_counter() - self.last_line >= self.quiet_s:
            # piped output: a line at a log interval now and then, so a long epoch does not look stuck
            rate = (s.samples - self.samples0) / max(1e-9, time.perf_counter() - self.t0)
            print(
                f"epoch {s.epoch + 1}: batch {s.batch}/{trainer.batches_per_epoch}  loss {trainer.running('loss'):.4f}"
                f"  {rate:,.0f} samples/s",
                flush=True,
            )
            self.last_line = time.perf_counter()

    def on_epoch_end(self, trainer, logs):
        if self.progress is not None:
            self.progress.update(self.task_id, completed=trainer.batches_per_epoch, info=format_logs(logs, short=True))
        trainer.log(format_logs(logs), echo=self.mode == "plain")
        self.last_line = time.perf_counter()

    def on_fit_end(self, trainer):
        if self.progress is not None:
            self.progress.stop()

    on_exception = lambda self, trainer, error: self.on_fit_end(trainer)  # noqa: E731


def format_logs(logs: dict[str, float], short: bool = False) -> str:
    parts = []
    for k, v in logs.items():
        if short and k in ("epoch", "step", "time"):
            continue
        if "loss" not in k and isinstance(v, float) and math.isnan(v):  # undefined here (COCO: no large objects)
            continue
        if k in ("epoch", "step"):
            parts.append(f"{k} {int(v)}")
        elif k == "samples_per_s":
            parts.append(f"{v:,.0f} samples/s")
        elif k == "lr":
            parts.append(f"lr {v:.3g}")
        elif k == "time":
            parts.append(f"{v:.1f}s")
        elif k.endswith("_mb"):  # peak_rss_mb, peak_gpu_mb
            parts.append(f"{k} {v:,.0f}")
        else:
            parts.append(f"{k} {v:.4f}")
    return "  ".join(parts)

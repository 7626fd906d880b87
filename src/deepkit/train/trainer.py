"""The Trainer: ``fit(task, data)``, ``evaluate``, ``predict``.

The loop fits on one screen: setup (``_setup``) and the per-batch step (``_train_step``) are helpers it calls;
checkpointing, logging and plotting are callbacks; the optimizer, schedule, precision and distribution are small
helpers. Per-step logs stay on the device and are synchronized only at log intervals.
"""

from __future__ import annotations

import contextlib
import math
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from deepkit.config import from_dict, to_dict
from deepkit.data.loader import TensorLoader
from deepkit.data.module import DataModule
from deepkit.errors import ConfigError, DeepkitError
from deepkit.models.registry import load_state_dict_checked
from deepkit.tasks.base import Task
from deepkit.train import checkpoint as ckpt
from deepkit.train import distributed, speed
from deepkit.train.callbacks import (
    Callback,
    CSVLogger,
    EarlyStopping,
    ModelCheckpoint,
    ProgressLogger,
    TensorBoardLogger,
)
from deepkit.train.manual import ManualStep, build_named_optimizers
from deepkit.train.optim import OptimizerConfig, Schedule, ScheduleConfig, base_lr, build_optimizer
from deepkit.train.record import RecordConfig, Recorder
from deepkit.train.speed import AutoBool, SpeedConfig, SpeedPlan


class TrainingDiverged(DeepkitError):
    """The loss became NaN or Inf."""


@dataclass
class EarlyStoppingConfig:
    monitor: str = "auto"  # any logged metric, e.g. val_loss, val_accuracy; auto: the task's default
    mode: Literal["auto", "min", "max"] = "auto"
    patience: int = 5
    min_delta: float = 0.0


@dataclass
class TrainerConfig:
    epochs: int = 10
    max_steps: int | None = None  # stop after this many optimizer steps
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    grad_clip: float | None = None  # max global L2 norm of the gradients
    accumulate: int = 1  # micro-batches per optimizer step (gradient accumulation)
    l1: float = 0.0  # adds l1 * sum|w| over weight matrices/kernels to the loss
    l2: float = 0.0  # adds l2 * sum(w²) over weight matrices/kernels to the loss
    early_stopping: EarlyStoppingConfig | None = None
    monitor: str = "auto"  # metric that picks checkpoints/best (auto: val_accuracy or val_loss)
    seed: int = 0
    device: str = "auto"  # auto (cuda > mps > cpu), cpu, cuda, cuda:1, mps
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # bf16 = autocast to bfloat16; auto: bf16 on GPUs that have it
    compile: AutoBool = "auto"  # torch.compile the model; auto: on CUDA for runs of >= speed.compile_min_steps
    log_every: int = 50  # optimizer steps between progress updates / NaN checks
    checkpoint_every: int = 0  # also save checkpoints/last every N optimizer steps (0: at epoch ends only)
    tensorboard: bool = False
    progress: Literal["auto", "bar", "plain", "none"] = "auto"
    threads: int | None = None  # torch intra-op threads (default: torch's choice)
    strategy: Literal["auto", "none", "ddp", "fsdp"] = "auto"  # several processes (--nproc, torchrun): auto = ddp
    speed: SpeedConfig = field(default_factory=SpeedConfig)  # fast-path switches (train/speed/), auto by default
    record: RecordConfig = field(default_factory=RecordConfig)  # what RUN_DIR/record/ keeps for `deepkit doctor`


@dataclass
class LoopState:
    """Where the loop is; saved in every resumable checkpoint."""

    epoch: int = 0  # current epoch, 0-based (= epochs completed)
    batch: int = 0  # batches done in the current epoch
    step: int = 0  # optimizer steps done
    samples: int = 0  # training samples seen
    train_time: float = 0.0  # seconds spent in training steps (excludes validation)
    stop: bool = False
    history: list[dict[str, float]] = field(default_factory=list)  # one row per epoch (metrics.csv)
    sums: dict[str, torch.Tensor] = field(default_factory=dict)  # running sums of per-step logs this epoch
    count: int = 0  # samples behind `sums`


@dataclass
class _Run:
    """What one ``fit`` sets up for its loop (:meth:`Trainer._setup`)."""

    task: Task
    train: Any  # loader: on the device or copying to it, sharded with several processes
    val: Any
    schedule: Schedule
    opt: torch.optim.Optimizer  # the optimizer (manual tasks: the first), whose lr the logs report
    manual: ManualStep | None  # manual-optimization tasks: what training_step gets to step its optimizers
    wrapped: torch.nn.Module  # the model, wrapped for distribution; compiled around the loop
    params: list[torch.nn.Parameter]  # trainable parameters (gradient clipping)
    penalized: list[torch.nn.Parameter]  # ... of them, the weight matrices and kernels (trainer.l1, trainer.l2)
    autocast: Any  # the precision's context manager, entered for each forward


def batch_len(batch: Any) -> int:
    """Samples in a batch: the first dimension of its first tensor (tuple, list or dict batches)."""
    first = next(iter(batch.values())) if isinstance(batch, dict) else batch[0]
    return len(first)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(
            f"trainer.device: unknown device '{name}' (expected auto, cpu, cuda, cuda:N or mps)"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"trainer.device={name}, but CUDA is not available here (use auto or cpu)")
    return device


def describe_position(epoch: int, batch: int, step: int, batches: int) -> str:
    """A loop position in words: ``epoch 2, batch 3/8 (step 11)``, or ``the end of epoch 2 (step 16)``.

    ``epoch`` counts completed epochs and ``batch`` the batches done in the current one (:class:`LoopState`)."""
    if batch == 0 and epoch > 0:
        return f"the end of epoch {epoch} (step {step})"
    return f"epoch {epoch + 1}, batch {batch}{f'/{batches}' if batches else ''} (step {step})"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    """Trains a :class:`~deepkit.tasks.Task` on a :class:`~deepkit.data.DataModule` (the data contract every family's
    data follows: ``loader(split)``, ``val``/``test``; e.g. a :class:`~deepkit.data.DataBundle` of tensors).

    Args:
        config: a :class:`TrainerConfig`, a dict of its fields, or None for defaults.
        run_dir: where checkpoints, metrics.csv, log.txt and plots go (None: nothing is written).
        callbacks: extra callbacks, fired after the built-in ones.
        **overrides: TrainerConfig fields, e.g. ``epochs=5, optimizer={"name": "sgd", "lr": 0.1}``.

    Example:
        >>> from deepkit import Trainer, create_model
        >>> from deepkit.data import from_arrays
        >>> from deepkit.tasks import ClassificationTask
        >>> data = from_arrays(x, y)                                   # doctest: +SKIP
        >>> task = ClassificationTask(create_model("mlp", in_features=4, num_classes=3), 3)  # doctest: +SKIP
        >>> Trainer(epochs=5).fit(task, data)                          # doctest: +SKIP
    """

    def __init__(
        self,
        config: TrainerConfig | dict | None = None,
        run_dir: str | Path | None = None,
        callbacks: list[Callback] | tuple = (),
        **overrides: Any,
    ):
        base = to_dict(config) if config is not None else {}
        self.config: TrainerConfig = from_dict(TrainerConfig, _merge(base, overrides), "trainer")
        if self.config.accumulate < 1:
            raise ConfigError(f"trainer.accumulate must be >= 1, got {self.config.accumulate}")
        self.run_dir = Path(run_dir) if run_dir else None
        self.extra_callbacks = list(callbacks)
        self.callbacks: list[Callback] = []
        self.state = LoopState()
        self.task: Task | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.optimizers: dict[str, torch.optim.Optimizer] = {}  # manual-optimization tasks: named optimizers
        self.has_val = False
        self.batches_per_epoch = 0
        self.checkpoint_meta: dict = {}  # added to model.safetensors metadata (preprocessing, task)
        self.device = torch.device("cpu")
        self.speed: SpeedPlan | None = None  # the fast-path decisions of the last fit
        self.peak_memory: dict[str, float] = {}  # peak_rss_mb (and peak_gpu_mb) of the last fit
        self.dist: distributed.DistributedContext | None = None  # set by fit when launched as several processes
        self._synced: tuple[dict[str, torch.Tensor], int] = ({}, 0)  # running sums over all ranks (distributed)
        self._interrupt = False  # a Ctrl-C arrived during the loop: stop at the end of the current step
        self.data: DataModule | None = None  # the data of the current fit (callbacks: the recorder's data scan)
        self.last_loss: torch.Tensor | None = None  # the last batch's loss, detached, on the device (no sync)

    # --- the loop ------------------------------------------------------------------------------------------------
    def fit(self, task: Task, data: DataModule, resume: str | Path | None = None) -> list[dict[str, float]]:
        """Train ``task`` on ``data`` (its train split; val for monitoring). Returns the per-epoch history.

        Args:
            resume: a checkpoint directory (``RUN_DIR/checkpoints/last``) to continue from, exactly.
        """
        cfg = self.config
        run = self._setup(task, data, resume)
        s = self.state
        with self._fast_path(task, run), self._deferred_ctrl_c():
            try:
                while s.epoch < cfg.epochs and not s.stop and not (cfg.max_steps and s.step >= cfg.max_steps):
                    task.model.train()
                    run.train.set_epoch(s.epoch, start_batch=s.batch)
                    self._fire("on_epoch_start")
                    t0 = time.perf_counter()
                    for batch in run.train:
                        self._fire("on_batch_start", batch=batch)
                        if not self._train_step(run, batch):
                            continue  # keep accumulating gradients
                        s.step += 1
                        if s.step % cfg.log_every == 0:
                            self._sync_logs()
                            self._check_finite()
                        self._fire("on_step_end")
                        if cfg.max_steps and s.step >= cfg.max_steps:
                            s.stop = True
                            break
                        if self._interrupt and s.batch < self.batches_per_epoch:
                            self._stop_interrupted()  # mid-epoch: checkpoints/last at this step, then raise
                    self._end_epoch(run, t0)
                    if self._interrupt:
                        self._stop_interrupted()  # the epoch end has saved checkpoints/last
            except BaseException as e:
                self._fire("on_exception", error=e)
                raise
        self.peak_memory = speed.peak_memory(self.device)
        self._fire("on_fit_end")
        if self.dist:
            self.dist.barrier()  # rank 0 has written every file before any rank goes on
        return s.history

    @contextlib.contextmanager
    def _deferred_ctrl_c(self):
        """For the loop: a first Ctrl-C (SIGINT) lets the current optimizer step (a whole accumulation group) or
        epoch end finish, so that checkpoints/last can be written where the state is whole (a KeyboardInterrupt in
        the middle of a step would leave a half-updated model, spent RNG draws, partial running sums); a second
        Ctrl-C interrupts at once. Only in one process, on the main thread, where Python's own SIGINT handler is
        installed (ranks of a distributed run would stop at different steps, and a collective save would hang)."""
        self._interrupt = False
        if (
            self.dist is not None
            or threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
        ):
            yield
            return

        def on_sigint(signum, frame):
            if self._interrupt:  # the second Ctrl-C
                signal.default_int_handler(signum, frame)
            self._interrupt = True

        previous = signal.signal(signal.SIGINT, on_sigint)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def _stop_interrupted(self) -> None:
        """Ctrl-C, honoured at a step or epoch boundary: save checkpoints/last there (an epoch end just did), raise."""
        s = self.state
        if self.run_dir and s.batch:
            self.save_checkpoint(self.run_dir / "checkpoints" / "last")
        raise KeyboardInterrupt(f"interrupted at {self.position()}")

    def position(self) -> str:
        """Where the loop is, in words (:func:`describe_position`)."""
        s = self.state
        return describe_position(s.epoch, s.batch, s.step, self.batches_per_epoch)

    def _setup(self, task: Task, data: DataModule, resume: str | Path | None) -> _Run:
        """Everything before the first batch, in this order: device, processes and seed; loaders and schedule; the
        speed plan; data placement and sharding; the model; optimizers; callbacks; the resumed state; on_fit_start."""
        cfg = self.config
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.device = resolve_device(cfg.device)
        self.dist = distributed.setup(cfg.strategy, self.device)  # None in a single process
        if self.dist:
            self.device = self.dist.device
        seed_everything(cfg.seed + (self.dist.rank if self.dist else 0))  # per-rank dropout/augmentation streams
        self.task = task.to(self.device)
        self.data = data
        self.checkpoint_meta.setdefault("preprocessing", task.preprocessing.to_dict())
        self.checkpoint_meta.setdefault("task", task.describe())
        train = data.loader("train", seed=cfg.seed)
        val = data.loader("val") if data.val is not None else None
        self.has_val = val is not None
        self.batches_per_epoch = len(train)
        steps_per_epoch = math.ceil(len(train) / cfg.accumulate)
        schedule = Schedule(cfg.schedule, cfg.max_steps or cfg.epochs * steps_per_epoch, steps_per_epoch)
        if task.manual_optimization and self.dist:  # the task steps its own optimizers (GAN: generator + discriminator)
            raise ConfigError(
                f"task '{task.name}' steps its own optimizers, which distributed training does not support yet "
                f"({self.dist.world_size} processes); train it in one process"
            )
        plan = self.speed = speed.plan_for(self, task, data, [train, val], schedule.total)
        self.log(plan.table(), echo=cfg.speed.explain)
        train, val = self._place(train, val, plan)
        speed.prepare_model(task.model, plan)
        wrapped = self.dist.prepare(task.model) if self.dist else task.model  # FSDP2 shards in place: before optim
        opt, ctx = self._build_optimizers(task, schedule, plan)
        self.callbacks = self._default_callbacks() + self.extra_callbacks
        self.state = LoopState()
        if resume is not None:
            self._restore(resume)
            self.state.stop = False  # an explicit resume continues a run that stopped early (e.g. with more epochs)
        self._fire("on_fit_start")
        params = [p for p in task.model.parameters() if p.requires_grad]
        penalized = [p for p in params if p.ndim >= 2]
        return _Run(task, train, val, schedule, opt, ctx, wrapped, params, penalized, self._autocast())

    def _build_optimizers(
        self, task: Task, schedule: Schedule, plan: SpeedPlan
    ) -> tuple[torch.optim.Optimizer, ManualStep | None]:
        """The optimizer, or a manual task's named optimizers and the :class:`ManualStep` that hands them over."""
        cfg = self.config
        fused = plan.on("fused_optimizer") and not (self.dist and self.dist.strategy == "fsdp")  # FSDP2: DTensors
        if task.manual_optimization:
            self.optimizers = build_named_optimizers(task, cfg)
            return next(iter(self.optimizers.values())), ManualStep(self.optimizers, schedule, cfg.grad_clip)
        self.optimizers = {}
        self.optimizer = build_optimizer(task.model, cfg.optimizer, fused=fused)
        return self.optimizer, None

    def _place(self, train: Any, val: Any, plan: SpeedPlan) -> tuple[Any, Any]:
        """Loaders on the device (or copying to it); with several processes, each rank's share of every batch."""
        train = speed.place_loader(train, self.device, plan)
        val = speed.place_loader(val, self.device, plan) if val is not None else None
        if self.dist:  # each rank takes its share of every global batch; outermost, so its per-batch share is current
            train = self.dist.shard(train, pad=True)
            val = None if val is None else self.dist.shard(val, pad=False)
        return train, val

    @contextlib.contextmanager
    def _fast_path(self, task: Task, run: _Run):
        """For the loop: the compiled model (if the plan compiles), a fresh memory peak, and TF32 flags (restored)."""
        uncompiled = task.model
        task.model = speed.compile_model(run.wrapped, self.speed)
        speed.reset_peak_memory(self.device)
        restore_flags = speed.set_backend_flags(self.speed)
        try:
            yield
        finally:
            task.model = uncompiled
            restore_flags()

    def _train_step(self, run: _Run, batch: Any) -> bool:
        """One batch: forward and backward, then the optimizer step at the end of an accumulation group (manual
        tasks step their own optimizers). Returns False while gradients are still being accumulated."""
        cfg, s, task, train = self.config, self.state, run.task, run.train
        n = batch_len(batch)
        weight, seen = 1.0, n
        if self.dist:  # this rank's share of the global batch and its loss weight (ShardedLoader)
            n, weight, seen = train.local_n, train.weight, train.global_n
        if run.manual is not None:  # the task does backward + step for each of its optimizers
            with run.autocast:
                out = task.training_step(batch, run.manual.at(s.step))
            self._accumulate(out, n)
            s.batch += 1
            s.samples += seen
            return True
        group = min(cfg.accumulate, len(train) - (s.batch // cfg.accumulate) * cfg.accumulate)
        if self.dist and cfg.accumulate > 1:  # all-reduce gradients on a group's last batch only
            last = (s.batch + 1) % cfg.accumulate == 0 or s.batch + 1 == len(train)
            self.dist.set_grad_sync(task.model, last)
        with run.autocast:
            out = task.training_step(batch)
        loss = out["loss"] * weight if weight != 1 else out["loss"]  # weight: distributed share
        loss = self._penalized(loss, run.penalized)
        (loss / group if group > 1 else loss).backward()
        self._accumulate(out, n)
        s.batch += 1
        s.samples += seen
        if s.batch % cfg.accumulate and s.batch != len(train):
            return False
        self._fire("on_before_optimizer_step")
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(run.params, cfg.grad_clip)
        run.schedule.apply(run.opt, s.step)
        run.opt.step()
        run.opt.zero_grad(set_to_none=True)
        return True

    def _penalized(self, loss: torch.Tensor, weights: list[torch.Tensor]) -> torch.Tensor:
        """``trainer.l1`` / ``trainer.l2``: the loss plus the penalties on the weight matrices and kernels."""
        cfg = self.config
        if cfg.l1:
            loss = loss + cfg.l1 * distributed.plain(sum(p.abs().sum() for p in weights))
        if cfg.l2:
            loss = loss + cfg.l2 * distributed.plain(sum(p.pow(2).sum() for p in weights))
        return loss

    def _end_epoch(self, run: _Run, t0: float) -> None:
        """Close an epoch: training time, the NaN check, validation, the history row; then on_epoch_end."""
        s = self.state
        s.train_time += time.perf_counter() - t0
        self._sync_logs()
        self._check_finite()
        logs = self._epoch_logs(run.task, run.val, run.opt, time.perf_counter() - t0)
        s.history.append(logs)
        s.epoch, s.batch, s.sums, s.count = s.epoch + 1, 0, {}, 0
        self._fire("on_epoch_end", logs=logs)

    # --- evaluation and prediction -------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, task: Task, data: DataModule | TensorLoader, split: str = "test") -> dict[str, float]:
        """Loss and metrics of ``task`` on a split (default test)."""
        loader = data if isinstance(data, TensorLoader) else data.loader(split)
        task.to(self.device)
        return self._run_eval(task, loader.to(self.device))

    @torch.no_grad()
    def predict(self, task: Task, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        """Postprocessed predictions (probabilities or values) for preprocessed inputs ``x``."""
        task.to(self.device).model.eval()
        outs = []
        with self._autocast():
            for i in range(0, len(x), batch_size):
                outs.append(task.predict_step(x[i : i + batch_size].to(self.device)).float().cpu())
        return torch.cat(outs) if outs else torch.empty(0)

    def _run_eval(self, task: Task, loader: TensorLoader) -> dict[str, float]:
        task.model.eval()
        task.reset_metrics()
        total, n, has_loss = torch.zeros((), device=self.device), 0, False
        with self._autocast(), torch.no_grad():
            for batch in loader:
                out = task.validation_step(batch)
                if "loss" in out:  # a detector in eval mode computes none (torchvision's API): no val_loss then
                    total += out["loss"].detach().float() * batch_len(batch)
                    has_loss = True
                n += batch_len(batch)
        if isinstance(loader, distributed.ShardedLoader):  # this rank's part of the split; torchmetrics syncs itself
            total, n = self.dist.all_sum(float(total), n)
        metrics = task.compute_metrics()
        return {"loss": float(total) / max(1, n), **metrics} if has_loss else metrics

    # --- helpers -------------------------------------------------------------------------------------------------
    def _default_callbacks(self) -> list[Callback]:
        cfg = self.config
        cbs: list[Callback] = []
        main = self.dist is None or self.dist.is_main  # other ranks only checkpoint (collectively) and stop early
        if cfg.progress != "none" and main:
            cbs.append(ProgressLogger(cfg.progress, cfg.log_every))
        if self.run_dir and main:
            cbs.append(CSVLogger(self.run_dir))
            if cfg.record.enabled:  # before ModelCheckpoint: a checkpoint's records include its own step
                cbs.append(Recorder(self.run_dir, cfg.record))
            if cfg.tensorboard:
                cbs.append(TensorBoardLogger(self.run_dir))
        if cfg.early_stopping:
            es = cfg.early_stopping
            cbs.append(EarlyStopping(es.monitor, es.mode, es.patience, es.min_delta))
        if self.run_dir:
            from deepkit.viz.plots import CurvePlots

            if main:
                cbs.append(CurvePlots(self.run_dir))
            cbs.append(ModelCheckpoint(self.run_dir, cfg.monitor, every_n_steps=cfg.checkpoint_every))
        return cbs

    def _fire(self, hook: str, **kwargs: Any) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(self, **kwargs)

    def _autocast(self):
        precision = self.speed.precision if self.speed is not None else self.config.precision
        return speed.autocast(precision, self.device)  # before any fit, auto = fp32 (e.g. a loaded Predictor)

    def _accumulate(self, out: dict[str, torch.Tensor], n: int) -> None:
        s = self.state
        self.last_loss = out["loss"].detach() if "loss" in out else None
        for k, v in out.items():
            if k in s.sums:
                s.sums[k].add_(v.detach(), alpha=n)  # in place, on the device: no sync, no new tensor
            else:
                s.sums[k] = v.detach().float() * n
        s.count += n

    def running(self, key: str) -> float:
        """Mean of a per-step log over the epoch so far (synchronizes with the device; all ranks: last sync)."""
        sums, count = self._global_sums()
        return float(sums[key]) / count if key in sums and count else float("nan")

    def _sync_logs(self) -> None:
        """Distributed: sum the running sums over ranks (a collective: all ranks call it at the same steps)."""
        if self.dist:
            self._synced = self.dist.reduce_sums(self.state.sums, self.state.count)

    def _global_sums(self) -> tuple[dict[str, torch.Tensor], int]:
        return self._synced if self.dist else (self.state.sums, self.state.count)

    def _check_finite(self) -> None:
        """Raise if any per-step log (loss, or a term of it such as a VAE's KL) went NaN/Inf; then the task's check."""
        s = self.state
        bad = {k: self.running(k) for k in ["loss", *(k for k in self._global_sums()[0] if k != "loss")]}
        bad = {k: v for k, v in bad.items() if not math.isfinite(v)}
        if bad:
            where = f"epoch {s.epoch + 1}, step {s.step}"
            last = self.run_dir / "checkpoints" / "last" if self.run_dir else None
            hint = ""
            if last is not None:  # name the last good checkpoint only if one was written
                found = ckpt.find_checkpoint(last)
                hint = f"last good checkpoint: {found}" if found else "no checkpoint was written before it"
            raise TrainingDiverged(
                f"training {' and '.join(bad)} became {next(iter(bad.values()))} at {where}; lower "
                f"trainer.optimizer.lr, set trainer.grad_clip, or check the inputs for extreme values. {hint}".strip()
            )
        if self.task is not None and self.task.manual_optimization:
            self.task.check_training(s.step)  # e.g. GAN collapse (discriminator loss -> 0), with the starting step

    def _epoch_logs(self, task: Task, val: TensorLoader | None, opt, seconds: float) -> dict[str, float]:
        s = self.state
        sums, count = self._global_sums()
        logs: dict[str, float] = {"epoch": s.epoch + 1, "step": s.step}
        logs.update({f"train_{k}": float(v) / max(1, count) for k, v in sums.items()})
        if val is not None:
            with self.dist.eval_mode(task) if self.dist else contextlib.nullcontext():
                logs.update({f"val_{k}": v for k, v in self._run_eval(task, val).items()})
        logs["lr"] = base_lr(opt)  # the schedule's lr; groups with trainer.optimizer.lr_mult run at multiples of it
        for name, o in self.optimizers.items():
            logs[f"lr_{name}"] = base_lr(o)
        logs["samples_per_s"] = count / max(seconds, 1e-9)
        logs["time"] = s.train_time
        logs.update(speed.peak_memory(self.device))
        return logs

    def log(self, message: str, echo: bool = True) -> None:
        """Print a line (unless a progress bar owns the screen) and append it to RUN_DIR/log.txt."""
        if self.dist and not self.dist.is_main:
            return
        if echo:
            print(message, flush=True)
        if self.run_dir:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            with open(self.run_dir / "log.txt", "a") as f:
                f.write(message + "\n")

    # --- checkpoints ---------------------------------------------------------------------------------------------
    def save_checkpoint(self, directory: str | Path, resumable: bool = True, extra: dict | None = None) -> Path:
        task, s = self.task, self.state
        meta = {**self.checkpoint_meta, **(extra or {})}
        self._sync_logs()
        sums, count = self._global_sums()
        if count:
            self._check_finite()  # never replace the last good checkpoint with diverged weights
        weights, optimizer = None, self.optimizers or self.optimizer
        if self.dist:  # plain weights/optimizer state (gathered with FSDP2, a collective); rank 0 writes them
            weights, optimizer = self.dist.full_state(task.model, self.optimizer)
            if not self.dist.is_main:
                return Path(directory)
        if not resumable:
            return ckpt.save_checkpoint(directory, task.model, meta, weights=weights)
        loop = {
            "epoch": s.epoch,
            "batch": s.batch,
            "step": s.step,
            "samples": s.samples,
            "train_time": s.train_time,
            "stop": s.stop,
            "history": s.history,
            "count": count,
        }
        cbs = {k: cb.state_dict() for k, cb in zip(self._cb_keys(), self.callbacks, strict=True)}
        tensors = {f"loop.sum.{k}": v for k, v in sums.items()}
        state = {"loop": loop, "callbacks": cbs, "task": task.state_dict()}
        return ckpt.save_checkpoint(directory, task.model, meta, optimizer, state, tensors, weights=weights)

    def _cb_keys(self):
        seen = {}
        keys = []
        for cb in self.callbacks:
            n = type(cb).__name__
            keys.append(f"{n}:{seen.get(n, 0)}")
            seen[n] = seen.get(n, 0) + 1
        return keys

    def _restore(self, directory: str | Path) -> None:
        weights, _, tensors, state = ckpt.load_training_state(directory)
        # weights are copied into the live parameters (keeping their channels_last layout); optimizer state gets its
        # parameter's layout in ckpt.load_optimizer_state / match_param_layout (fused kernels pair by memory position)
        if self.dist and self.dist.strategy == "fsdp":  # plain weights into the sharded model (each rank its shard)
            optim = ckpt.unflatten_optimizer(tensors, state["optimizer"])
            self.dist.load_full_state(self.task.model, self.optimizer, weights, optim)
            ckpt.match_param_layout(self.optimizer)
        else:
            load_state_dict_checked(self.task.model, weights, str(directory))
            self.task.model.to(self.device)
        if self.optimizers:
            ckpt.load_named_optimizers(self.optimizers, tensors, state, str(directory))
        elif not (self.dist and self.dist.strategy == "fsdp"):
            ckpt.load_optimizer_state(self.optimizer, ckpt.unflatten_optimizer(tensors, state["optimizer"]))
        loop = state["loop"]
        self.state = LoopState(
            epoch=loop["epoch"],
            batch=loop["batch"],
            step=loop["step"],
            samples=loop["samples"],
            train_time=loop["train_time"],
            stop=loop["stop"],
            history=loop["history"],
            count=loop["count"],
            sums={k[len("loop.sum.") :]: v.to(self.device) for k, v in tensors.items() if k.startswith("loop.sum.")},
        )
        saved = state["callbacks"]
        for key, cb in zip(self._cb_keys(), self.callbacks, strict=True):
            if key in saved:
                cb.load_state_dict(saved[key])
        self.task.load_state_dict(state.get("task") or {})
        ckpt.restore_rng(tensors, state["rng"])
        if self.dist and not self.dist.is_main:  # the saved sums are global: count them once, on rank 0;
            self.state.sums = {k: torch.zeros_like(v) for k, v in self.state.sums.items()}
            self.state.count = 0
            seed_everything(self.config.seed + self.dist.rank + 1_000_003 * self.state.step)  # rank 0 has the saved RNG
        until = f"{self.config.epochs} epochs" + (f", {self.config.max_steps} steps" if self.config.max_steps else "")
        where = self.run_dir if self.run_dir else Path(directory)
        self.log(f"resuming {where} from {self.position()} of {until}", echo=self.config.progress != "none")


def _merge(base: dict, overrides: dict) -> dict:
    out = dict(base)
    for k, v in overrides.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out

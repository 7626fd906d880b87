"""The Python API that the CLI mirrors: ``train``, ``evaluate``, ``load`` -- once, for every family.

Data flows one way: recipe -> family -> data -> model + task -> Trainer -> run directory -> predictor. This module
looks the family up from the recipe's task name (``deepkit.families``) and never names a task or a family.
"""

from __future__ import annotations

import json
import math
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from deepkit.config import to_dict
from deepkit.data.module import DataModule
from deepkit.errors import CheckpointError, ConfigError, DataError, DeepkitError
from deepkit.families.base import Finish, Predictor, Saved
from deepkit.families.registry import families, family_of
from deepkit.models.registry import create_model, load_state_dict_checked
from deepkit.recipe import Recipe, resolve_recipe, run_recipe, split_override
from deepkit.rundir import RunLock, new_run_dir, now, read_checkpoint, warn_if_training, write_config, write_status
from deepkit.tasks.base import Task
from deepkit.train import distributed
from deepkit.train.checkpoint import find_checkpoint
from deepkit.train.trainer import Trainer, describe_position, resolve_device, seed_everything
from deepkit.weights import atomic_write_text, load_weights


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict[str, float]  # test metrics of the best checkpoint (validation metrics if no test split)
    history: list[dict[str, float]] = field(default_factory=list)
    peak_memory: dict[str, float] = field(default_factory=dict)  # peak_rss_mb (and peak_gpu_mb on GPUs) of the fit


@dataclass
class Built:
    """What a recipe builds before training: the task (around its model), the data, the recipe's callbacks."""

    task: Task
    data: DataModule
    callbacks: list


def build(rec: Recipe, saved: Saved | None = None, given: Any = None, fresh: bool = True) -> Built:
    """Data, model and task of a recipe, as ``train`` builds them (``deepkit bench`` too).

    Args:
        saved: what a trained run kept (preprocessing, tokenizer) to rebuild its data with (resume).
        given: data built by the caller (``from_arrays``) instead of the recipe's data section.
        fresh: a new run (pretrained weights are loaded); False when resuming (weights come from the checkpoint).
    """
    import time

    family = rec.family
    seed_everything(rec.trainer.seed)
    t0 = time.perf_counter()
    if given is None:
        status(rec, f"loading data: {rec.data.name} ({family.name} family, task {rec.task.name}) ...")
    data = family.build_data(rec, saved, given)
    sizes = ", ".join(f"{n:,} {split}" for split, n in data.sizes().items())
    status(rec, f"data: {sizes} ({time.perf_counter() - t0:.1f} s)")
    model = family.build_model(rec, data)
    callbacks = family.setup(rec, model, data, fresh)
    return Built(family.build_task(rec, model, data), data, callbacks)


def status(rec: Recipe, message: str) -> None:
    """A line on what the run is doing now (loading data, evaluating, writing plots), so that piped output never
    sits silent; not with ``trainer.progress=none``, and only from the first process."""
    if rec.trainer.progress != "none" and distributed.is_main_process():
        print(message, flush=True)


# --- train ---------------------------------------------------------------------------------------------------------
def train(
    recipe: str | Path | dict = "digits_cnn",
    *overrides: str,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    overwrite: bool = False,
    data: Any = None,
    callbacks: list | tuple = (),
    command: list[str] | None = None,
    **kw: Any,
) -> RunResult:
    """Train from a recipe and write a run directory.

    Args:
        recipe: a bundled recipe name (``deepkit recipes``), a YAML path, or a mapping.
        *overrides: ``"trainer.epochs=3"``-style strings.
        out: run directory (default ``runs/<recipe name>[-N]``).
        resume: a run directory to continue exactly where it stopped (its config is reused; overrides apply).
        overwrite: replace ``out`` if it holds a run.
        data: a :class:`~deepkit.data.DataBundle` (e.g. from ``from_arrays``) instead of the recipe's data section,
            or a dict of data-section overrides.
        **kw: overrides as keyword arguments: ``trainer={"epochs": 3}`` or ``**{"trainer.epochs": 3}``.

    Example:
        >>> result = deepkit.train("digits_mlp", "trainer.epochs=5")   # doctest: +SKIP
        >>> result.metrics["accuracy"]                                  # doctest: +SKIP
    """
    if isinstance(data, dict):  # `data={"batch_size": 32}` overrides the data section
        kw["data"], data = data, None
    ov = parse_overrides(overrides, kw)
    if resume is not None:
        return _resume(Path(resume), ov, data, callbacks)
    rec = resolve_recipe(recipe, ov)
    built = build(rec, given=data)
    saved = rec.family.saved(rec, built.data)
    resolve_device(rec.trainer.device)  # fail before creating a directory
    lock = RunLock(".")  # replaced by the run directory's lock on the process that creates it

    def create() -> Path:
        nonlocal lock
        run_dir = new_run_dir(out, rec.name, overwrite)
        lock = RunLock(run_dir).acquire()
        try:
            saved.write(run_dir)
            write_config(run_dir, resolved_config(rec, built.task.model), command)
            write_status(run_dir, "running", started=now())
            rec.family.on_create(rec, run_dir, built.task.model, built.data)
        except BaseException:
            lock.release()
            shutil.rmtree(run_dir, ignore_errors=True)  # nothing half-written
            raise
        return run_dir

    run_dir = create_run_dir(rec, built.data.batch_size, create)
    return _fit_and_finish(run_dir, rec, built, saved, callbacks, None, lock)


def resolved_config(rec: Recipe, model: torch.nn.Module) -> dict[str, Any]:
    """What ``config.yaml`` holds: the recipe's sections (its family's only), the model section fully resolved."""
    resolved = rec.to_dict()
    resolved["model"] = {"name": rec.model["name"], **to_dict(model.model_config)}
    return resolved


def parse_overrides(overrides: tuple[str, ...] | list[str], kw: dict[str, Any] | None = None) -> dict[str, Any]:
    """``("trainer.epochs=3", ...)`` and ``trainer={"epochs": 3}`` keyword arguments -> ``{dotted key: value}``."""
    ov: dict[str, Any] = {}
    for o in overrides:
        ov.update(dict([split_override(o)]))
    for key, value in (kw or {}).items():
        ov.update(_flatten(key, value))
    return ov


def _flatten(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, dict) and key in ("task", "data", "trainer", "model"):
        out = {}
        for k, v in value.items():
            out.update(
                _flatten(f"{key}.{k}", v)
                if isinstance(v, dict) and k in ("optimizer", "schedule")
                else {f"{key}.{k}": v}
            )
        return out
    return {key: value}


def create_run_dir(rec: Recipe, batch_size: int, create) -> Path:
    """``create()`` the run directory; launched as several processes: on rank 0 only, and every rank gets its path.

    Joins the process group first (torchrun's environment), and checks that the global batch divides over it.
    """
    ctx = distributed.setup(rec.trainer.strategy, resolve_device(rec.trainer.device))
    if ctx is None:
        return create()
    result: tuple[str | None, str | None] = (None, None)
    if ctx.is_main:
        try:
            distributed.check_global_batch(batch_size, ctx.world_size)
            result = (str(create()), None)
        except DeepkitError as e:
            distributed.broadcast_object((None, str(e)))  # the other ranks stop with the same message
            distributed.teardown()
            raise
    path, error = distributed.broadcast_object(result)
    if error is not None:
        distributed.teardown()  # leave the group before exiting, so no rank aborts in the group's destructor
        raise ConfigError(error)  # only rank 0 prints it (cli.main)
    return Path(path)


def check_launch(recipe: str | None, overrides: list[str], resume: Path | None, nproc: int) -> None:
    """Before starting ``nproc`` processes: the recipe resolves, and its batch splits evenly over them."""
    ov = parse_overrides(overrides)
    if resume is not None:
        if not (Path(resume) / "config.yaml").is_file():
            raise ConfigError(f"cannot resume {resume}: no config.yaml there (expected a deepkit run directory)")
        rec = run_recipe(resume, ov)
    else:
        rec = resolve_recipe(recipe or "", ov)
    if rec.trainer.strategy == "none":
        raise ConfigError(f"--nproc {nproc} needs trainer.strategy auto, ddp or fsdp (got none)")
    distributed.check_global_batch(rec.data.batch_size, nproc)


def _resume(run_dir: Path, ov: dict[str, Any], data: Any, callbacks) -> RunResult:
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"cannot resume {run_dir}: no config.yaml there (expected a deepkit run directory)")
    lock = RunLock(run_dir).acquire() if distributed.is_main_process() else RunLock(run_dir)
    try:
        last = find_checkpoint(run_dir / "checkpoints" / "last")
        if last is None or not (last / "state.json").is_file():
            raise CheckpointError(
                f"cannot resume {run_dir}: no resumable checkpoint in {run_dir / 'checkpoints' / 'last'}"
            )
        rec = run_recipe(run_dir, ov)
        _, meta = load_weights(last / "model.safetensors")
        saved = rec.family.load_saved(last, meta)
        built = build(rec, saved=saved, given=data, fresh=False)
        if distributed.is_main_process():
            write_status(run_dir, "running", resumed=now())
    except BaseException:
        lock.release()
        raise
    return _fit_and_finish(run_dir, rec, built, saved, callbacks, last, lock)


def _fit_and_finish(
    run_dir: Path, rec: Recipe, built: Built, saved: Saved, callbacks, resume_from: Path | None, lock: RunLock
) -> RunResult:
    family = rec.family
    try:
        callbacks = [*family.run_callbacks(rec, run_dir), *callbacks, *built.callbacks]
        trainer = Trainer(rec.trainer, run_dir=run_dir, callbacks=callbacks)
        trainer.checkpoint_meta = {**saved.meta(), "task": to_dict(rec.task), "recipe": rec.name}
        for note in built.data.notes:
            trainer.log(note)
        try:
            history = trainer.fit(built.task, built.data, resume=resume_from)
            if not rank0_goes_on(trainer):
                return RunResult(run_dir, {}, history)
            task = built.task
            if trainer.dist and trainer.dist.strategy == "fsdp":  # the trained model is sharded: evaluate a plain one
                task = family.build_task(rec, family.build_model(rec, built.data), built.data)
            metrics = _finish(run_dir, rec, task, built.data, trainer)
        except KeyboardInterrupt as e:
            if not distributed.is_main_process():
                raise
            write_status(run_dir, "interrupted")
            message = interrupted_message(run_dir, trainer)
            trainer.log(message, echo=False)
            raise KeyboardInterrupt(message) from e
        except BaseException as e:
            if distributed.is_main_process():
                write_status(run_dir, "failed", error=f"{type(e).__name__}: {e}")
            raise
        finally:
            distributed.teardown()
        write_status(run_dir, "finished", metrics=metrics, peak_memory=trainer.peak_memory)
    finally:
        lock.release()
    return RunResult(run_dir, metrics, history, trainer.peak_memory)


def interrupted_message(run_dir: Path, trainer: Trainer) -> str:
    """What Ctrl-C prints: where the run stopped, where its last checkpoint is, and the command that continues it."""
    s = trainer.state
    started = s.step or s.batch or s.epoch
    where = f"interrupted at {trainer.position()}" if started else "interrupted before the first step"
    last = find_checkpoint(run_dir / "checkpoints" / "last")
    try:
        loop = json.loads((last / "state.json").read_text())["loop"] if last else None
    except (OSError, ValueError, KeyError):
        loop = None
    if loop is None:
        return f"{where}; no checkpoint yet, so there is nothing to resume"
    at = describe_position(loop["epoch"], loop["batch"], loop["step"], trainer.batches_per_epoch)
    command = f"deepkit train --resume {shlex.quote(str(run_dir))}"
    return f"{where}; last checkpoint: {last}, at {at}; continue with: {command}"


def rank0_goes_on(trainer: Trainer) -> bool:
    """After ``fit`` in several processes: leave the process group; only rank 0 goes on (test evaluation, files)."""
    if trainer.dist is None:
        return True
    distributed.teardown()
    return trainer.dist.is_main


def _finish(run_dir: Path, rec: Recipe, task: Task, data: DataModule, trainer: Trainer) -> dict[str, float]:
    """Evaluate the best checkpoint (test split, else val, else train); the family's report; results.json."""

    from deepkit.rundir import checkpoint_summary

    best = find_checkpoint(run_dir / "checkpoints" / "best")
    weights, meta = load_weights(best / "model.safetensors")
    load_state_dict_checked(task.model, weights, str(best))
    split = data.first_split("test", "val", "train")
    n = data.sizes()[split]
    status(rec, f"evaluating the {checkpoint_summary(best, meta)} on the {split} split ({n:,} samples) ...")
    metrics = trainer.evaluate(task, data, split)
    status(rec, "writing the report: results.json, plots/, samples/ ...")
    extra = rec.family.report(Finish(run_dir, rec, task, data, trainer, split, metrics))
    metrics = {k: v for k, v in metrics.items() if math.isfinite(v)}
    atomic_write_text(run_dir / "results.json", json.dumps({"split": split, "metrics": metrics, **extra}, indent=1))
    return metrics


# --- load / evaluate -----------------------------------------------------------------------------------------------
def load(run_dir: str | Path, checkpoint: str = "best") -> Predictor:
    """The predictor of a trained run (or of a checkpoint directory / model.safetensors written by deepkit).

    Its verbs depend on the run's family: ``predict`` (classifiers, regressors), ``generate``/``chat`` (language
    models), ``translate``, ``forecast``, ``sample``/``encode`` (generative models), ``neighbours``/``analogy``
    (word vectors). A file a family reads directly (e.g. word vectors in text format) loads too.
    """
    path = Path(run_dir)
    if not path.exists():
        raise CheckpointError(f"no run directory or checkpoint at {path} (expected the --out of deepkit train)")
    if path.is_dir() and not any((path / p).exists() for p in ("config.yaml", "checkpoints")):
        for family in families():  # a foreign checkpoint directory a family reads (a Hugging Face one)
            predictor = family.open_file(path)
            if predictor is not None:
                return predictor
        if not (path / "model.safetensors").exists():
            others = "".join(f", or {f.opens}" for f in families() if f.opens)
            raise ConfigError(f"{path} is not a run directory (no config.yaml); expected the --out of deepkit train"
                              + others)  # fmt: skip
    try:
        found, state, meta = read_checkpoint(path, checkpoint)
    except CheckpointError:
        for family in families():
            predictor = family.open_file(path)
            if predictor is not None:
                return predictor
        raise
    if path.is_dir():
        warn_if_training(path, found, meta)
    task_name = (meta.get("task") or {}).get("name")
    if not meta.get("model") or not task_name:
        raise CheckpointError(
            f"{found} has no deepkit metadata (model name, task); "
            "use create_model(name, weights=...) for plain weight files"
        )
    family = family_of(task_name)
    saved = family.load_saved(found, meta)
    model = create_model(meta["model"], **meta.get("model_config", {}))
    load_state_dict_checked(model, state, str(found))
    model.eval()
    run = path if path.is_dir() and (path / "config.yaml").is_file() else None
    return family.predictor(model, task_name, saved, run)


@dataclass
class OpenRun:
    """A trained run with its data rebuilt as it was (same preprocessing/tokenizer): for evaluation and reports."""

    recipe: Recipe
    saved: Saved
    task: Task
    data: DataModule
    checkpoint: Path


def open_run(run_dir: str | Path, data_overrides: dict[str, Any] | list[str] = (), checkpoint: str = "best") -> OpenRun:
    """The run's recipe (with ``data_overrides``: ``{"path": "other.csv"}`` or ``["path=other.csv"]``), its
    checkpoint's weights in the family's task, and its data rebuilt with the run's saved preprocessing."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"{run_dir} is not a run directory (no config.yaml); expected the --out of deepkit train")
    items = data_overrides if isinstance(data_overrides, dict) else parse_overrides(list(data_overrides))
    items = {(k if k.startswith("data.") else f"data.{k}"): v for k, v in items.items()}
    rec = run_recipe(run_dir, items)
    found, state, meta = read_checkpoint(run_dir, checkpoint)
    warn_if_training(run_dir, found, meta)
    family = rec.family
    saved = family.load_saved(found, meta)
    data = family.build_data(rec, saved)
    model = create_model(meta["model"], **meta.get("model_config", {}))
    load_state_dict_checked(model, state, str(found))
    return OpenRun(rec, saved, family.build_task(rec, model, data), data, found)


def evaluate(
    run_dir: str | Path, data_overrides: dict[str, Any] | list[str] = (), split: str = "test", checkpoint: str = "best"
) -> dict[str, float]:
    """Metrics of a run's checkpoint on a split of its data (or other data given by ``data_overrides``); a run
    without a test split reports its validation split."""
    return _evaluate(open_run(run_dir, data_overrides, checkpoint), split)


def evaluation_report(
    run_dir: str | Path, data_overrides: dict[str, Any] | list[str] = (), split: str = "test", checkpoint: str = "best"
) -> tuple[dict[str, float], str | None]:
    """:func:`evaluate`'s metrics and the family's text of them for people (the COCO table, per-class IoU with the
    rule of the means), or None where one line per metric says it all (``deepkit eval``)."""
    run = open_run(run_dir, data_overrides, checkpoint)
    metrics = _evaluate(run, split)
    return metrics, run.recipe.family.metrics_text(metrics, run)


def _evaluate(run: OpenRun, split: str) -> dict[str, float]:
    if split == "test" and not run.data.has("test") and run.data.has("val"):
        split = "val"  # corpora without a test part (Tiny Shakespeare, word2vec): the held-out validation
    if not run.data.has(split):
        raise DataError(f"the data has no '{split}' split")
    trainer = Trainer(progress="none")
    trainer.device = resolve_device("auto")
    return {k: v for k, v in trainer.evaluate(run.task, run.data, split).items() if math.isfinite(v)}

"""The Python API that the CLI mirrors: ``train``, ``load``, ``evaluate``.

Data flows one way: recipe -> data -> model + task -> Trainer -> run directory -> predict / eval.
"""

from __future__ import annotations

import datetime
import json
import math
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from deepkit import __version__
from deepkit.config import field_types, to_dict
from deepkit.data.build import DataBundle, DataConfig, build_data
from deepkit.data.inputs import read_inputs
from deepkit.data.preprocess import Preprocessing
from deepkit.errors import CheckpointError, ConfigError, DeepkitError, ShapeError
from deepkit.generative import GENERATIVE_TASKS, bind_generative_model, prepare_data
from deepkit.models.registry import create_model, get_entry
from deepkit.recipe import Recipe, apply_overrides, read_recipe_file, resolve_recipe, validate
from deepkit.tasks import Task, TaskConfig, build_task
from deepkit.train import distributed
from deepkit.train.checkpoint import find_checkpoint
from deepkit.train.trainer import Trainer, resolve_device, seed_everything
from deepkit.weights import atomic_write_text, load_weights


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict[str, float]  # test metrics of the best checkpoint (validation metrics if no test split)
    history: list[dict[str, float]] = field(default_factory=list)
    peak_memory: dict[str, float] = field(default_factory=dict)  # peak_rss_mb (and peak_gpu_mb on GPUs) of the fit


# --- model <-> data ------------------------------------------------------------------------------------------------
def bind_model(model_section: dict[str, Any], data: DataBundle, weights: str | None = None) -> torch.nn.Module:
    """Create the model, filling ``in_features``/``in_channels``/``num_classes`` from the data and checking them."""
    name = model_section["name"]
    if data.task in GENERATIVE_TASKS:  # images in, images out: sized from the data, no output-width check
        return bind_generative_model(model_section, data, weights)
    overrides = {k: v for k, v in model_section.items() if k != "name"}
    fields = field_types(get_entry(name).config_cls)
    shape = list(data.preprocessing.input_shape)
    desc = f"{shape[0]}-channel {shape[1]}×{shape[2]} images" if len(shape) == 3 else f"{int(np.prod(shape))} features"
    inferred = {}
    if "in_features" in fields:
        inferred["in_features"] = int(np.prod(shape))
    if "in_channels" in fields:
        if len(shape) != 3:
            raise ShapeError(
                f"model '{name}' takes images (channels, height, width), but the data has {desc}; "
                "use an MLP for tabular data"
            )
        inferred["in_channels"] = shape[0]
        if "input_size" in fields:
            inferred["input_size"] = shape[1:]
    if "num_classes" in fields:
        inferred["num_classes"] = data.num_outputs
    for key, value in inferred.items():
        if key in overrides and overrides[key] != value:
            raise ShapeError(
                f"model.{key}={overrides[key]} does not fit the data ({desc}, {data.num_outputs} outputs); "
                f"expected {key}={value} (or leave it out to infer it)"
            )
        overrides[key] = value
    model = create_model(name, weights=weights, **overrides)
    model.check_input(tuple(shape))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, *shape))
    except RuntimeError as e:
        raise ShapeError(f"model '{name}' cannot take the data ({desc}): {str(e).splitlines()[0]}") from None
    model.train(was_training)
    if out.shape[-1] != data.num_outputs:
        raise ShapeError(f"model '{name}' outputs {out.shape[-1]} values per sample, the task needs {data.num_outputs}")
    return model


# --- run directories -----------------------------------------------------------------------------------------------
def _git_commit() -> str | None:
    try:
        return (
            subprocess.run(
                ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        return None


def new_run_dir(out: str | Path | None, name: str, overwrite: bool) -> Path:
    if out is not None:
        path = Path(out)
        if path.exists() and any(path.iterdir()):
            if not overwrite:
                raise ConfigError(
                    f"run directory {path} already exists; pass --overwrite to replace it, "
                    f"--resume {path} to continue it, or another --out"
                )
            if not (path / "run.json").is_file() and not (path / "config.yaml").is_file():
                raise ConfigError(f"refusing to overwrite {path}: it is not a deepkit run directory")
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


def _write_status(run_dir: Path, status: str, **extra: Any) -> None:
    path = run_dir / "run.json"
    info = json.loads(path.read_text()) if path.is_file() else {}
    info.update(status=status, updated=datetime.datetime.now().isoformat(timespec="seconds"), **extra)
    atomic_write_text(path, json.dumps(info, indent=1))


def _write_config(run_dir: Path, recipe: Recipe, model: torch.nn.Module, command: list[str] | None) -> None:
    resolved = recipe.to_dict()
    resolved["model"] = {"name": recipe.model["name"], **to_dict(model.model_config)}
    resolved["meta"] = {
        "git_commit": _git_commit(),
        "command": " ".join(command or sys.argv),
        "deepkit": __version__,
        "torch": str(torch.__version__),
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(resolved, sort_keys=False))


# --- train ---------------------------------------------------------------------------------------------------------
def train(
    recipe: str | Path | dict = "digits_cnn",
    *overrides: str,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    overwrite: bool = False,
    data: DataBundle | None = None,
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
    ov: dict[str, Any] = {}
    for o in overrides:
        ov.update(dict([_split(o)]))
    for key, value in kw.items():
        ov.update(_flatten(key, value))
    if resume is not None:
        return _resume(Path(resume), ov, data, callbacks)
    rec = resolve_recipe(recipe, ov)
    if _is_sequence_task(rec.task.name):  # text classification, language models, forecasting (sequence_api.py)
        from deepkit import sequence_api

        return sequence_api.train(rec, out=out, overwrite=overwrite, callbacks=callbacks, command=command)
    task, bundle, extra = build_training(rec, data)
    callbacks = [*callbacks, *extra]
    model = task.model
    resolve_device(rec.trainer.device)  # fail before creating a directory

    def create() -> Path:
        run_dir = new_run_dir(out, rec.name, overwrite)
        try:
            _write_config(run_dir, rec, model, command)
            _write_status(run_dir, "running", started=datetime.datetime.now().isoformat(timespec="seconds"))
        except BaseException:
            shutil.rmtree(run_dir, ignore_errors=True)  # nothing half-written
            raise
        return run_dir

    run_dir = create_run_dir(rec, bundle.batch_size, create)
    return _fit_and_finish(run_dir, rec, task, bundle, callbacks, resume_from=None)


def build_training(rec: Recipe, data: DataBundle | None = None) -> tuple[Task, DataBundle, list]:
    """Data, model and task of a (non-sequence) recipe, as ``train`` builds them; also used by ``deepkit bench``.

    Returns the task, the data bundle and the callbacks the recipe needs (fine-tuning's backbone freezer).
    """
    seed_everything(rec.trainer.seed)
    bundle = data if data is not None else build_data(rec.data, rec.task.name)
    if data is not None:  # record what was really trained on, not the recipe's default data section
        rec.data = bundle.config or DataConfig(name="arrays", batch_size=bundle.batch_size)
    if rec.task.name in GENERATIVE_TASKS:
        bundle = prepare_data(bundle, rec.task)
    model = bind_model(rec.model, bundle)
    callbacks = _setup_finetune(rec, model, load=True)
    task = build_task(rec.task, model, bundle.preprocessing)
    _attach_augment(task, rec, bundle)
    return task, bundle, callbacks


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
    ov = dict(_split(o) for o in overrides)
    if resume is not None:
        if not (Path(resume) / "config.yaml").is_file():
            raise ConfigError(f"cannot resume {resume}: no config.yaml there (expected a deepkit run directory)")
        rec = resolve_recipe(read_recipe_file(Path(resume) / "config.yaml"), ov)
    else:
        rec = resolve_recipe(recipe or "", ov)
    if rec.trainer.strategy == "none":
        raise ConfigError(f"--nproc {nproc} needs trainer.strategy auto, ddp or fsdp (got none)")
    distributed.check_global_batch(rec.data.batch_size, nproc)


def _resume(run_dir: Path, ov: dict[str, Any], data: DataBundle | None, callbacks) -> RunResult:
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"cannot resume {run_dir}: no config.yaml there (expected a deepkit run directory)")
    last = find_checkpoint(run_dir / "checkpoints" / "last")
    if last is None or not (last / "state.json").is_file():
        raise CheckpointError(f"cannot resume {run_dir}: no resumable checkpoint in {run_dir / 'checkpoints' / 'last'}")
    rec = resolve_recipe(read_recipe_file(run_dir / "config.yaml"), ov)
    if _is_sequence_task(rec.task.name):
        from deepkit import sequence_api

        return sequence_api.resume(run_dir, ov, callbacks)
    _, meta = load_weights(last / "model.safetensors")
    prep = Preprocessing.from_dict(meta["preprocessing"])
    bundle = data if data is not None else build_data(rec.data, rec.task.name, preprocessing=prep)
    if rec.task.name in GENERATIVE_TASKS:
        bundle = prepare_data(bundle, rec.task)
    model = bind_model(rec.model, bundle)
    callbacks = [*callbacks, *_setup_finetune(rec, model, load=False)]  # weights come from the checkpoint
    task = build_task(rec.task, model, prep)
    _attach_augment(task, rec, bundle)
    if distributed.is_main_process():
        _write_status(run_dir, "running", resumed=datetime.datetime.now().isoformat(timespec="seconds"))
    return _fit_and_finish(run_dir, rec, task, bundle, callbacks, resume_from=last)


def _setup_finetune(rec: Recipe, model: torch.nn.Module, load: bool) -> list:
    """A recipe's ``finetune`` section: load pretrained weights, set backbone lr multipliers, freeze callback."""
    from deepkit.train.finetune import BackboneFreezer, finetune_lr_mult, load_pretrained

    ft = rec.finetune
    if ft is None:
        return []
    if load and ft.weights:
        load_pretrained(model, ft.weights, reset_head=ft.reset_head, trust_pickle=ft.trust_pickle, reset=ft.reset)
    mult = finetune_lr_mult(model, ft)
    if mult and not rec.trainer.optimizer.lr_mult:
        rec.trainer.optimizer.lr_mult = mult
    if not (ft.freeze_backbone_epochs or ft.freeze):
        return []
    return [BackboneFreezer(ft.freeze_backbone_epochs, ft.freeze, ft.reset)]


def _attach_augment(task: Task, rec: Recipe, bundle: DataBundle) -> None:
    """``data.augment`` -> a transform the task applies to training batches only; ``data.channels_last``."""
    from deepkit.data.augment import build_augment

    task.train_transform = build_augment(rec.data.augment, bundle.preprocessing, bundle.num_classes)
    if rec.data.channels_last:  # weights in NHWC make convolutions run NHWC (inputs are converted on the fly)
        task.model.to(memory_format=torch.channels_last)


def _fit_and_finish(run_dir: Path, rec: Recipe, task: Task, bundle: DataBundle, callbacks, resume_from) -> RunResult:
    if rec.task.name in GENERATIVE_TASKS:
        from deepkit.generative import generative_callbacks

        callbacks = [*generative_callbacks(run_dir), *callbacks]
        task.preview = bundle.val[0][:16] if bundle.val is not None else bundle.train[0][:16]
    trainer = Trainer(rec.trainer, run_dir=run_dir, callbacks=callbacks)
    trainer.checkpoint_meta = {
        "preprocessing": bundle.preprocessing.to_dict(),
        "task": to_dict(rec.task),
        "recipe": rec.name,
    }
    try:
        history = trainer.fit(task, bundle, resume=resume_from)
        if not rank0_goes_on(trainer):
            return RunResult(run_dir, {}, history)
        if trainer.dist and trainer.dist.strategy == "fsdp":  # the trained model is sharded: evaluate a plain one
            task = _plain_copy(task, rec, bundle)
        metrics = _finish(run_dir, rec, task, bundle, trainer)
    except KeyboardInterrupt:
        if distributed.is_main_process():
            _write_status(run_dir, "interrupted")
        raise
    except BaseException as e:
        if distributed.is_main_process():
            _write_status(run_dir, "failed", error=f"{type(e).__name__}: {e}")
        raise
    finally:
        distributed.teardown()
    _write_status(run_dir, "finished", metrics=metrics, peak_memory=trainer.peak_memory)
    return RunResult(run_dir, metrics, history, trainer.peak_memory)


def rank0_goes_on(trainer: Trainer) -> bool:
    """After ``fit`` in several processes: leave the process group; only rank 0 goes on (test evaluation, files)."""
    if trainer.dist is None:
        return True
    distributed.teardown()
    return trainer.dist.is_main


def _plain_copy(task: Task, rec: Recipe, bundle: DataBundle) -> Task:
    """A new task with an unsharded model of the same architecture (weights are loaded from the checkpoint)."""
    plain = build_task(rec.task, bind_model(rec.model, bundle), bundle.preprocessing)
    if hasattr(task, "preview"):
        plain.preview = task.preview
    return plain


def _finish(run_dir: Path, rec: Recipe, task: Task, bundle: DataBundle, trainer: Trainer) -> dict[str, float]:
    """Evaluate the best checkpoint on the test split, write plots, sample inputs and results.json."""
    if rec.task.name in GENERATIVE_TASKS:
        from deepkit import generative

        return generative.finish(run_dir, rec, task, bundle, trainer)
    from deepkit.models.registry import load_state_dict_checked
    from deepkit.viz.plots import plot_confusion_matrix, plot_pred_vs_true

    best = find_checkpoint(run_dir / "checkpoints" / "best")
    weights, _ = load_weights(best / "model.safetensors")
    load_state_dict_checked(task.model, weights, str(best))
    split = "test" if bundle.test is not None else ("val" if bundle.val is not None else "train")
    metrics = trainer.evaluate(task, bundle, split)
    x, y = bundle.split(split)
    pred = trainer.predict(task, x)
    plots = run_dir / "plots"
    plots.mkdir(exist_ok=True)
    if rec.task.name == "classification":
        names = bundle.preprocessing.class_names
        cm = np.zeros((len(names), len(names)), dtype=np.int64)
        np.add.at(cm, (y.cpu().numpy(), pred.argmax(1).numpy()), 1)
        plot_confusion_matrix(
            cm, names, plots / "confusion_matrix.png", f"confusion matrix ({split}, {len(y)} samples)"
        )
        (run_dir / "confusion_matrix.json").write_text(json.dumps({"classes": names, "matrix": cm.tolist()}))
    elif rec.task.name == "regression":
        plot_pred_vs_true(pred.numpy(), y.cpu().numpy(), plots / "pred_vs_true.png", f"predicted vs true ({split})")
    _write_samples(run_dir, bundle, x[:8], y[:8])
    metrics = {k: v for k, v in metrics.items() if math.isfinite(v)}
    atomic_write_text(run_dir / "results.json", json.dumps({"split": split, "metrics": metrics}, indent=1))
    return metrics


def _write_samples(run_dir: Path, bundle: DataBundle, x: torch.Tensor, y: torch.Tensor) -> None:
    """A few held-out inputs as files, ready for ``deepkit predict RUN_DIR samples/*``."""
    prep = bundle.preprocessing
    out = run_dir / "samples"
    out.mkdir(exist_ok=True)
    raw = prep.inverse_transform(x.cpu().float())
    names = prep.class_names
    if prep.kind == "image" and raw.ndim == 4 and raw.shape[1] in (1, 3):
        from PIL import Image

        for i, (img, label) in enumerate(zip(raw, y.cpu(), strict=True)):
            tag = names[int(label)] if names and bundle.task == "classification" else f"{float(label):g}"
            arr = (img.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
            Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr).save(out / f"test_{i:02d}_label_{tag}.png")
    elif prep.kind == "tabular":
        cols = prep.feature_names or [f"x{i}" for i in range(raw.shape[1])]
        lines = [",".join(cols)] + [",".join(f"{v:.6g}" for v in row.tolist()) for row in raw]
        (out / "test_rows.csv").write_text("\n".join(lines) + "\n")


def _is_sequence_task(name: str) -> bool:
    from deepkit.data.sequences import SEQUENCE_TASKS

    return name in SEQUENCE_TASKS


def _split(text: str) -> tuple[str, Any]:
    from deepkit.recipe import _split_override

    return _split_override(text)


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


# --- load / predict / evaluate ------------------------------------------------------------------------------------
class Predictor:
    """A trained model with its preprocessing: ``predict`` raw inputs the way training saw them.

    Example:
        >>> p = deepkit.load("runs/demo")          # doctest: +SKIP
        >>> p.predict(images)                      # doctest: +SKIP  (class indices)
    """

    def __init__(
        self,
        model: torch.nn.Module,
        task: Task,
        preprocessing: Preprocessing,
        task_name: str,
        run_dir: Path | None = None,
    ):
        self.model, self.task, self.preprocessing, self.task_name = model, task, preprocessing, task_name
        self.run_dir = run_dir
        self.trainer = Trainer(progress="none", device="auto")
        self.trainer.device = resolve_device("auto")

    @property
    def class_names(self) -> list[str] | None:
        return self.preprocessing.class_names

    def _prepare(self, x) -> torch.Tensor:
        t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x, dtype=torch.float32)
        shape = tuple(self.preprocessing.input_shape)
        if tuple(t.shape) == shape:
            t = t[None]
        self.preprocessing.check_shape(t, "input")
        return self.preprocessing.transform(t)

    def predict_proba(self, x) -> np.ndarray:
        """Class probabilities (N, K) for classification, P(class 1) (N,) for binary; raw inputs (N, *shape)."""
        if self.task_name == "regression":
            raise ConfigError("predict_proba is for classification runs; use predict for regression")
        return self.trainer.predict(self.task, self._prepare(x)).numpy()

    def predict(self, x) -> np.ndarray:
        """Class indices (classification) or values in the target's units (regression) for raw inputs."""
        out = self.trainer.predict(self.task, self._prepare(x)).numpy()
        if self.task_name == "classification":
            return out.argmax(1)
        if self.task_name == "binary":
            return (out > 0.5).astype(np.int64)
        return out[:, 0] if out.ndim == 2 and out.shape[1] == 1 else out

    def predict_files(self, paths: list[str | Path], top_k: int = 1) -> list[dict[str, Any]]:
        """Predictions for image / .npy / CSV files, one record per input."""
        names, x = read_inputs(paths, self.preprocessing)
        out = self.trainer.predict(self.task, self.preprocessing.transform(x)).numpy()
        records = []
        for name, row in zip(names, out, strict=True):
            if self.task_name == "classification":
                order = np.argsort(-row)[:top_k]
                top = [{"class": self.class_names[i], "probability": float(row[i])} for i in order]
                records.append({"input": name, **top[0], **({"top_k": top} if top_k > 1 else {})})
            elif self.task_name == "binary":
                p1 = float(row)
                cls = 1 if p1 > 0.5 else 0
                records.append({"input": name, "class": self.class_names[cls], "probability": p1 if cls else 1 - p1})
            else:
                vals = np.atleast_1d(row).tolist()
                records.append({"input": name, "value": vals[0] if len(vals) == 1 else vals})
        return records


def load(run_dir: str | Path, checkpoint: str = "best") -> Predictor:
    """Load a trained run (or a checkpoint directory / model.safetensors written by deepkit) for prediction."""
    run_dir = Path(run_dir)
    path = run_dir
    if run_dir.is_dir() and (run_dir / "checkpoints").is_dir():
        found = find_checkpoint(run_dir / "checkpoints" / checkpoint)
        if found is None:
            raise CheckpointError(f"{run_dir} has no '{checkpoint}' checkpoint (did the run finish an epoch?)")
        path = found
    state, meta = load_weights(path)
    if "sequence" in meta:  # a text / language-model / forecasting run
        from deepkit import sequence_api

        return sequence_api.load(path, state, meta)
    if (meta.get("task") or {}).get("name") in GENERATIVE_TASKS:
        raise ConfigError(
            f"{path} holds a {meta['task']['name']} model; use `deepkit sample` / `deepkit embed` / `deepkit eval` "
            "(predict is for classifiers and regressors)"
        )
    if not meta.get("model") or "preprocessing" not in meta:
        raise CheckpointError(
            f"{path} has no deepkit metadata (model name, preprocessing); "
            "use create_model(name, weights=...) for plain weight files"
        )
    model = create_model(meta["model"], **meta.get("model_config", {}))
    from deepkit.models.registry import load_state_dict_checked

    load_state_dict_checked(model, state, str(path))
    model.eval()
    prep = Preprocessing.from_dict(meta["preprocessing"])
    task_cfg = TaskConfig(**{k: v for k, v in meta.get("task", {}).items() if k in field_types(TaskConfig)})
    task = build_task(task_cfg, model, prep)
    return Predictor(model, task, prep, task_cfg.name, run_dir if run_dir.is_dir() else None)


def evaluate(
    run_dir: str | Path, data_overrides: dict[str, Any] | list[str] = (), split: str = "test", checkpoint: str = "best"
) -> dict[str, float]:
    """Metrics of a run's checkpoint on a split of its data (or other data given by ``data_overrides``)."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"{run_dir} is not a run directory (no config.yaml)")
    if isinstance(data_overrides, dict):
        items = data_overrides
    else:
        items = dict(_split(o) for o in data_overrides)
    items = {(k if k.startswith("data.") else f"data.{k}"): v for k, v in items.items()}
    rec = validate(apply_overrides(read_recipe_file(run_dir / "config.yaml"), items))
    if _is_sequence_task(rec.task.name):
        from deepkit import sequence_api

        return sequence_api.evaluate(run_dir, rec, split, checkpoint)
    if rec.task.name in GENERATIVE_TASKS:
        from deepkit import generative

        return generative.evaluate(run_dir, items, split, checkpoint)
    predictor = load(run_dir, checkpoint)
    bundle = build_data(rec.data, rec.task.name, preprocessing=predictor.preprocessing)
    if bundle.split(split) is None:
        raise DeepkitError(f"the data has no '{split}' split")
    return {k: v for k, v in predictor.trainer.evaluate(predictor.task, bundle, split).items() if math.isfinite(v)}

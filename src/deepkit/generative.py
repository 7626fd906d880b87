"""Generative runs (GAN, VAE, autoencoder): data in pixel space, model binding, end-of-run evaluation,
``deepkit sample`` and ``deepkit embed``.

The Trainer, checkpoints and run directories are the ordinary ones; this module supplies what differs:

* data: images in [0, 1] (the generators' output space), normalization off; a VAE's val/test splits are binarized
  once with a fixed seed; an anomaly-detection autoencoder trains without its anomaly class.
* evaluation at the end: -ELBO and importance-weighted NLL (VAE); ROC-AUC of reconstruction error with a threshold
  from validation data, plus a 2-D latent scatter next to PCA (autoencoder); sample grids (all).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepkit.data.build import DataBundle, build_data
from deepkit.data.preprocess import Preprocessing
from deepkit.errors import CheckpointError, ConfigError, DataError, ShapeError
from deepkit.models.registry import create_model, get_entry, load_state_dict_checked
from deepkit.tasks import task_options
from deepkit.tasks.vae import binarize
from deepkit.weights import atomic_write_text, load_weights

GENERATIVE_TASKS = ("gan", "vae", "autoencoder")
EVAL_SEED = 1234  # fixed binarization of the VAE's held-out splits and fixed noise for grids


# --- data and model ------------------------------------------------------------------------------------------------
def prepare_data(bundle: DataBundle, task_cfg) -> DataBundle:
    """Pixel-space splits in [0, 1] for a generative task (see the module docstring)."""
    prep = bundle.preprocessing
    if prep.kind != "image" or len(prep.input_shape) != 3:
        raise DataError(
            f"task '{task_cfg.name}' generates images; the data has per-sample shape {tuple(prep.input_shape)} "
            f"({prep.kind}); expected images (channels, height, width), e.g. data.name=mnist"
        )
    g = torch.Generator().manual_seed(EVAL_SEED)

    def pixels(split, held_out: bool):
        if split is None:
            return None
        x, y = prep.inverse_transform(split[0].float()).clamp(0, 1), split[1]
        if task_cfg.name == "vae" and task_options(task_cfg).likelihood == "bernoulli":
            if task_options(task_cfg).binarize == "threshold":
                x = binarize(x, "threshold")
            elif held_out:  # dynamic: training batches are re-drawn each step, held-out splits are drawn once
                x = binarize(x.cpu(), "dynamic", g).to(x.device)
        return x, y

    train, val, test = pixels(bundle.train, False), pixels(bundle.val, True), pixels(bundle.test, True)
    extras = dict(bundle.extras)
    k = task_options(task_cfg).anomaly_class if task_cfg.name == "autoencoder" else None
    if k is not None:
        names = prep.class_names or []
        if not 0 <= k < len(names):
            raise ConfigError(f"task.autoencoder.anomaly_class={k}; expected a class index 0..{len(names) - 1}")
        if val is None or test is None:
            raise ConfigError("anomaly detection needs validation and test splits (data.val_split > 0)")
        train = (train[0][train[1] != k], train[1][train[1] != k])
        extras["val_anomalies"] = (val[0][val[1] == k], val[1][val[1] == k])
        val = (val[0][val[1] != k], val[1][val[1] != k])
    pixel_prep = Preprocessing(
        kind="image", input_shape=list(prep.input_shape), normalize="none", class_names=prep.class_names
    )
    return DataBundle(
        bundle.task, train, val, test, pixel_prep, bundle.batch_size, bundle.eval_batch_size, extras=extras
    )


def bind_generative_model(model_section: dict[str, Any], data: DataBundle, weights: str | None = None):
    """Create a generative model sized from the data (channels, image size; classes for a conditional GAN)."""
    name = model_section["name"]
    entry = get_entry(name)
    overrides = {k: v for k, v in model_section.items() if k != "name"}
    c, h, w = data.preprocessing.input_shape
    inferred: dict[str, Any] = {"in_channels": c}
    fields = set(entry.config_cls.__dataclass_fields__)
    if "input_size" in fields:
        inferred["input_size"] = [h, w]
    elif "image_size" in fields:
        if h != w:
            raise ShapeError(f"model '{name}' makes square images; the data has {h}×{w} images")
        inferred["image_size"] = h
    if "num_classes" in fields and (overrides.get("num_classes") or entry.defaults.get("num_classes")):
        inferred["num_classes"] = len(data.preprocessing.class_names or [])
    for key, value in inferred.items():
        if key in overrides and overrides[key] != value:
            raise ShapeError(f"model.{key}={overrides[key]} does not fit the data; expected {key}={value}")
        overrides[key] = value
    model = create_model(name, weights=weights, **overrides)
    model.check_input((c, h, w))
    return model


def generative_callbacks(run_dir: Path) -> list:
    from deepkit.viz.grids import SampleGrids

    return [SampleGrids(run_dir)]


# --- end of training -----------------------------------------------------------------------------------------------
def finish(run_dir: Path, rec, task, bundle: DataBundle, trainer) -> dict[str, float]:
    """Evaluate the best checkpoint on the test split; write grids, plots and results.json."""
    from deepkit.train.checkpoint import find_checkpoint
    from deepkit.viz.grids import save_grid

    best = find_checkpoint(run_dir / "checkpoints" / "best")
    weights, _ = load_weights(best / "model.safetensors")
    load_state_dict_checked(task.model, weights, str(best))
    split = "test" if bundle.test is not None else ("val" if bundle.val is not None else "train")
    metrics = trainer.evaluate(task, bundle, split)
    x, y = bundle.split(split)
    if rec.task.name == "vae":
        metrics[f"iw_nll_k{task.cfg.iw_samples}"] = float(task.iw_nll(x.to(trainer.device)).mean())
    if rec.task.name == "autoencoder":
        metrics.update(latent_report(task, x, y, run_dir / "plots" / "latent_vs_pca.png", bundle.preprocessing))
        if task.cfg.anomaly_class is not None:
            metrics.update(anomaly_report(task, bundle, split, trainer.device))
    for name, (images, nrow) in task.grids().items():
        save_grid(images, run_dir / "plots" / f"{name}.png", nrow)
    metrics = {k: v for k, v in metrics.items() if math.isfinite(v)}
    atomic_write_text(run_dir / "results.json", json.dumps({"split": split, "metrics": metrics}, indent=1))
    return metrics


def anomaly_report(task, bundle: DataBundle, split: str, device) -> dict[str, float]:
    """Threshold = a quantile of validation (normal) errors; ROC-AUC, precision, recall, F1 on the test split."""
    from torchmetrics.functional.classification import (
        binary_auroc,
        binary_f1_score,
        binary_precision,
        binary_recall,
    )

    k = task.cfg.anomaly_class
    val_errors = task.anomaly_scores(bundle.val[0].to(device)).cpu()
    threshold = float(torch.quantile(val_errors, task.cfg.threshold_quantile))
    x, y = bundle.split(split)
    scores = task.anomaly_scores(x.to(device)).cpu()
    target = (y.cpu() == k).long()
    pred = (scores > threshold).long()
    return {
        "anomaly_auroc": float(binary_auroc(scores, target)),
        "anomaly_threshold": threshold,
        "anomaly_precision": float(binary_precision(pred, target)),
        "anomaly_recall": float(binary_recall(pred, target)),
        "anomaly_f1": float(binary_f1_score(pred, target)),
    }


def encode(task, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Latent codes (N, D): the encoder output of an autoencoder, the posterior mean of a VAE."""
    device = next(task.model.parameters()).device
    task.model.eval()
    with torch.no_grad():
        return torch.cat([task.predict_step(xb.to(device)).float().cpu() for xb in x.split(batch_size)])


def latent_report(task, x, y, path: Path, prep: Preprocessing, limit: int = 5000) -> dict[str, float]:
    """Scatter of the 2-D codes (PCA of the codes if D > 2) next to PCA of the pixels, coloured by label; and
    5-NN accuracy in each 2-D map (first half fits, second half scores), so the comparison is a number."""
    from sklearn.decomposition import PCA
    from sklearn.neighbors import KNeighborsClassifier

    from deepkit.viz.plots import _plt

    x, y = x[:limit], y[:limit].cpu().numpy()
    codes = encode(task, x).numpy()
    code2 = codes if codes.shape[1] == 2 else PCA(2, random_state=0).fit_transform(codes)
    pca2 = PCA(2, random_state=0).fit_transform(x.flatten(1).cpu().numpy())
    half = len(y) // 2
    out = {}
    for name, z in (("latent2d_knn_accuracy", code2), ("pca2d_knn_accuracy", pca2)):
        knn = KNeighborsClassifier(5).fit(z[:half], y[:half])
        out[name] = float(knn.score(z[half:], y[half:]))
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    what = "2-D latent codes" if codes.shape[1] == 2 else f"PCA of the {codes.shape[1]}-D latent codes"
    for ax, z, title in ((axes[0], code2, what), (axes[1], pca2, "PCA of the pixels")):
        sc = ax.scatter(z[:, 0], z[:, 1], c=y, cmap="tab10", s=3, alpha=0.7)
        ax.set_title(title)
    names = prep.class_names or [str(i) for i in range(int(y.max()) + 1)]
    handles, _ = sc.legend_elements()
    fig.legend(handles, [names[int(v)] for v in np.unique(y)], loc="center right", title="label")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return out


# --- using a trained run -------------------------------------------------------------------------------------------
def load_run(run_dir: str | Path, checkpoint: str = "best", with_data: bool = False, data_overrides=None):
    """(task, recipe, bundle or None) of a generative run directory (``data_overrides``: ``{"data.path": ...}``)."""
    from deepkit.recipe import read_recipe_file, resolve_recipe
    from deepkit.tasks import build_task
    from deepkit.train.checkpoint import find_checkpoint

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"{run_dir} is not a run directory (no config.yaml); expected the --out of deepkit train")
    rec = resolve_recipe(read_recipe_file(run_dir / "config.yaml"), dict(data_overrides or {}))
    if rec.task.name not in GENERATIVE_TASKS:
        raise ConfigError(
            f"{run_dir} holds a '{rec.task.name}' run; expected a generative run ({', '.join(GENERATIVE_TASKS)})"
        )
    found = find_checkpoint(run_dir / "checkpoints" / checkpoint)
    if found is None:
        raise CheckpointError(f"{run_dir} has no '{checkpoint}' checkpoint (did the run finish an epoch?)")
    state, meta = load_weights(found / "model.safetensors")
    model = create_model(meta["model"], **meta.get("model_config", {}))
    load_state_dict_checked(model, state, str(found))
    prep = Preprocessing.from_dict(meta["preprocessing"])
    task = build_task(rec.task, model, prep)
    bundle = None
    if with_data:
        bundle = prepare_data(build_data(rec.data, rec.task.name, preprocessing=prep), rec.task)
    return task, rec, bundle


def evaluate(run_dir: str | Path, data_overrides=None, split: str = "test", checkpoint: str = "best") -> dict:
    """``deepkit eval`` for a generative run: the task's loss and metrics on a split (e.g. -ELBO, recon, KL)."""
    from deepkit.train.trainer import Trainer

    task, _, bundle = load_run(run_dir, checkpoint, with_data=True, data_overrides=data_overrides)
    if bundle.split(split) is None:
        raise DataError(f"the data of {run_dir} has no '{split}' split")
    metrics = Trainer(progress="none").evaluate(task, bundle, split)
    return {k: v for k, v in metrics.items() if math.isfinite(v)}


def sample(
    run_dir: str | Path, n: int = 64, label: int | None = None, out: str | Path | None = None, seed: int = 0
) -> Path:
    """Draw ``n`` images from a trained GAN (EMA generator) or VAE (prior) and write a PNG grid.

    Example:
        >>> deepkit.generative.sample("runs/mnist_cdcgan", n=64, label=7, out="sevens.png")  # doctest: +SKIP
    """
    task, rec, _ = load_run(run_dir)
    if n < 1:
        raise ConfigError(f"-n must be >= 1, got {n}")
    g = torch.Generator().manual_seed(seed)
    model = task.model.eval()
    if rec.task.name == "autoencoder":
        raise ConfigError(
            f"{run_dir} holds a plain autoencoder, which has no prior to sample from; train a vae or a gan"
        )
    if rec.task.name == "vae":
        if label is not None:
            raise ConfigError("--label needs a class-conditional GAN; this run is a VAE")
        images, nrow = model.sample(n, generator=g), 8
    else:
        k = model.cfg.num_classes
        labels = None
        if label is not None:
            if not k:
                raise ConfigError(f"--label {label}: this GAN is unconditional (model.num_classes=0); drop --label")
            if not 0 <= label < k:
                names = task.preprocessing.class_names or list(range(k))
                raise ConfigError(f"--label {label} is not a class of this GAN; expected 0..{k - 1} ({names})")
            labels = torch.full((n,), label, dtype=torch.long)
        images = model.sample(n, labels=labels, generator=g)
        nrow = k if (k and label is None and n % k == 0) else 8
    from deepkit.viz.grids import save_grid

    out = Path(out) if out else Path(run_dir) / "samples.png"
    return save_grid(images, out, nrow)


def embed(run_dir: str | Path, out: str | Path | None = None, split: str = "test") -> tuple[Path, int, int]:
    """Write the latent codes of a split (autoencoder codes / VAE posterior means) with their labels.

    ``.csv`` (label, z0, z1, ...) or ``.npz`` (codes, labels) by the extension of ``out``
    (default ``RUN_DIR/embeddings_SPLIT.csv``). Returns (path, rows, dims).
    """
    task, rec, bundle = load_run(run_dir, with_data=True)
    if rec.task.name == "gan":
        raise ConfigError(f"{run_dir} holds a GAN, which has no encoder; embed needs an autoencoder or vae run")
    data = bundle.split(split)
    if data is None:
        raise DataError(f"the data of {run_dir} has no '{split}' split")
    codes = encode(task, data[0]).numpy()
    labels = data[1].cpu().numpy()
    out = Path(out) if out else Path(run_dir) / f"embeddings_{split}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npz":
        np.savez(out, codes=codes, labels=labels)
    elif out.suffix == ".csv":
        names = task.preprocessing.class_names
        header = "label," + ",".join(f"z{i}" for i in range(codes.shape[1]))
        lines = [header] + [
            f"{names[int(lab)] if names else lab}," + ",".join(f"{v:.6g}" for v in row)
            for lab, row in zip(labels, codes, strict=True)
        ]
        atomic_write_text(out, "\n".join(lines) + "\n")
    else:
        raise ConfigError(f"--out {out}: expected a .csv or .npz file name")
    return out, codes.shape[0], codes.shape[1]

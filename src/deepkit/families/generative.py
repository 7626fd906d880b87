"""Generative image models: GANs (dcgan/cdcgan), VAEs (vae/conv_vae) and autoencoders (autoencoder/conv_autoencoder).

The Trainer, checkpoints and run directories are the ordinary ones; this family supplies what differs:

* data: images in [0, 1] (the generators' output space), normalization off; a VAE's val/test splits are binarized
  once with a fixed seed; an anomaly-detection autoencoder trains without its anomaly class.
* evaluation at the end: -ELBO and importance-weighted NLL (VAE); ROC-AUC of reconstruction error with a threshold
  from validation data, plus a 2-D latent scatter next to PCA (autoencoder); sample grids (all).
* verbs: ``deepkit sample`` (GAN, VAE) and ``deepkit encode`` (latent codes of an autoencoder or VAE).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from deepkit.errors import ConfigError, DataError, ShapeError
from deepkit.families.base import ExportSpec, Finish, Predictor, Saved
from deepkit.families.supervised import Preprocessed, TensorFamily, attach_augment

if TYPE_CHECKING:
    import numpy as np
    import torch

    from deepkit.data.build import DataBundle
    from deepkit.data.preprocess import Preprocessing
    from deepkit.recipe import Recipe
    from deepkit.tasks.base import Task

TASKS = {
    "gan": "GAN (dcgan/cdcgan): non-saturating, hinge or WGAN-GP loss, two optimizers, generator EMA",
    "vae": "variational autoencoder (vae/conv_vae): ELBO = reconstruction + KL, KL warm-up, IW log-likelihood",
    "autoencoder": "autoencoder (autoencoder/conv_autoencoder): reconstruction, denoising, anomaly detection",
}
MODELS = {"gan": ("dcgan", "cdcgan"), "vae": ("vae", "conv_vae"), "autoencoder": ("autoencoder", "conv_autoencoder")}
EVAL_SEED = 1234  # fixed binarization of the VAE's held-out splits and fixed noise for grids


def options(task_section: Any) -> Any:
    """The task's own options: ``task.gan`` of a GAN, ``task.vae`` of a VAE, ``task.autoencoder`` ..."""
    return getattr(task_section, task_section.name)


# --- data and model ------------------------------------------------------------------------------------------------
def prepare_data(bundle: DataBundle, task_section: Any) -> DataBundle:
    """Pixel-space splits in [0, 1] for a generative task (see the module docstring)."""
    import torch

    from deepkit.data.build import DataBundle
    from deepkit.data.preprocess import Preprocessing
    from deepkit.tasks.vae import binarize

    prep = bundle.preprocessing
    name, opts = task_section.name, options(task_section)
    if prep.kind != "image" or len(prep.input_shape) != 3:
        raise DataError(
            f"task '{name}' generates images; the data has per-sample shape {tuple(prep.input_shape)} "
            f"({prep.kind}); expected images (channels, height, width), e.g. data.name=mnist"
        )
    g = torch.Generator().manual_seed(EVAL_SEED)
    bernoulli = getattr(opts, "likelihood", None) == "bernoulli"  # a VAE with a Bernoulli decoder

    def pixels(split, held_out: bool):
        if split is None:
            return None
        x, y = prep.inverse_transform(split[0].float()).clamp(0, 1), split[1]
        if bernoulli:
            if opts.binarize == "threshold":
                x = binarize(x, "threshold")
            elif held_out:  # dynamic: training batches are re-drawn each step, held-out splits are drawn once
                x = binarize(x.cpu(), "dynamic", g).to(x.device)
        return x, y

    train, val, test = pixels(bundle.train, False), pixels(bundle.val, True), pixels(bundle.test, True)
    extras = dict(bundle.extras)
    k = getattr(opts, "anomaly_class", None)
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
        bundle.task,
        train,
        val,
        test,
        pixel_prep,
        bundle.batch_size,
        bundle.eval_batch_size,
        extras=extras,
        config=bundle.config,
        target=bundle.target,
    )


def bind_generative_model(model_section: dict[str, Any], data: DataBundle) -> torch.nn.Module:
    """Create a generative model sized from the data (channels, image size; classes for a conditional GAN)."""
    from deepkit.models.registry import create_model, get_entry

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
    model = create_model(name, **overrides)
    model.check_input((c, h, w))
    return model


def make_task(task_section: Any, model: torch.nn.Module, prep: Preprocessing) -> Task:
    from deepkit.tasks.autoencoder import AutoencoderTask
    from deepkit.tasks.gan import GANTask
    from deepkit.tasks.vae import VAETask

    name = task_section.name
    model_name = getattr(model, "model_name", None)
    if model_name is not None and model_name not in MODELS[name]:
        raise ConfigError(f"task '{name}' needs model {' or '.join(MODELS[name])}, got model.name={model_name}")
    cls = {"gan": GANTask, "vae": VAETask, "autoencoder": AutoencoderTask}[name]
    return cls(model, prep, options(task_section))


# --- end of training -----------------------------------------------------------------------------------------------
def anomaly_report(task, data: DataBundle, split: str, device) -> dict[str, float]:
    """Threshold = a quantile of validation (normal) errors; ROC-AUC, precision, recall, F1 on the test split."""
    import torch
    from torchmetrics.functional.classification import (
        binary_auroc,
        binary_f1_score,
        binary_precision,
        binary_recall,
    )

    k = task.cfg.anomaly_class
    val_errors = task.anomaly_scores(data.val[0].to(device)).cpu()
    threshold = float(torch.quantile(val_errors, task.cfg.threshold_quantile))
    x, y = data.split(split)
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
    import torch

    device = next(task.model.parameters()).device
    task.model.eval()
    with torch.no_grad():
        return torch.cat([task.predict_step(xb.to(device)).float().cpu() for xb in x.split(batch_size)])


def latent_report(task, x, y, path: Path, prep: Preprocessing, limit: int = 5000) -> dict[str, float]:
    """Scatter of the 2-D codes (PCA of the codes if D > 2) next to PCA of the pixels, coloured by label; and
    5-NN accuracy in each 2-D map (first half fits, second half scores), so the comparison is a number."""
    import numpy as np
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
class GenerativePredictor(Predictor):
    """A trained GAN, VAE or autoencoder: ``sample`` new images (GAN: its EMA generator; VAE: the prior) and
    ``encode`` images to latent codes (autoencoder, VAE: the posterior mean).

    Example:
        >>> gan = deepkit.load("runs/mnist_cdcgan")                   # doctest: +SKIP
        >>> images = gan.sample(64, label=7, out="sevens.png")        # doctest: +SKIP  (64, 1, 28, 28) in [0, 1]
    """

    kind = "GAN, VAE or autoencoder run"
    verbs = {"sample": ("sample",), "encode": ("encode", "encode_split")}

    def __init__(self, model: torch.nn.Module, task_name: str, saved: Preprocessed, run_dir: Path | None = None):
        super().__init__(model, task_name, saved, run_dir)
        self.preprocessing = saved.preprocessing
        from deepkit.tasks.autoencoder import AutoencoderTaskSection
        from deepkit.tasks.gan import GANTaskSection
        from deepkit.tasks.vae import VAETaskSection

        section = {"gan": GANTaskSection, "vae": VAETaskSection, "autoencoder": AutoencoderTaskSection}[task_name]
        self.task = make_task(section(), model, self.preprocessing)

    def sample(
        self, n: int = 64, label: int | None = None, seed: int = 0, out: str | Path | None = None
    ) -> torch.Tensor:
        """``n`` new images (N, C, H, W) in [0, 1]; ``label``: the class of a conditional GAN's images;
        ``out``: also write them as a PNG grid."""
        import torch

        if self.task_name == "autoencoder":
            raise ConfigError(
                f"{self._where()} holds a plain autoencoder, which has no prior to sample from; train a vae or a gan"
            )
        if n < 1:
            raise ConfigError(f"-n must be >= 1, got {n}")
        g = torch.Generator().manual_seed(seed)
        model = self.model.cpu().eval()
        if self.task_name == "vae":
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
                    names = self.preprocessing.class_names or list(range(k))
                    raise ConfigError(f"--label {label} is not a class of this GAN; expected 0..{k - 1} ({names})")
                labels = torch.full((n,), label, dtype=torch.long)
            images = model.sample(n, labels=labels, generator=g)
            nrow = k if (k and label is None and n % k == 0) else 8
        if out is not None:
            from deepkit.viz.grids import save_grid

            save_grid(images, Path(out), nrow)
        return images

    def export_spec(self) -> ExportSpec:
        """GAN, VAE: noise z (B, latent_dim) [and class labels (B,) for a conditional GAN] -> images in [0, 1], what
        :meth:`sample` computes after its draw of z (the GAN's EMA generator, the VAE's decoder). A plain
        autoencoder has no prior to sample from; exporting encoders is not written yet."""
        import torch

        from deepkit.errors import ExportError

        if self.task_name == "autoencoder":
            raise ExportError(f"{self._where()} holds a plain autoencoder: no prior to sample from (encoders: not yet)")
        model = self.model.cpu().eval()
        latent, k = model.cfg.latent_dim, getattr(model.cfg, "num_classes", 0) or 0
        if self.task_name == "vae":
            from deepkit.tasks.vae import DecoderInference

            module: torch.nn.Module = DecoderInference(model)
        else:
            from deepkit.tasks.gan import GeneratorInference

            model.refresh_ema_stats()  # as sample() does before drawing
            module = GeneratorInference(model.generator_ema, bool(k))

        def sample(batch: int, seed: int) -> dict[str, torch.Tensor]:
            g = torch.Generator().manual_seed(seed)
            out = {"z": torch.randn(batch, latent, generator=g)}
            if k:
                out["labels"] = torch.randint(0, k, (batch,), generator=g)
            return out

        example = sample(2, 0)
        with torch.no_grad():
            shape = list(module.eval()(*example.values()).shape[1:])
        inputs: dict[str, Any] = {"z": {"dtype": "float32", "shape": [latent], "kind": "latent"}}
        if k:
            inputs["labels"] = {"dtype": "int64", "shape": [], "range": [0, k - 1]}
        sidecar = {
            "task": self.task_name,
            "inputs": inputs,
            "outputs": {"images": {"shape": shape, "range": [0.0, 1.0]}},
            "classes": self.preprocessing.class_names if k else None,
        }
        return ExportSpec(module, example, ["images"], sidecar, sample)

    def _encoder(self) -> None:
        if self.task_name == "gan":
            raise ConfigError(
                f"{self._where()} holds a GAN, which has no encoder; encode needs an autoencoder or vae run"
            )

    def encode(self, images) -> np.ndarray:
        """Latent codes (N, D) of raw images (N, C, H, W) in [0, 1]."""
        import numpy as np
        import torch

        self._encoder()
        x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images).float()
        if tuple(x.shape[1:]) != tuple(self.preprocessing.input_shape):
            self.preprocessing.check_shape(x if x.ndim > 1 else x[None], "images")
        return encode(self.task, x).numpy()

    def encode_split(self, split: str = "test", out: str | Path | None = None) -> tuple[Path, int, int]:
        """Write the latent codes of a split of the run's data, with their labels: ``.csv`` (label, z0, z1, ...) or
        ``.npz`` (codes, labels) by the extension of ``out`` (default ``RUN_DIR/embeddings_SPLIT.csv``).
        Returns (path, rows, dims)."""
        import numpy as np

        from deepkit.api import open_run
        from deepkit.weights import atomic_write_text

        self._encoder()
        if self.run_dir is None:
            raise ConfigError("encoding a split needs the run directory (its data section)")
        out = Path(out) if out else self.run_dir / f"embeddings_{split}.csv"
        if out.suffix not in (".csv", ".npz"):
            raise ConfigError(f"--out {out}: expected a .csv or .npz file name")
        data = open_run(self.run_dir).data
        part = data.split(split)
        if part is None:
            raise DataError(f"the data of {self.run_dir} has no '{split}' split")
        codes = self.encode(part[0])
        labels = part[1].cpu().numpy()
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix == ".npz":
            np.savez(out, codes=codes, labels=labels)
        else:
            names = self.preprocessing.class_names
            header = "label," + ",".join(f"z{i}" for i in range(codes.shape[1]))
            lines = [header] + [
                f"{names[int(lab)] if names else lab}," + ",".join(f"{v:.6g}" for v in row)
                for lab, row in zip(labels, codes, strict=True)
            ]
            atomic_write_text(out, "\n".join(lines) + "\n")
        return out, codes.shape[0], codes.shape[1]


# --- CLI verbs -----------------------------------------------------------------------------------------------------
def sample(
    predictor: GenerativePredictor,
    n: Annotated[int, typer.Option("-n", help="Number of images.")] = 64,
    label: Annotated[int | None, typer.Option("--label", help="Class to generate (conditional GAN).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="PNG grid to write (default RUN_DIR/samples.png).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Noise seed.")] = 0,
) -> None:
    """Generate images with a trained GAN or VAE and write them as a PNG grid.

    Example: deepkit sample runs/mnist_cdcgan -n 64 --label 7 --out sevens.png
    """
    path = out or (predictor.run_dir or Path(".")) / "samples.png"
    predictor.sample(n, label, seed, out=path)
    typer.echo(f"wrote {n} samples to {path}")


def encode_command(
    predictor: GenerativePredictor,
    out: Annotated[
        Path | None, typer.Option("--out", help=".csv or .npz (default RUN_DIR/embeddings_SPLIT.csv).")
    ] = None,
    split: Annotated[str, typer.Option(help="train, val or test.")] = "test",
) -> None:
    """Write the latent codes (with labels) of a data split, encoded by a trained autoencoder or VAE.

    Example: deepkit encode runs/mnist_autoencoder --split test --out codes.csv
    """
    path, rows, dims = predictor.encode_split(split, out)
    typer.echo(f"wrote {rows} codes of dimension {dims} to {path}")


encode_command.verb = "encode"  # type: ignore[attr-defined]
encode_command.aliases = ("embed",)  # type: ignore[attr-defined]  # its name before release 0.2


# --- the family ----------------------------------------------------------------------------------------------------
class GenerativeFamily(TensorFamily):
    name = "generative"
    description = "generative image models: GANs, VAEs, autoencoders"
    tasks = TASKS
    commands = (sample, encode_command)

    def task_config(self, task: str) -> type:
        from deepkit.tasks.autoencoder import AutoencoderTaskSection
        from deepkit.tasks.gan import GANTaskSection
        from deepkit.tasks.vae import VAETaskSection

        return {"gan": GANTaskSection, "vae": VAETaskSection, "autoencoder": AutoencoderTaskSection}[task]

    def build_data(self, rec: Recipe, saved: Saved | None = None, given: Any = None) -> DataBundle:
        return prepare_data(self.tensors(rec, saved, given), rec.task)

    def build_model(self, rec: Recipe, data: DataBundle) -> torch.nn.Module:
        return bind_generative_model(rec.model, data)

    def build_task(self, rec: Recipe, model: torch.nn.Module, data: DataBundle) -> Task:
        task = make_task(rec.task, model, data.preprocessing)
        attach_augment(task, rec, data)
        task.preview = data.val[0][:16] if data.val is not None else data.train[0][:16]  # grids of reconstructions
        return task

    def run_callbacks(self, rec: Recipe, run_dir: Path) -> list:
        from deepkit.viz.grids import SampleGrids

        return [SampleGrids(run_dir)]

    def report(self, run: Finish) -> dict[str, Any]:
        """-ELBO and IW-NLL (VAE), latent map and anomaly detection (autoencoder), sample grids (all)."""
        from deepkit.viz.grids import save_grid

        task, data, name = run.task, run.data, run.recipe.task.name
        x, y = data.split(run.split)
        if name == "vae":
            run.metrics[f"iw_nll_k{task.cfg.iw_samples}"] = float(task.iw_nll(x.to(run.trainer.device)).mean())
        if name == "autoencoder":
            run.metrics.update(latent_report(task, x, y, run.plots / "latent_vs_pca.png", data.preprocessing))
            if task.cfg.anomaly_class is not None:
                run.metrics.update(anomaly_report(task, data, run.split, run.trainer.device))
        for grid, (images, nrow) in task.grids().items():
            save_grid(images, run.plots / f"{grid}.png", nrow)
        return {}

    def predictor(self, model: torch.nn.Module, task: str, saved: Saved, run_dir: Path | None) -> Predictor:
        return GenerativePredictor(model, task, saved, run_dir)


FAMILY = GenerativeFamily()

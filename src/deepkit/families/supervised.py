"""Tables and images: classification, binary classification and regression on in-memory tensors.

Data: ``deepkit.data.build`` (digits, MNIST, CIFAR, image folders, CSV, .npz, arrays), preprocessing fitted on the
training split and saved with the weights. Models: anything that takes ``in_features`` or ``in_channels`` and
outputs one row per sample (MLPs, CNNs, ResNets, VGG, AlexNet). Report: confusion matrix or predicted-vs-true
plot, a few test inputs as files in ``samples/``. Predictor: ``predict`` / ``predict_proba`` / ``predict_files``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from deepkit.errors import ShapeError
from deepkit.families.base import ExportSpec, Family, Finish, Predictor, Saved

if TYPE_CHECKING:
    import numpy as np
    import torch

    from deepkit.data.build import DataBundle, DataConfig
    from deepkit.data.preprocess import Preprocessing
    from deepkit.recipe import Recipe
    from deepkit.tasks.base import Task

TASKS = {
    "classification": "multi-class classification: cross-entropy, accuracy, macro-F1, confusion matrix",
    "binary": "binary classification: BCE with logits, accuracy, F1, ROC-AUC",
    "regression": "regression: MSE/MAE/Huber loss, RMSE, MAE, R²",
}
TARGET = {"classification": "label", "binary": "bit", "regression": "value"}  # how each task encodes targets


@dataclass
class SupervisedTaskConfig:
    """The ``task`` section of table and image recipes."""

    name: str = "classification"  # classification, binary, regression
    loss: Literal["mse", "mae", "huber"] = "mse"  # regression
    huber_delta: float = 1.0  # regression with loss huber
    label_smoothing: float = 0.0  # classification
    pos_weight: float | None = None  # binary: weight of the positive class in the loss


@dataclass
class Preprocessed(Saved):
    """A table or image run keeps its fitted input preprocessing (normalization, shape, class names)."""

    preprocessing: Preprocessing

    def meta(self) -> dict[str, Any]:
        return {"preprocessing": self.preprocessing.to_dict()}

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> Preprocessed:
        from deepkit.data.preprocess import Preprocessing
        from deepkit.errors import CheckpointError

        if "preprocessing" not in meta:
            raise CheckpointError("the checkpoint has no preprocessing in its metadata (not written by deepkit train)")
        return cls(Preprocessing.from_dict(meta["preprocessing"]))


# --- data ------------------------------------------------------------------------------------------------------------
def build_data(cfg: DataConfig, task: str, preprocessing: Preprocessing | None = None) -> DataBundle:
    """Tensors of the dataset ``cfg`` names for ``task`` (classification, binary, regression), preprocessing
    fitted on the training split (or ``preprocessing``, reused).

    Example:
        >>> bundle = build_data(DataConfig(name="digits"), "classification")
    """
    from deepkit.data.build import read_tensors

    return read_tensors(cfg, TARGET.get(task, "label"), task, preprocessing)


def from_arrays(
    x, y, task: str = "classification", x_test=None, y_test=None, class_names: list[str] | None = None, **data_options
) -> DataBundle:
    """Build a :class:`~deepkit.data.DataBundle` from NumPy arrays or tensors (Python API).

    Args:
        x: inputs (N, F) for tables or (N, C, H, W) for images (floats; images in [0, 1]).
        y: labels (N,) for classification or values (N,) / (N, K) for regression.
        task: ``classification``, ``binary`` or ``regression``.
        x_test, y_test: an explicit test split (otherwise ``test_split`` of the data is held out).
        **data_options: any :class:`~deepkit.data.DataConfig` field (``val_split``, ``batch_size``, ...).

    Example:
        >>> import numpy as np
        >>> bundle = from_arrays(np.random.rand(100, 4), np.arange(100) % 2, task="classification")
    """
    from deepkit.config import from_dict
    from deepkit.data.build import DataConfig, bundle_from_raw, collect_warnings, raw_from_arrays

    cfg = from_dict(DataConfig, {"name": "arrays", **data_options}, "data")
    target = TARGET.get(task, "label")
    with collect_warnings() as seen:
        raw = raw_from_arrays(x, y, target, x_test, y_test, class_names)
        bundle = bundle_from_raw(raw, cfg, target, task, where="arrays")
    bundle.data_warnings = seen
    return bundle


def bind_model(model_section: dict[str, Any], data: DataBundle, weights: str | None = None) -> torch.nn.Module:
    """Create the model, filling ``in_features``/``in_channels``/``num_classes`` from the data and checking them."""
    import numpy as np
    import torch

    from deepkit.config import field_types
    from deepkit.models.registry import create_model, get_entry

    name = model_section["name"]
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


def attach_augment(task: Task, rec: Recipe, data: DataBundle) -> None:
    """``data.augment`` -> a transform the task applies to training batches only; ``data.channels_last``."""
    import torch

    from deepkit.data.augment import build_augment

    task.train_transform = build_augment(rec.data.augment, data.preprocessing, data.num_classes)
    if rec.data.channels_last:  # weights in NHWC make convolutions run NHWC (inputs are converted on the fly)
        task.model.to(memory_format=torch.channels_last)


class TensorFamily(Family):
    """Shared by families whose data are tables or images in memory (this one and the generative family)."""

    def data_config(self, task: str) -> type:
        from deepkit.data.build import DataConfig

        return DataConfig

    def saved(self, rec: Recipe, data: DataBundle) -> Preprocessed:
        return Preprocessed(data.preprocessing)

    def load_saved(self, folder: Path, meta: dict[str, Any]) -> Preprocessed:
        return Preprocessed.from_meta(meta)

    def on_create(self, rec: Recipe, run_dir: Path, model: torch.nn.Module, data: DataBundle) -> None:
        """The warnings shown while reading the data go into the run's log.txt too (before training's lines)."""
        lines = getattr(data, "data_warnings", None)
        if lines:
            with open(run_dir / "log.txt", "a") as f:
                f.writelines(f"warning: {line}\n" for line in lines)

    def tensors(self, rec: Recipe, saved: Preprocessed | None, given: DataBundle | None) -> DataBundle:
        """The recipe's tensors, or ``given`` ones (Python API), whose data section then becomes the recipe's."""
        if given is not None:
            from deepkit.data.build import DataConfig

            rec.data = given.config or DataConfig(name="arrays", batch_size=given.batch_size)
            return given
        return build_data(rec.data, rec.task.name, saved.preprocessing if saved is not None else None)


class SupervisedFamily(TensorFamily):
    name = "supervised"
    description = "tables and images: classification, binary classification, regression"
    tasks = TASKS
    sections = ("finetune",)

    def task_config(self, task: str) -> type:
        return SupervisedTaskConfig

    def section_config(self, section: str) -> type:
        from deepkit.train.finetune import FinetuneConfig

        return FinetuneConfig

    def build_data(self, rec: Recipe, saved: Saved | None = None, given: Any = None) -> DataBundle:
        return self.tensors(rec, saved, given)

    def build_model(self, rec: Recipe, data: DataBundle) -> torch.nn.Module:
        return bind_model(rec.model, data)

    def setup(self, rec: Recipe, model: torch.nn.Module, data: DataBundle, fresh: bool) -> list:
        from deepkit.train.finetune import setup_finetune

        return setup_finetune(rec.finetune, model, rec.trainer.optimizer, load=fresh)

    def build_task(self, rec: Recipe, model: torch.nn.Module, data: DataBundle) -> Task:
        task = make_task(rec.task, model, data.preprocessing)
        attach_augment(task, rec, data)
        return task

    def report(self, run: Finish) -> dict[str, Any]:
        report_predictions(run)
        return {}

    def predictor(self, model: torch.nn.Module, task: str, saved: Saved, run_dir: Path | None) -> Predictor:
        return TensorPredictor(model, task, saved, run_dir)


def make_task(cfg: SupervisedTaskConfig, model: torch.nn.Module, prep: Preprocessing) -> Task:
    from deepkit.tasks.classification import BinaryClassificationTask, ClassificationTask
    from deepkit.tasks.regression import RegressionTask

    if cfg.name == "classification":
        return ClassificationTask(model, len(prep.class_names or []), prep, cfg.label_smoothing)
    if cfg.name == "binary":
        return BinaryClassificationTask(model, prep, cfg.pos_weight)
    n = len(prep.target_mean) if prep.target_mean else 1
    return RegressionTask(model, n, prep, cfg.loss, cfg.huber_delta)


# --- end of run ----------------------------------------------------------------------------------------------------
def report_predictions(run: Finish) -> None:
    """Confusion matrix (classification) or predicted vs true (regression), and a few held-out inputs as files."""
    from deepkit.viz.plots import plot_pred_vs_true

    data, split = run.data, run.split
    x, y = data.split(split)
    pred = run.trainer.predict(run.task, x)
    if run.recipe.task.name == "classification":
        write_confusion_matrix(run, y.cpu().numpy(), pred.argmax(1).numpy(), data.preprocessing.class_names)
    elif run.recipe.task.name == "regression":
        target = data.preprocessing.target_name
        r2 = run.metrics.get("r2")
        title = f"predicted vs true ({split})"
        plot_pred_vs_true(pred.numpy(), y.cpu().numpy(), run.plots / "pred_vs_true.png", title, target, r2)
    pick = sample_indices(y, data.target == "label", 8)
    write_samples(run.run_dir, data, x[pick], y[pick])


def sample_indices(y: torch.Tensor, by_class: bool, n: int = 8) -> torch.Tensor:
    """``n`` indices into ``y``: round-robin over the classes (the first sample of each class in class order, then
    the second, ...) when ``by_class``, else the first ``n``. Deterministic."""
    import torch

    if not by_class:
        return torch.arange(min(n, len(y)))
    labels = y.cpu().reshape(-1).long()
    queues = [torch.nonzero(labels == c).flatten().tolist() for c in torch.unique(labels).tolist()]
    picked: list[int] = []
    depth = 0
    while len(picked) < min(n, len(labels)):
        picked += [q[depth] for q in queues if depth < len(q)][: n - len(picked)]
        depth += 1
    return torch.tensor(picked, dtype=torch.long)


def write_confusion_matrix(run: Finish, true: np.ndarray, pred: np.ndarray, names: list[str]) -> None:
    """``confusion_matrix.json`` and ``plots/confusion_matrix.png`` of a classifier on the run's report split."""
    import json

    import numpy as np

    from deepkit.viz.plots import MAX_CONFUSION_CLASSES, plot_confusion_matrix

    cm = np.zeros((len(names), len(names)), dtype=np.int64)
    np.add.at(cm, (np.asarray(true), np.asarray(pred)), 1)
    if len(names) <= MAX_CONFUSION_CLASSES:
        title = f"confusion matrix ({run.split}, {len(true)} samples)"
        plot_confusion_matrix(cm, names, run.plots / "confusion_matrix.png", title)
    else:
        run.trainer.log(
            f"confusion matrix: {len(names)} classes, more than a plot can show ({MAX_CONFUSION_CLASSES}); "
            "no confusion_matrix.png (the counts are in confusion_matrix.json)"
        )
    (run.run_dir / "confusion_matrix.json").write_text(json.dumps({"classes": names, "matrix": cm.tolist()}))


def write_samples(run_dir: Path, data: DataBundle, x: torch.Tensor, y: torch.Tensor) -> None:
    """A few held-out inputs as files, ready for ``deepkit predict RUN_DIR samples/*``."""
    prep = data.preprocessing
    out = run_dir / "samples"
    out.mkdir(exist_ok=True)
    raw = prep.inverse_transform(x.cpu().float())
    names = prep.class_names
    if prep.kind == "image" and raw.ndim == 4 and raw.shape[1] in (1, 3):
        from PIL import Image

        for i, (img, label) in enumerate(zip(raw, y.cpu(), strict=True)):
            tag = names[int(label)] if names and data.target == "label" else f"{float(label):g}"
            arr = (img.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
            Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr).save(out / f"test_{i:02d}_label_{tag}.png")
    elif prep.kind == "tabular":
        import csv

        if prep.tabular is not None:  # the table's own columns: categories as words, as the CSV had them
            cols, rows = prep.tabular.columns, prep.tabular.decode(raw.numpy())
        else:
            cols = prep.feature_names or [f"x{i}" for i in range(raw.shape[1])]
            rows = [[f"{v:.6g}" for v in row.tolist()] for row in raw]
        with open(out / "test_rows.csv", "w", newline="") as f:
            csv.writer(f, lineterminator="\n").writerows([cols, *rows])


# --- using a trained run -------------------------------------------------------------------------------------------
def is_paths(x: Any) -> bool:
    """A file path, or a non-empty list/tuple of them (as opposed to numbers, or a table row of category words):
    Path objects, and strings naming an existing file or ending like one (.png, .npy, .csv, ...)."""
    from deepkit.data.inputs import IMAGE_SUFFIXES

    def path_like(v: Any) -> bool:
        if isinstance(v, Path):
            return True
        return isinstance(v, str) and (Path(v).suffix.lower() in {*IMAGE_SUFFIXES, ".npy", ".csv"} or Path(v).is_file())

    if isinstance(x, str | Path):
        return path_like(x)
    return isinstance(x, list | tuple) and bool(x) and all(path_like(v) for v in x)


def _raw_rows(x, enc) -> bool:
    """Whether ``x`` holds a table's rows as read from a CSV (to be encoded), not the model's inputs."""
    import numpy as np

    if hasattr(x, "columns"):  # a pandas DataFrame
        return True
    if hasattr(x, "numpy") or len(enc.columns) == len(enc.features) and not enc.fill:
        return False
    arr = np.asarray(x, dtype=object)
    if arr.ndim not in (1, 2) or arr.shape[-1] != len(enc.columns):
        return False
    if len(enc.columns) != len(enc.features):
        return True
    try:  # numbers only, as many as the model takes: its inputs, unless a value is missing
        return bool(np.isnan(arr.astype(np.float64)).any())
    except (TypeError, ValueError):
        return True


class TensorPredictor(Predictor):
    """A trained table/image model with its preprocessing: ``predict`` raw inputs the way training saw them.

    Example:
        >>> p = deepkit.load("runs/demo")          # doctest: +SKIP
        >>> p.predict(images)                      # doctest: +SKIP  (class indices)
    """

    kind = "classification or regression run (tables, images)"
    verbs = {"predict": ("predict", "predict_proba", "predict_files")}

    def __init__(self, model: torch.nn.Module, task_name: str, saved: Preprocessed, run_dir: Path | None = None):
        from deepkit.train.trainer import Trainer

        super().__init__(model, task_name, saved, run_dir)
        self.preprocessing = saved.preprocessing
        self.task = make_task(SupervisedTaskConfig(name=task_name), model, self.preprocessing)
        self.trainer = Trainer(progress="none", device="auto")
        self.trainer.device = self.device

    @property
    def class_names(self) -> list[str] | None:
        return self.preprocessing.class_names

    def _prepare(self, x) -> torch.Tensor:
        import numpy as np
        import torch

        if is_paths(x):  # image / .npy / CSV files, read as the CLI reads them
            from deepkit.data.inputs import read_inputs

            _, raw = read_inputs([x] if isinstance(x, str | Path) else list(x), self.preprocessing)
            return self.preprocessing.transform(raw)
        enc = self.preprocessing.tabular
        if enc is not None and _raw_rows(x, enc):  # table rows as in the CSV: categories as words, gaps
            import warnings

            from deepkit.data.tables import DataWarning, unseen_message

            x, unseen = enc.encode_rows(x)
            if unseen:
                warnings.warn(unseen_message(unseen, "predict"), DataWarning, stacklevel=3)
        t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x, dtype=torch.float32)
        shape = tuple(self.preprocessing.input_shape)
        if tuple(t.shape) == shape:
            t = t[None]
        self.preprocessing.check_shape(t, "input")
        return self.preprocessing.transform(t)

    def predict_proba(self, x) -> np.ndarray:
        """Class probabilities (N, K) for classification, P(class 1) (N,) for binary. ``x``: raw inputs (N, *shape),
        or file paths (images, .npy, CSV rows) as the CLI takes them."""
        from deepkit.errors import ConfigError

        if self.task_name == "regression":
            raise ConfigError("predict_proba is for classification runs; use predict for regression")
        return self.trainer.predict(self.task, self._prepare(x)).numpy()

    def predict(self, x, names: bool = False) -> np.ndarray:
        """Class indices (classification; class names with ``names=True``) or values in the target's units
        (regression). ``x``: raw inputs (N, *shape) or file paths, as for :meth:`predict_proba`.

        Example:
            >>> deepkit.load("runs/demo").predict(["a.png", "b.png"], names=True)   # doctest: +SKIP
        """
        import numpy as np

        out = self.trainer.predict(self.task, self._prepare(x)).numpy()
        if self.task_name == "classification":
            idx = out.argmax(1)
        elif self.task_name == "binary":
            idx = (out > 0.5).astype(np.int64)
        else:
            return out[:, 0] if out.ndim == 2 and out.shape[1] == 1 else out
        return np.array([self.class_names[i] for i in idx]) if names else idx

    def export_spec(self) -> ExportSpec:
        """Raw inputs (images in [0, 1], table rows as numbers) -> what :meth:`predict_proba` gives (probabilities;
        regression: values in the target's units): the fitted normalization and the post-processing in the graph.
        Table rows with category words are encoded outside the graph (the encoding is in the sidecar)."""
        import torch

        prep = self.preprocessing
        shape = [int(n) for n in prep.input_shape]
        module = self.task.inference_module(prep.as_module()).eval()
        info: dict[str, Any] = {"dtype": "float32", "shape": shape, "kind": prep.kind}
        if prep.kind == "image":
            info.update(channels=shape[0], height=shape[1], width=shape[2], range=[0.0, 1.0])
        elif prep.feature_names:
            info["names"] = list(prep.feature_names)
        names = list(self.class_names or [])
        outputs = {
            "classification": {"probabilities": {"shape": [len(names)], "labels": names}},
            "binary": {"probability": {"shape": [], "positive": names[1] if len(names) == 2 else 1}},
        }.get(self.task_name) or {"value": {"shape": [len(prep.target_mean or [0])], "name": prep.target_name}}

        def sample(batch: int, seed: int) -> dict[str, torch.Tensor]:
            g = torch.Generator().manual_seed(seed)
            if prep.kind == "image":
                return {"x": torch.rand(batch, *shape, generator=g)}
            x = torch.randn(batch, *shape, generator=g)
            if prep.mean is not None and prep.normalize == "feature":  # rows in the data's own units
                x = x * torch.tensor(prep.std).view(1, *shape) + torch.tensor(prep.mean).view(1, *shape)
            return {"x": x}

        sidecar = {"task": self.task_name, "inputs": {"x": info}, "outputs": outputs}
        if prep.tabular is not None:
            sidecar["table_encoding"] = prep.to_dict()["tabular"]
        return ExportSpec(module, sample(2, 0), list(outputs), sidecar, sample)

    def predict_files(self, paths: list[str | Path], top_k: int = 1) -> list[dict[str, Any]]:
        """Predictions for image / .npy / CSV files, one record per input."""
        import numpy as np

        from deepkit.data.inputs import read_inputs

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


FAMILY = SupervisedFamily()

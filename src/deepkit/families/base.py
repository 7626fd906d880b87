"""The family interface: what a task family supplies so that one run pipeline serves it.

A *family* (tables and images, generative models, text, sequence-to-sequence, time series, word vectors, ...) owns
its task names, its recipe sections, how its data, model and task are built, what a run keeps to predict later,
its end-of-run report, its predictor and its extra CLI verbs. ``deepkit.api`` (train, resume, evaluate, load,
bench, distributed launch) and ``deepkit.cli`` look the family up once, from the task name, and never name a task or
a family again (Ultralytics' ``task_map``; Lightning's ``LightningModule``/``LightningDataModule``).

The run path, in the order the pipeline calls a family::

    recipe -> family.build_data -> family.build_model -> family.setup -> family.build_task -> Trainer.fit
           -> family.saved (checkpoint metadata + files) -> family.report (results.json, plots, samples)
    deepkit.load(run) -> family.load_saved -> family.predictor -> predictor verbs (predict, generate, ...)

Modules that define families stay light at import (no torch at module level): the CLI imports every family to
list its verbs, and ``deepkit --help`` should not pay for torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from deepkit.errors import ConfigError, DataError

if TYPE_CHECKING:
    import torch

    from deepkit.data.module import DataModule
    from deepkit.tasks.base import Task
    from deepkit.train.trainer import Trainer, TrainerConfig


@dataclass
class Recipe:
    """A validated recipe (``deepkit.recipe.validate``): the family's ``task`` and ``data`` sections, the model
    section, the trainer's, and the family's optional sections."""

    name: str
    description: str
    task: Any  # the family's task-section dataclass (has ``name``)
    model: dict[str, Any]  # name + that model's config fields
    data: Any  # the family's data-section dataclass
    trainer: TrainerConfig
    family: Family = field(repr=False, compare=False)  # the family that owns task.name
    extra: dict[str, Any] = field(default_factory=dict)  # the family's optional sections (None when absent)

    @property
    def finetune(self) -> Any:
        """The ``finetune`` section (transfer learning), or None."""
        return self.extra.get("finetune")

    def to_dict(self) -> dict[str, Any]:
        from deepkit.config import to_dict

        out = {
            "name": self.name,
            "description": self.description,
            "task": to_dict(self.task),
            "model": to_dict(self.model),
            "data": to_dict(self.data),
            "trainer": to_dict(self.trainer),
        }
        return {**out, **{k: to_dict(self.extra.get(k)) for k in self.family.sections}}


class Saved:
    """What a run keeps to predict later, besides the weights (preprocessing, a tokenizer, series statistics).

    Each family subclasses it with typed fields. ``meta()`` goes into every checkpoint's metadata (JSON);
    ``write(run_dir)`` writes files next to the checkpoints (e.g. ``tokenizer.json``) when the run is created.
    """

    def meta(self) -> dict[str, Any]:
        return {}

    def write(self, run_dir: Path) -> None:
        return None


@dataclass
class Finish:
    """What :meth:`Family.report` gets at the end of a run: the best checkpoint is loaded into ``task.model`` and
    ``metrics`` holds its loss and metrics on ``split`` (test, else val, else train)."""

    run_dir: Path
    recipe: Recipe
    task: Task
    data: DataModule
    trainer: Trainer
    split: str
    metrics: dict[str, float]

    @property
    def plots(self) -> Path:
        path = self.run_dir / "plots"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def samples(self) -> Path:
        path = self.run_dir / "samples"
        path.mkdir(parents=True, exist_ok=True)
        return path


class Family:
    """Base class of task families. Subclasses set the class attributes and override the build/report methods.

    Class attributes:
        name: the family's name (``supervised``, ``text``, ...).
        tasks: task name -> one-line description; the only list of this family's task names.
        sections: optional recipe sections besides ``task``, ``model``, ``data`` and ``trainer`` (e.g. ``finetune``).
        commands: extra CLI verbs, functions ``verb(predictor, **options)`` whose options are typer-annotated; the
            CLI adds the RUN_DIR argument, loads the predictor and checks that it offers the verb.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    tasks: ClassVar[dict[str, str]] = {}
    sections: ClassVar[tuple[str, ...]] = ()
    commands: ClassVar[tuple[Callable[..., Any], ...]] = ()
    opens: ClassVar[str] = ""  # what :meth:`open_file` reads besides runs, for messages ("word vectors in text format")

    # --- recipe sections -------------------------------------------------------------------------------------------
    def task_config(self, task: str) -> type:
        """The dataclass of the ``task`` section for ``task`` (it has a ``name`` field)."""
        raise NotImplementedError  # pragma: no cover - abstract

    def data_config(self, task: str) -> type:
        """The dataclass of the ``data`` section for ``task``."""
        raise NotImplementedError  # pragma: no cover - abstract

    def section_config(self, section: str) -> type:
        """The dataclass of an optional section listed in :attr:`sections`."""
        raise NotImplementedError  # pragma: no cover - abstract

    def datasets(self, task: str) -> dict[str, str] | None:
        """``data.name`` values that fit ``task`` (name -> description), or None if any name is accepted."""
        return None

    def check_dataset(self, rec: Recipe) -> None:
        """A dataset that does not fit the task is a one-line error listing those that do."""
        known = self.datasets(rec.task.name)
        if known is not None and rec.data.name not in known:
            raise ConfigError(
                f"dataset '{rec.data.name}' does not fit task '{rec.task.name}'; expected one of {', '.join(known)}"
            )

    # --- building a run --------------------------------------------------------------------------------------------
    def build_data(self, rec: Recipe, saved: Saved | None = None, given: Any = None) -> DataModule:
        """The run's data. ``saved``: what a trained run kept (fitted preprocessing, tokenizer): reuse it rather than
        fitting anew (resume, evaluate). ``given``: data built by the caller (Python API), to adopt."""
        raise NotImplementedError  # pragma: no cover - abstract

    def build_model(self, rec: Recipe, data: DataModule) -> torch.nn.Module:
        """The recipe's model, its sizes (inputs, classes, vocabulary) bound from the data and checked against it."""
        raise NotImplementedError  # pragma: no cover - abstract

    def setup(self, rec: Recipe, model: torch.nn.Module, data: DataModule, fresh: bool) -> list:
        """Before the task is built: load pretrained weights (``fresh`` runs only: a resumed run's weights come from
        its checkpoint), set learning-rate multipliers; returns callbacks the recipe needs (e.g. a backbone
        freezer)."""
        return []

    def build_task(self, rec: Recipe, model: torch.nn.Module, data: DataModule) -> Task:
        """The task (loss, metrics, steps) around ``model``."""
        raise NotImplementedError  # pragma: no cover - abstract

    def run_callbacks(self, rec: Recipe, run_dir: Path) -> list:
        """Callbacks that write into the run directory while it trains (fired before the user's)."""
        return []

    def saved(self, rec: Recipe, data: DataModule) -> Saved:
        """What the run keeps to predict later (see :class:`Saved`)."""
        return Saved()

    def load_saved(self, folder: Path, meta: dict[str, Any]) -> Saved:
        """:meth:`saved` back from a checkpoint's metadata and the files near ``folder`` (a checkpoint directory)."""
        return Saved()

    def on_create(self, rec: Recipe, run_dir: Path, model: torch.nn.Module, data: DataModule) -> None:
        """Once, when a new run directory has been created (before training)."""
        return None

    # --- after training --------------------------------------------------------------------------------------------
    def report(self, run: Finish) -> dict[str, Any]:
        """End-of-run report: add metrics to ``run.metrics`` (e.g. baselines, BLEU), write plots and samples;
        returns extra entries for ``results.json`` (e.g. forecasts, generated text)."""
        return {}

    def metrics_text(self, metrics: dict[str, float], run: Any) -> str | None:
        """How ``deepkit eval`` shows this family's metrics to a person (e.g. the COCO table), given the opened run
        (:class:`deepkit.api.OpenRun`: recipe, saved, task, data); None: one line per metric."""
        return None

    def predictor(self, model: torch.nn.Module, task: str, saved: Saved, run_dir: Path | None) -> Predictor:
        """The trained model, ready for the family's verbs."""
        raise NotImplementedError  # pragma: no cover - abstract

    def open_file(self, path: Path) -> Predictor | None:
        """A file this family can use directly that is not a deepkit checkpoint (e.g. word vectors), else None."""
        return None


@dataclass
class ExportSpec:
    """What a predictor hands to ``deepkit export`` and ``deepkit serve``: one module from raw inputs to outputs.

    The module holds the preprocessing a run learned (normalization) and the post-processing (softmax, the
    target's units), so an exported graph takes what a user has (pixels in [0, 1], table rows) and gives what
    ``predict`` gives. What cannot live in a graph (a tokenizer, class names) goes in ``sidecar`` (JSON) and
    ``files`` (copied next to the export).

    Attributes:
        module: raw inputs -> outputs, in eval mode (positional arguments in the order of ``inputs``).
        inputs: name -> one example input, batch first (what the exporter traces with).
        outputs: the names of the module's outputs, in order.
        sidecar: JSON-safe description: ``task``, ``inputs`` (name -> ``{"dtype", "shape"}`` per sample, plus
            ``"kind": "image"`` with its ``channels``/``height``/``width`` for inputs an image file can give,
            ``"range"`` where values are bounded), ``outputs`` (name -> ``{"labels": [...]}`` where an axis names
            classes), and whatever preprocessing stays outside the graph.
        sample: ``(batch, seed) -> inputs`` drawn afresh (not the export example): the parity check's inputs.
        dynamic: name -> {axis: axis name} that may vary besides the batch (sequence length).
        files: file name -> path, copied next to the exported model (``tokenizer.json``).
    """

    module: torch.nn.Module
    inputs: dict[str, torch.Tensor]
    outputs: list[str]
    sidecar: dict[str, Any]
    sample: Callable[[int, int], dict[str, torch.Tensor]]
    dynamic: dict[str, dict[int, str]] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)


@dataclass
class ServeHook:
    """An operation ``deepkit serve`` offers besides ``POST /predict``, for runs whose use is not one graph call
    (text generation, recommendations): ``POST /NAME`` (``POST /NAME/stream`` when ``stream``), listed in ``/docs``.

    Attributes:
        fn: keyword arguments (the checked JSON body) -> a JSON-safe result, or, when ``stream``, an iterator of
            text pieces (sent as server-sent events as they come), or, with ``media_type``, the answer's bytes.
        params: name -> ``{"type": "string" | "integer" | "number", "default": ..., "minimum", "maximum",
            "maxLength", "enum"}``; a parameter without a default is required. The server checks every request
            against it (4xx naming what was received and what was expected) before ``fn`` runs. A parameter
            ``{"type": "audio", "sample_rate": HZ, "min_seconds": S}`` is an uploaded audio file (multipart field of
            its name, the other parameters as form fields; or the raw ``audio/*`` body, the others in the query),
            decoded, checked and handed to ``fn`` as mono float32 samples at ``sample_rate``.
        stream: ``fn`` yields text pieces.
        description: one line for ``/docs`` and the page.
        media_type: ``fn`` returns bytes of this type (``audio/wav``), sent as they are.
    """

    fn: Callable[..., Any]
    params: dict[str, dict[str, Any]]
    stream: bool = False
    description: str = ""
    media_type: str = ""


class VerbError(ConfigError, AttributeError):
    """A verb the run does not offer (``generate`` on a classifier): a one-line CLI error and an AttributeError."""


class Predictor:
    """What ``deepkit.load(run)`` returns: the trained model with what it needs (tokenizer, preprocessing).

    Subclasses list their verbs: ``verbs = {"generate": ("generate", "stream")}`` maps each CLI verb to the Python
    methods behind it, so every Python verb has its CLI verb and the reverse. Asking a run for a verb it does not
    offer is a :class:`VerbError` naming the verbs it does offer.
    """

    verbs: ClassVar[dict[str, tuple[str, ...]]] = {}
    kind: ClassVar[str] = ""  # what runs it serves, for messages: "language-model run"
    _verb_of: ClassVar[dict[str, str]] = {}  # every Python verb method of every predictor -> its CLI verb
    _kinds: ClassVar[dict[str, list[str]]] = {}  # CLI verb -> the kinds of run that offer it

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        for verb, methods in cls.verbs.items():
            for method in methods:
                Predictor._verb_of[method] = verb
            kinds = Predictor._kinds.setdefault(verb, [])
            if cls.kind and cls.kind not in kinds:
                kinds.append(cls.kind)

    def __init__(self, model: torch.nn.Module, task_name: str, saved: Saved, run_dir: Path | None = None):
        from deepkit.train.trainer import resolve_device

        self.model, self.task_name, self.saved, self.run_dir = model, task_name, saved, run_dir
        self.device = resolve_device("auto")
        self.model.to(self.device).eval()

    def export_spec(self) -> ExportSpec:
        """The run as one module from raw inputs to outputs, for ``deepkit export`` and ``deepkit serve`` (see
        :class:`ExportSpec`). A predictor whose family cannot be exported yet keeps this default, which says so."""
        from deepkit.errors import ExportError

        what = self.kind or type(self).__name__
        raise ExportError(f"{self._where()} is a '{self.task_name}' run ({what}): its family cannot be exported yet")

    def export_hf(self, folder: Path) -> None:
        """Write the run as a Hugging Face ``save_pretrained``-style folder (``config.json``, ``model.safetensors``,
        tokenizer files) for ``deepkit export --format hf``; runs whose model has no ``transformers`` counterpart
        keep this default, which says so."""
        from deepkit.errors import ExportError

        raise ExportError(
            f"{self._where()} is a '{self.task_name}' run of a {type(self.model).__name__}: --format hf needs a "
            "Transformer with Hugging Face parameter names (gpt2, bert, roberta, deberta, t5) in a text run, or "
            "wav2vec2 in a speech recognition run"
        )

    def serve_hooks(self) -> dict[str, ServeHook]:
        """Operations ``deepkit serve`` offers besides ``/predict`` (see :class:`ServeHook`); default none."""
        return {}

    def serve_page(self) -> dict[str, Any]:
        """How the browser page of ``deepkit serve`` presents this run when it has no export sidecar (whose
        ``page`` entry says it otherwise): ``{"input": "text" | "image" | "choice" | "json", "show": "bars" |
        "boxes" | "mask" | "stream" | "list" | "json", "hook": NAME, ...}``; default: from the inputs."""
        return {}

    def _where(self) -> str:
        return str(self.run_dir) if self.run_dir is not None else "this model"

    def require(self, verb: str) -> None:
        """Raise :class:`VerbError` unless this run offers the CLI verb ``verb``."""
        if verb not in self.verbs:
            kinds = Predictor._kinds.get(verb) or []
            needs = f"`{verb}` needs a {' or a '.join(kinds)}" if kinds else f"`{verb}` does not apply here"
            use = " or ".join(f"`deepkit {v}`" for v in self.verbs) if self.verbs else "only `deepkit eval`"
            raise VerbError(f"{needs}; {self._where()} is a '{self.task_name}' run: use {use}")

    def __getattr__(self, name: str) -> Any:
        verb = Predictor._verb_of.get(name)
        if verb is not None and not name.startswith("_"):
            self.require(verb)
        raise AttributeError(f"{type(self).__name__} has no attribute '{name}'")


def read_lines_arg(texts: list[str] | None, file: Path | None, what: str) -> list[str]:
    """The inputs of a text verb: given texts, else the non-empty lines of ``file``; none is a one-line error."""
    out = list(texts or [])
    if file is not None:
        from deepkit.data.text import read_lines

        out += [ln for ln in read_lines(file) if ln.strip()]
    if not out:
        raise DataError(f"no {what} given; pass them as arguments or with --file FILE (one per line)")
    return out

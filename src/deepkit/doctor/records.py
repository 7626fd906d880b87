"""What the doctor reads: a run directory and its ``record/`` files (``deepkit.train.record``), read-only.

Works on finished, failed, interrupted and still-running runs: a file that a writer is appending to may end in a
half-written line, which is left out; a missing file is an empty record. Nothing in the run directory is changed.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepkit.errors import ConfigError

SPARSE_MODULES = ("Embedding", "EmbeddingBag")  # module types whose gradients are sparse by construction


def read_complete_lines(path: Path) -> str:
    """The file's text up to its last complete line ('' if absent)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""
    return text if text.endswith("\n") else text[: text.rfind("\n") + 1]


def read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(read_complete_lines(path))))


def num(v: Any) -> float:
    try:
        return float(v) if v not in (None, "") else math.nan
    except (TypeError, ValueError):
        return math.nan


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


@dataclass
class Layer:
    """One parameter's records over the recording steps (arrays aligned on ``step``)."""

    name: str
    shape: list[int]
    step: np.ndarray
    grad_norm: np.ndarray
    grad_zero: np.ndarray
    weight_norm: np.ndarray
    update_ratio: np.ndarray
    module: str = ""  # the type of the module holding it (meta.json; empty in records from before it was kept)

    @property
    def is_weight(self) -> bool:
        """A weight matrix or kernel (not a bias or a norm's scale)."""
        return len(self.shape) >= 2

    @property
    def sparse_by_nature(self) -> bool:
        """An embedding table: only the rows of the tokens in a batch get a gradient, so most of its gradient
        entries are zero whatever the training does (older records: told by the parameter's name)."""
        if self.module:
            return self.module in SPARSE_MODULES
        return "embed" in self.name.lower()


@dataclass
class Activation:
    """One activation module's records over the recording steps."""

    name: str
    kind: str  # relu, sigmoid, tanh, smooth
    block_output: bool
    step: np.ndarray
    inactive: np.ndarray
    dead: np.ndarray
    saturated: np.ndarray
    mean: np.ndarray
    std: np.ndarray


@dataclass
class RunRecords:
    """Everything the rules look at, from one run directory."""

    run_dir: Path
    config: dict[str, Any] = field(default_factory=dict)
    status: dict[str, Any] = field(default_factory=dict)
    running: bool = False
    history: list[dict[str, float]] = field(default_factory=list)  # metrics.csv, one row per epoch
    meta: dict[str, Any] = field(default_factory=dict)
    steps: dict[str, np.ndarray] = field(default_factory=dict)  # step, epoch, loss, lr
    layers: list[Layer] = field(default_factory=list)  # in the model's parameter order
    activations: list[Activation] = field(default_factory=list)
    timing: dict[str, np.ndarray] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    predictions: dict[str, np.ndarray] | None = None

    @property
    def recorded(self) -> bool:
        return bool(self.meta) or bool(len(self.steps.get("step", ())))

    @property
    def loss_falls(self) -> bool:
        return bool(self.meta.get("loss_falls", True))

    @property
    def lr(self) -> float | None:
        """The configured learning rate (trainer.optimizer.lr)."""
        try:
            return float(self.config["trainer"]["optimizer"]["lr"])
        except (KeyError, TypeError, ValueError):
            return None

    @property
    def name(self) -> str:
        return str(self.config.get("name") or self.run_dir.name)

    def column(self, key: str) -> np.ndarray:
        """A per-epoch column of metrics.csv (NaN where absent)."""
        return np.array([num(row.get(key)) for row in self.history], dtype=float)

    def weights(self) -> list[Layer]:
        return [layer for layer in self.layers if layer.is_weight and len(layer.step)]


def load(run_dir: str | Path) -> RunRecords:
    """Read a run directory (read-only; no lock is taken, so a run that is still training can be read)."""
    from deepkit.rundir import holder, read_status

    run_dir = Path(run_dir)
    if not run_dir.is_dir() or not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"{run_dir} is not a run directory (no config.yaml); expected the --out of deepkit train")
    import yaml

    rec = RunRecords(run_dir)
    try:
        rec.config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        rec.config = {}
    rec.status = read_status(run_dir)
    rec.running = holder(run_dir) is not None
    rec.history = [{k: num(v) for k, v in row.items()} for row in read_csv(run_dir / "metrics.csv")]
    folder = run_dir / "record"
    rec.meta = read_json(folder / "meta.json")
    rows = read_csv(folder / "steps.csv")
    rec.steps = {k: np.array([num(r.get(k)) for r in rows], dtype=float) for k in ("step", "epoch", "loss", "lr")}
    rec.layers = _layers(read_csv(folder / "layers.csv"), rec.meta)
    rec.activations = _activations(read_csv(folder / "activations.csv"), rec.meta)
    rows = read_csv(folder / "timing.csv")
    rec.timing = {
        k: np.array([num(r.get(k)) for r in rows], dtype=float) for k in ("step_from", "step_to", "data_s", "compute_s")
    }
    rec.inputs = read_json(folder / "inputs.json")
    rec.data = read_json(folder / "data.json")
    path = folder / "val_predictions.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                rec.predictions = {k: z[k] for k in z.files}
        except (OSError, ValueError):
            rec.predictions = None
    return rec


def _layers(rows: list[dict[str, str]], meta: dict[str, Any]) -> list[Layer]:
    shapes = {p["name"]: p["shape"] for p in meta.get("parameters", [])}
    modules = {p["name"]: p.get("module", "") for p in meta.get("parameters", [])}
    by_name: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        by_name.setdefault(r["name"], []).append(r)
    order = [n for n in shapes if n in by_name] + [n for n in by_name if n not in shapes]
    out = []
    for name in order:
        rs = by_name[name]
        col = {k: np.array([num(r[k]) for r in rs]) for k in ("step", "grad_norm", "grad_zero", "weight_norm")}
        col["update_ratio"] = np.array([num(r["update_ratio"]) for r in rs])
        out.append(Layer(name, list(shapes.get(name, [0, 0])), **col, module=modules.get(name, "")))
    return out


def _activations(rows: list[dict[str, str]], meta: dict[str, Any]) -> list[Activation]:
    info = {a["name"]: a for a in meta.get("activations", [])}
    by_name: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        by_name.setdefault(r["module"], []).append(r)
    out = []
    for name, rs in by_name.items():
        col = {k: np.array([num(r[k]) for r in rs]) for k in ("step", "inactive", "dead", "saturated", "mean", "std")}
        block_output = bool(info.get(name, {}).get("block_output", False))
        out.append(Activation(name, rs[0]["kind"], block_output, **col))
    return out

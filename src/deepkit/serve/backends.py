"""What ``deepkit serve`` runs: a run's predictor in eager PyTorch, or an ONNX export in onnxruntime.

Both take and give NumPy arrays by name, batch first, and carry the sidecar that describes them (the same JSON
``deepkit export`` writes next to a model), so the app and the batcher never look inside.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from deepkit.errors import ConfigError
from deepkit.export import SIDECAR, OnnxModel, export

BACKENDS = ("torch", "onnx")


class Backend:
    """``run(inputs) -> outputs`` on NumPy arrays by name; ``sidecar``: task, inputs, outputs (see ExportSpec)."""

    name = ""
    sidecar: dict[str, Any]
    source: str
    files: dict[str, Path] = {}  # files beside the model (tokenizer.json), by name
    hooks: dict[str, Any] = {}  # the predictor's ServeHooks (torch backend only)
    predicts: bool = True  # False: the run has no graph to call (only its hooks); /predict says why

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError  # pragma: no cover - abstract

    @property
    def fixed_batch(self) -> int | None:
        """The one batch size the model takes (an export without --dynamic-batch), else None."""
        batch = self.sidecar.get("batch", "dynamic")
        return None if batch == "dynamic" else int(batch)


class TorchBackend(Backend):
    """A run's predictor: the module of its export spec, run eagerly (the same graph ``deepkit export`` writes)."""

    name = "torch"

    def __init__(self, predictor, source: str):
        import torch

        from deepkit.errors import ExportError

        self.device, self.source, self._torch = predictor.device, source, torch
        self.hooks = predictor.serve_hooks()
        try:
            spec = predictor.export_spec()
        except ExportError as e:
            if not self.hooks:
                raise
            self.predicts, self.why_not = False, str(e)
            self.order, self.outputs = [], []
            self.sidecar = {"task": predictor.task_name, "inputs": {}, "outputs": {}, "page": predictor.serve_page()}
            return
        self.module = spec.module.to(predictor.device).eval()
        self.order, self.outputs = list(spec.inputs), list(spec.outputs)
        self.sidecar = {**spec.sidecar, "input_order": self.order, "output_order": self.outputs, "batch": "dynamic"}
        if "page" not in self.sidecar and predictor.serve_page():  # an export sidecar without the family's page
            self.sidecar["page"] = predictor.serve_page()
        self.files = {k: Path(v) for k, v in spec.files.items()}

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        with torch.no_grad():
            out = self.module(*(torch.from_numpy(inputs[k]).to(self.device) for k in self.order))
        out = out if isinstance(out, tuple | list) else (out,)
        out = [v.detach().cpu() for v in out]  # integer outputs (labels, counts) stay integers
        return {k: (v.float() if v.is_floating_point() else v).numpy() for k, v in zip(self.outputs, out, strict=True)}


class OnnxBackend(Backend):
    """An ONNX export (model.onnx + deepkit.json) in onnxruntime on the CPU."""

    name = "onnx"

    def __init__(self, path: str | Path, threads: int | None = None):
        self.model = OnnxModel(path, threads)
        self.sidecar = self.model.sidecar
        self.source = str(path)
        folder = Path(path) if Path(path).is_dir() else Path(path).parent
        self.files = {p.name: p for p in folder.iterdir() if p.is_file() and p.suffix == ".json" and p.name != SIDECAR}

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.model.run(inputs)


def open_backend(path: str | Path, backend: str | None = None, threads: int | None = None) -> Backend:
    """The model at ``path``: a run directory (or deepkit checkpoint), or a folder/``model.onnx`` of ``deepkit
    export``. ``backend``: ``torch`` or ``onnx`` (default: torch for a run, onnx for an ONNX export); a run served
    with ``onnx`` is exported first (dynamic batch, parity-checked) into a temporary folder.

    Weights load from safetensors only (a run's checkpoints, or ``deepkit export --format safetensors``).
    """
    from deepkit import api

    path = Path(path)
    if backend is not None and backend not in BACKENDS:
        raise ConfigError(f"unknown backend '{backend}'; expected one of {', '.join(BACKENDS)}")
    folder = path if path.is_dir() else path.parent
    side = folder / SIDECAR
    if side.is_file() and (path.is_dir() or path.suffix == ".onnx"):
        fmt = json.loads(side.read_text()).get("format")
        if fmt == "onnx":
            if backend == "torch":
                raise ConfigError(f"{path} is an ONNX export; serve it with --backend onnx (or serve the run itself)")
            return OnnxBackend(path, threads)
        if fmt == "safetensors":
            path = folder / "model.safetensors"
        else:
            raise ConfigError(f"{path} is a '{fmt}' export; deepkit serve takes a run, an ONNX or safetensors export")
    predictor = api.load(path)
    if backend == "onnx":
        out = Path(tempfile.mkdtemp(prefix="deepkit-serve-"))
        export(predictor, "onnx", out, dynamic_batch=True)
        return OnnxBackend(out, threads)
    return TorchBackend(predictor, str(path))

"""``deepkit export``: a trained run as ONNX, a torch.export program (.pt2) or safetensors, with a JSON sidecar.

Written once for every family: the run's predictor gives an :class:`~deepkit.families.base.ExportSpec` (one module
from raw inputs to outputs, example inputs, names, the sidecar) and this module never asks which family it is.
An ONNX export is checked before it is kept: onnxruntime and eager PyTorch must agree within
:data:`PARITY_TOLERANCE` on inputs drawn afresh (not the ones the exporter traced with).

Layout of an export folder (``--out``, default ``RUN_DIR/export``)::

    model.onnx | model.pt2 | model.safetensors    the model
    deepkit.json                                  the sidecar: task, inputs, outputs, preprocessing kept outside
    tokenizer.json ...                            files the family names (``ExportSpec.files``)
"""

from __future__ import annotations

import contextlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepkit.errors import ConfigError, DataError, ExportError

if TYPE_CHECKING:
    import numpy as np

    from deepkit.families.base import ExportSpec, Predictor

FORMATS = ("onnx", "pt2", "safetensors", "hf")
PARITY_TOLERANCE = 1e-4  # fp32: largest |onnxruntime - eager| allowed on fresh inputs
SIDECAR = "deepkit.json"
FILE_NAMES = {"onnx": "model.onnx", "pt2": "model.pt2", "safetensors": "model.safetensors", "hf": "model.safetensors"}


@dataclass
class Exported:
    """Where an export went and how well it matches eager PyTorch (ONNX only: ``max_diff`` on fresh inputs)."""

    path: Path
    sidecar: Path
    max_diff: float | None = None


def export(
    predictor: Predictor,
    fmt: str = "onnx",
    out: str | Path | None = None,
    opset: int | None = None,
    dynamic_batch: bool = False,
) -> Exported:
    """Export a loaded run (``deepkit.load(run)``) as ``fmt`` into the folder ``out``.

    Args:
        predictor: the run's predictor; its ``export_spec()`` gives the module and its inputs.
        fmt: ``onnx``, ``pt2`` (``torch.export``), ``safetensors`` (weights + deepkit metadata; ``deepkit.load``
            reads it back) or ``hf`` (a ``save_pretrained``-style folder ``transformers`` loads: text runs of
            Transformers with Hugging Face parameter names; see ``Predictor.export_hf``).
        out: the folder (default ``RUN_DIR/export``).
        opset: ONNX opset (default: the exporter's).
        dynamic_batch: let the batch size vary (ONNX, pt2); else the graph takes the example's batch only.

    Example:
        >>> export(deepkit.load("runs/demo"), "onnx", dynamic_batch=True)   # doctest: +SKIP
    """
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format '{fmt}'; expected one of {', '.join(FORMATS)}")
    if out is None:
        if predictor.run_dir is None:
            raise ConfigError("give --out: the model was not loaded from a run directory")
        out = predictor.run_dir / "export"
    folder = Path(out)
    if folder.suffix in (".onnx", ".pt2", ".safetensors"):
        raise ConfigError(f"--out is a folder (it gets {FILE_NAMES[fmt]} and {SIDECAR}); got the file name {folder}")
    path = folder / FILE_NAMES[fmt]
    if fmt == "hf":
        predictor.export_hf(folder)
        side = folder / SIDECAR
        side.write_text(json.dumps({"task": predictor.task_name, "format": "hf", "versions": versions()}, indent=1))
        return Exported(path, side)
    spec = predictor.export_spec()
    folder.mkdir(parents=True, exist_ok=True)
    batch = next(iter(spec.inputs.values())).shape[0]
    sidecar = {
        **spec.sidecar,
        "format": fmt,
        "file": path.name,
        "batch": "dynamic" if dynamic_batch else int(batch),
        "input_order": list(spec.inputs),
        "output_order": list(spec.outputs),
        "versions": versions(),
    }
    max_diff = None
    if fmt == "onnx":
        export_onnx(spec, path, opset, dynamic_batch)
        max_diff = onnx_parity(spec, path, batch=3 if dynamic_batch else int(batch))
        sidecar["parity"] = {"max_abs_diff": max_diff, "tolerance": PARITY_TOLERANCE}
    elif fmt == "pt2":
        export_pt2(spec, path, dynamic_batch)
    else:
        export_safetensors(predictor, path)
    for name, src in spec.files.items():
        shutil.copyfile(src, folder / name)
    side = folder / SIDECAR
    side.write_text(json.dumps(sidecar, indent=1))
    return Exported(path, side, max_diff)


def versions() -> dict[str, str]:
    import torch

    from deepkit.version import __version__

    out = {"deepkit": __version__, "torch": torch.__version__}
    for name in ("onnx", "onnxruntime"):
        with contextlib.suppress(ImportError):
            out[name] = __import__(name).__version__
    return out


def _dynamic_shapes(spec: ExportSpec, dynamic_batch: bool) -> dict[str, dict[int, Any]] | None:
    """``torch.export`` dynamic shapes: the batch axis (when asked) and the family's own dynamic axes."""
    from torch.export import Dim

    dims: dict[str, Any] = {}
    shapes: dict[str, dict[int, Any]] = {}
    for name in spec.inputs:
        axes = {a: dims.setdefault(n, Dim(n, min=2, max=65536)) for a, n in spec.dynamic.get(name, {}).items()}
        if dynamic_batch:
            axes[0] = dims.setdefault("batch", Dim("batch", min=1, max=4096))
        shapes[name] = axes
    return shapes if any(shapes.values()) else None


def export_onnx(spec: ExportSpec, path: Path, opset: int | None, dynamic_batch: bool) -> None:
    """``torch.onnx.export`` (the dynamo exporter) of the spec's module, weights inside the file."""
    import torch

    from deepkit.nn.nms_export import onnx_translations

    _need("onnx", "onnxscript")
    kwargs: dict[str, Any] = {"dynamo": True, "external_data": False, "verbose": False}
    kwargs["custom_translation_table"] = onnx_translations()  # deepkit's own operators (NMS)
    if opset is not None:
        kwargs["opset_version"] = opset
    try:
        with torch.no_grad():
            program = torch.onnx.export(
                spec.module,
                tuple(spec.inputs.values()),
                input_names=list(spec.inputs),
                output_names=list(spec.outputs),
                dynamic_shapes=_dynamic_shapes(spec, dynamic_batch),
                **kwargs,
            )
            program.save(str(path))
    except Exception as e:  # noqa: BLE001 - the exporter's failures are many; one line names the first
        raise ExportError(f"torch.onnx.export failed: {type(e).__name__}: {str(e).splitlines()[0]}") from e


def export_pt2(spec: ExportSpec, path: Path, dynamic_batch: bool) -> None:
    """``torch.export`` program saved with ``torch.export.save`` (load with ``torch.export.load``)."""
    import torch

    try:
        with torch.no_grad():
            program = torch.export.export(
                spec.module, tuple(spec.inputs.values()), dynamic_shapes=_dynamic_shapes(spec, dynamic_batch)
            )
        torch.export.save(program, str(path))
    except Exception as e:  # noqa: BLE001
        raise ExportError(f"torch.export failed: {type(e).__name__}: {str(e).splitlines()[0]}") from e


def export_safetensors(predictor: Predictor, path: Path) -> None:
    """The weights with deepkit's metadata (model, its config, the task, the saved preprocessing)."""
    from deepkit.train.checkpoint import model_metadata, unwrap
    from deepkit.weights import atomic_save_safetensors

    model = unwrap(predictor.model)
    meta = model_metadata(model, {**predictor.saved.meta(), "task": {"name": predictor.task_name}})
    atomic_save_safetensors(model.state_dict(), path, meta)


def _need(*modules: str) -> None:
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ExportError(f"export needs {', '.join(missing)}: pip install 'deepkit[serve]'")


# --- running an ONNX export -------------------------------------------------------------------------------------------
class OnnxModel:
    """An exported ONNX model with its sidecar, run by onnxruntime on the CPU: ``run(inputs) -> outputs``.

    Example:
        >>> m = OnnxModel("runs/demo/export")        # doctest: +SKIP
        >>> m.run({"x": images})["probabilities"]     # doctest: +SKIP
    """

    def __init__(self, path: str | Path, threads: int | None = None):
        _need("onnxruntime")
        import onnxruntime as ort

        path = Path(path)
        folder = path if path.is_dir() else path.parent
        side = folder / SIDECAR
        if not side.is_file():
            raise DataError(f"no {SIDECAR} in {folder}; expected a folder written by `deepkit export --format onnx`")
        self.sidecar: dict[str, Any] = json.loads(side.read_text())
        model = path if path.is_file() else folder / self.sidecar.get("file", FILE_NAMES["onnx"])
        if model.suffix != ".onnx" or not model.is_file():
            raise DataError(f"no ONNX model at {model}; expected the model.onnx of `deepkit export --format onnx`")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = opts.inter_op_num_threads = threads
        self.session = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(self.output_names, inputs), strict=True))


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Largest |a - b| where equal values (infinities too: a recommender's known items score -inf) count as 0; a NaN
    on one side only is NaN (it fails the tolerance)."""
    import numpy as np

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if not a.size:
        return 0.0
    with np.errstate(invalid="ignore"):  # inf - inf where both are inf: masked by a == b
        return float(np.where(a == b, 0.0, np.abs(a - b)).max())


def onnx_parity(spec: ExportSpec, path: Path, batch: int, seed: int = 12345) -> float:
    """Largest |onnxruntime - eager| over the outputs on ``batch`` fresh inputs; above the tolerance an error."""
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = spec.sample(batch, seed)
    with torch.no_grad():
        eager = spec.module(*inputs.values())
    eager = eager if isinstance(eager, tuple | list) else (eager,)
    got = session.run(list(spec.outputs), {k: v.numpy() for k, v in inputs.items()})
    diff = 0.0
    for name, a, b in zip(spec.outputs, eager, got, strict=True):
        a = a.detach().float().numpy()
        if a.shape != b.shape:
            raise ExportError(f"ONNX output '{name}' has shape {b.shape}, eager PyTorch gives {a.shape}")
        diff = max(diff, max_abs_diff(a, b))
    if not diff <= PARITY_TOLERANCE:
        raise ExportError(
            f"the ONNX model differs from eager PyTorch by {diff:.3g} on fresh inputs (allowed {PARITY_TOLERANCE:g})"
        )
    return diff

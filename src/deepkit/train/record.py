"""Recording what a run does, for ``deepkit doctor``: the :class:`Recorder` callback (``trainer.record``, on).

It writes ``RUN_DIR/record/``, a documented, non-pickle format that a resumed run keeps appending to exactly:

==========================  =========================================================================================
file                        content
==========================  =========================================================================================
``meta.json``               format version, the recording cadence ``every``, the parameters (name, shape, the type
                            of the module that holds it, e.g. ``Embedding``) and the
                            activation modules (name, type, kind, ``block_output``: the last module of an
                            ``nn.Sequential``, e.g. a generator's output tanh) that are recorded; whether the task's
                            loss is expected to fall (``loss_falls``; not for adversarial tasks)
``steps.csv``               one row per optimizer step: ``step, epoch, loss, lr`` (loss: the step's last micro-batch)
``layers.csv``              per recording step and parameter: ``step, name, grad_norm, grad_zero, weight_norm,
                            update_ratio`` (L2 norms; ``grad_zero``: the fraction of exactly-zero gradient entries;
                            ``update_ratio``: ‖w_after − w_before‖ / ‖w_before‖ over that optimizer step). Gradients
                            are read before clipping; tasks that step their own optimizers (GANs) have none.
``activations.csv``         per recording step and activation module: ``step, module, kind, inactive, dead,
                            saturated, mean, std`` of its output on the step's first micro-batch. ``inactive``: the
                            fraction of outputs <= 0 (ReLU family); ``dead``: the fraction of units (features,
                            channels) inactive for every example and position; ``saturated``: sigmoid outputs outside
                            [0.01, 0.99], tanh outputs with \\|y\\| > 0.99 (derivative < 2% of its peak)
``timing.csv``              per flushed interval: ``step_from, step_to, data_s, compute_s``: host seconds waiting for
                            the loader's next batch vs in the step (forward, backward, optimizer, callbacks)
``inputs.json``             the first ``input_batches`` training batches' inputs: per feature (tables, (N, F)), per
                            channel (images, (N, C, ...)) or per last-axis feature (sequences, (N, T, F)): mean, std,
                            min, max; integer inputs (token ids): their range only
``data.json``               per split: examples and class counts (tasks that have classes); inputs that occur in two
                            splits (only where the task's ``inputs_identify_examples``; ``compared``
                            says whether they were compared): ``exact`` (same bytes) and ``near``
                            (same after rounding every value to 0.25 in normalized units; exact ones
                            included; float inputs only; rows that round to one value, e.g. quiet
                            waveforms, are left out), with counts (distinct
                            inputs) and up to 100 example pairs (indices in loader order)
``val_predictions.npz``     at the end of a run, on the validation split with the last weights: ``index``, ``label``,
                            ``loss``, ``probs`` (N, K) (tasks with a :meth:`~deepkit.tasks.Task.example_outputs`
                            hook: classifiers). Plain arrays: ``numpy.load(path, allow_pickle=False)`` reads it
==========================  =========================================================================================

Guarantees. Recording changes no training number: it draws no random numbers (the data scan runs under a forked
RNG), reads gradients and weights without changing them or the order of the step's operations, attaches activation
hooks only for the forward pass of a recording step, and synchronizes with the device only when it writes (values
stay on the device until then): at a recording step once ``WRITE_EVERY_S`` seconds have passed since the last
write, at every epoch end and every checkpoint. Files are only appended to, one whole-line write per flush; every
checkpoint flushes first and saves the files' sizes, and a resumed run cuts the files back to those sizes before
it appends, so a run killed (SIGKILL) and resumed leaves the same records as one never interrupted, and no
half-written line. Only the first process of a distributed run records (FSDP: no per-parameter records; no
validation predictions in a distributed run).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deepkit.train.callbacks import Callback
from deepkit.train.optim import base_lr
from deepkit.weights import atomic_write_text

FORMAT = 1
FILES = {
    "steps.csv": ["step", "epoch", "loss", "lr"],
    "layers.csv": ["step", "name", "grad_norm", "grad_zero", "weight_norm", "update_ratio"],
    "activations.csv": ["step", "module", "kind", "inactive", "dead", "saturated", "mean", "std"],
    "timing.csv": ["step_from", "step_to", "data_s", "compute_s"],
}
# activation modules by kind: outputs <= 0 are inactive (ReLU family), or saturated (bounded)
RELU_FAMILY = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU, nn.Hardtanh)
KINDS = {nn.Sigmoid: "sigmoid", nn.Hardsigmoid: "sigmoid", nn.Tanh: "tanh", nn.GELU: "smooth", nn.SiLU: "smooth"}
WRITE_EVERY_S = 5.0  # the files are appended to at most this often (and at every epoch end and checkpoint)
NEAR_GRID = 0.25  # near duplicates: inputs equal after rounding every value to this grid
MAX_PAIRS = 100


@dataclass
class RecordConfig:
    """``trainer.record``: what the run records for ``deepkit doctor`` (see :mod:`deepkit.train.record`)."""

    enabled: bool = True
    every: int = 0  # optimizer steps between gradient/weight/activation records; 0: auto (50-100, see auto_every)
    input_batches: int = 8  # training batches whose input statistics are recorded
    scan: bool = True  # hash every split's inputs at the start (duplicates across splits, class counts)
    predictions: bool = True  # per-example validation loss and probabilities at the end (classifiers)
    max_examples: int = 200_000  # per split, for the scan and the predictions


def auto_every(total_steps: int) -> int:
    """Every 50 optimizer steps; runs over 2,500 steps: every 1/50 of the run, at most every 100 steps. A recording
    step costs about as much as a training step of a small CPU model (clones, norms, activation statistics); the
    cost against step time is measured by ``benchmarks/doctor_overhead.py``."""
    return int(min(100, max(50, total_steps // 50)))


def activation_kind(module: nn.Module) -> str | None:
    if isinstance(module, RELU_FAMILY):
        return "relu"
    for cls, kind in KINDS.items():
        if isinstance(module, cls):
            return kind
    return None


def batch_inputs(batch: Any) -> torch.Tensor | None:
    """The model input of a batch: a tuple's first tensor, or a dict's ``tokens``/``input_ids``/first tensor."""
    if isinstance(batch, dict):
        for key in ("tokens", "input_ids", "x", "inputs", "src"):
            if isinstance(batch.get(key), torch.Tensor):
                return batch[key]
        batch = list(batch.values())
    if isinstance(batch, list | tuple) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0]
    return None


def feature_axes(x: torch.Tensor) -> tuple[int, ...]:
    """The axes reduced for per-feature statistics: all but dim 1 ((N, F), (N, C, H, W)); (N, T, F): all but F."""
    if x.ndim <= 1:
        return tuple(range(x.ndim))
    if x.ndim == 3:
        return (0, 1)
    return tuple(d for d in range(x.ndim) if d != 1)


class Recorder(Callback):
    """Writes ``RUN_DIR/record/`` while a run trains (see the module docstring for the files).

    Args:
        run_dir: the run directory.
        config: a :class:`RecordConfig`.
    """

    def __init__(self, run_dir: str | Path, config: RecordConfig | None = None):
        self.dir = Path(run_dir) / "record"
        self.cfg = config or RecordConfig()
        self.every = self.cfg.every
        self.inputs_done = False
        self.pending: dict[str, list] = {name: [] for name in FILES}
        self.losses: list[tuple[int, int, torch.Tensor | None, float]] = []  # (step, epoch, loss, lr) not yet written
        self.snapshot: list[torch.Tensor] | None = None  # weights before a recording step
        self.grads: tuple[list[int], torch.Tensor, torch.Tensor] | None = None  # (indices, norms, nonzero counts)
        self.hooks: list[Any] = []
        self.acts: list[tuple[str, str, torch.Tensor]] = []
        self.params: list[tuple[str, nn.Parameter]] = []
        self.input_sums: dict[str, torch.Tensor] | None = None
        self.input_batches = 0
        self.input_shape: list[int] = []
        self.input_dtype = ""
        self.t_mark: float | None = None
        self.t_start = 0.0
        self.data_s = self.compute_s = 0.0
        self.interval_from = 0
        self.written = time.perf_counter()  # when the files were last appended to
        self.layout_ok = True  # per-parameter records (not under FSDP)

    # --- cadence ---------------------------------------------------------------------------------------------------
    def due(self, step: int) -> bool:
        """Whether optimizer step ``step`` (1-based) is a recording step: the first one, then every ``every``."""
        return step == 1 or step % self.every == 0

    # --- hooks -----------------------------------------------------------------------------------------------------
    def on_fit_start(self, trainer):
        cfg = trainer.config
        if not self.every:
            total = cfg.max_steps or cfg.epochs * math.ceil(trainer.batches_per_epoch / max(1, cfg.accumulate))
            self.every = auto_every(total)
        self.dir.mkdir(parents=True, exist_ok=True)
        model = trainer.task.model
        self.params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.layout_ok = not (trainer.dist and trainer.dist.strategy == "fsdp")
        self.modules = [(n, m, k) for n, m in model.named_modules() if (k := activation_kind(m))]
        last = {id(list(m.children())[-1]) for m in model.modules() if isinstance(m, nn.Sequential) and len(m)}
        if trainer.speed is not None and trainer.speed.on("compile"):
            self.modules = []  # hooks on a compiled model would recompile it: no activation records
        self.interval_from = trainer.state.step
        if not (self.dir / "meta.json").is_file():
            owners = {  # the type of the module that holds each parameter (an Embedding's gradient is sparse)
                f"{m_name}.{p_name}" if m_name else p_name: type(m).__name__
                for m_name, m in model.named_modules()
                for p_name, _ in m.named_parameters(recurse=False)
            }
            meta = {
                "format": FORMAT,
                "every": self.every,
                "loss_falls": bool(getattr(trainer.task, "loss_falls", True)),
                "parameters": [
                    {"name": n, "shape": list(p.shape), "module": owners.get(n, "")} for n, p in self.params
                ],
                "activations": [
                    {"name": n, "type": type(m).__name__, "kind": k, "block_output": id(m) in last}
                    for n, m, k in self.modules
                ],
            }
            atomic_write_text(self.dir / "meta.json", json.dumps(meta, indent=1))
        if self.cfg.scan and trainer.data is not None and not (self.dir / "data.json").is_file():
            with preserved_rng():
                scan = scan_data(trainer.data, trainer.task, self.cfg.max_examples)
            atomic_write_text(self.dir / "data.json", json.dumps(scan))
        self.inputs_done = self.inputs_done or (self.dir / "inputs.json").is_file()

    def on_epoch_start(self, trainer):
        self.t_mark = time.perf_counter()

    def on_batch_start(self, trainer, batch):
        now = time.perf_counter()
        s = trainer.state
        accumulate = trainer.config.accumulate
        first = s.batch % accumulate == 0  # the first micro-batch of an optimizer step
        if self.t_mark is not None:
            self.data_s += now - self.t_mark
            self.t_mark = None
        if first:
            self.t_start = now
        if not self.inputs_done:
            self._input_stats(batch)
        if first and self.due(s.step + 1):
            if self.layout_ok:
                with torch.no_grad():
                    self.snapshot = [p.detach().clone() for _, p in self.params]
            self._attach(trainer)

    def on_before_optimizer_step(self, trainer):
        if not (self.layout_ok and self.due(trainer.state.step + 1)):
            return
        with torch.no_grad():
            grads = [p.grad for _, p in self.params]
            have = [i for i, g in enumerate(grads) if g is not None]
            if not have:
                return
            gs = [grads[i] for i in have]
            norms = torch._foreach_norm([g.float() if g.dtype != torch.float32 else g for g in gs])
            nonzero = [torch.count_nonzero(g) for g in gs]  # one op per tensor: zero fraction = 1 - nonzero / numel
            self.grads = (have, torch.stack(norms), torch.stack(nonzero))

    def on_step_end(self, trainer):
        s = trainer.state
        now = time.perf_counter()
        self.compute_s += now - self.t_start
        opt = trainer.optimizer or next(iter(trainer.optimizers.values()), None)
        loss = trainer.last_loss
        self.losses.append((s.step, s.epoch, loss, base_lr(opt) if opt is not None else float("nan")))
        if self.due(s.step):
            self._detach()
            self._layer_records(s.step)
            self._flush(s.step, write=now - self.written >= WRITE_EVERY_S)
        self.t_mark = time.perf_counter()

    def on_epoch_end(self, trainer, logs):
        self._flush(trainer.state.step)

    def on_fit_end(self, trainer):
        if not self.inputs_done:  # a run shorter than ``input_batches`` batches
            self._write_inputs()
        self._flush(trainer.state.step)
        # not in a distributed run: only this process records, and a forward pass of a wrapped model (FSDP's
        # all-gathers, DDP's buffer broadcasts) on one process alone would wait forever for the others
        if self.cfg.predictions and trainer.data is not None and trainer.has_val and trainer.dist is None:
            write_predictions(self.dir / "val_predictions.npz", trainer, self.cfg.max_examples)

    def on_exception(self, trainer, error):
        self._detach()
        with contextlib.suppress(Exception):  # the run's own error is the one to report
            self._flush(trainer.state.step)

    def state_dict(self):
        """Flushes what is pending, then the files' sizes: a resumed run cuts them back to these (exact records)."""
        self._flush(None)
        sizes = {name: (self.dir / name).stat().st_size for name in FILES if (self.dir / name).is_file()}
        return {"every": self.every, "sizes": sizes, "inputs_done": self.inputs_done}

    def load_state_dict(self, state):
        self.every = state.get("every", self.every)
        self.inputs_done = state.get("inputs_done", False)
        for name, size in state.get("sizes", {}).items():
            path = self.dir / name
            if path.is_file() and path.stat().st_size > size:
                os.truncate(path, size)  # records written after the checkpoint are written again
        for name in FILES:  # files that did not exist at the checkpoint start again
            if name not in state.get("sizes", {}) and (self.dir / name).is_file():
                (self.dir / name).unlink()

    # --- activations -----------------------------------------------------------------------------------------------
    def _attach(self, trainer) -> None:
        self._detach()
        self.acts = []
        for name, module, kind in self.modules:
            self.hooks.append(module.register_forward_hook(self._hook(name, kind)))

    def _hook(self, name: str, kind: str):
        seen = False

        def hook(module, inputs, output):
            nonlocal seen
            if seen or not isinstance(output, torch.Tensor):
                return
            seen = True  # the step's first micro-batch (and a GAN's first call) only
            with torch.no_grad():
                self.acts.append((name, kind, activation_stats(output.detach(), kind)))

        return hook

    def _detach(self) -> None:
        for h in self.hooks:
            h.remove()
        self.hooks = []

    # --- records ---------------------------------------------------------------------------------------------------
    def _layer_records(self, step: int) -> None:
        if self.snapshot is not None:
            with torch.no_grad():
                now = [p.detach() for _, p in self.params]
                before = [b.float() for b in self.snapshot]
                w_norm = torch.stack(torch._foreach_norm(before))
                diffs = [a.float() - b for a, b in zip(now, before, strict=True)]
                upd = torch.stack(torch._foreach_norm(diffs)) / w_norm.clamp_min(1e-30)
            self.pending["layers.csv"].append((step, w_norm, upd, self.grads))
        for name, kind, stats in self.acts:
            self.pending["activations.csv"].append((step, name, kind, stats))
        self.snapshot, self.grads, self.acts = None, None, []

    def _input_stats(self, batch: Any) -> None:
        x = batch_inputs(batch)
        if x is None:
            self.inputs_done = True
            return
        with torch.no_grad():
            if self.input_sums is None:
                self.input_shape, self.input_dtype = list(x.shape), str(x.dtype).replace("torch.", "")
            if x.is_floating_point():
                # a padded 1-D signal (waveforms: (B, T) with ``lengths``): its time steps are one quantity
                one = isinstance(batch, dict) and "lengths" in batch and x.ndim == 2
                axes = tuple(range(x.ndim)) if one else feature_axes(x)
                xf = x.float()
                if xf.ndim >= 2 and xf.shape[1 if xf.ndim != 3 else 2] > 4096:  # very wide: the first 4096
                    xf = xf[:, :4096] if xf.ndim != 3 else xf[..., :4096]
                stats = {
                    "sum": xf.sum(axes).reshape(-1),
                    "sumsq": (xf * xf).sum(axes).reshape(-1),
                    "min": xf.amin(axes).reshape(-1),
                    "max": xf.amax(axes).reshape(-1),
                    "n": torch.tensor(xf.numel() / max(1, xf.sum(axes).numel()), dtype=torch.float64),
                }
            else:
                stats = {"min": x.min().reshape(1), "max": x.max().reshape(1), "n": torch.tensor(float(x.numel()))}
            if self.input_sums is None:
                self.input_sums = stats
            else:
                s = self.input_sums
                if "sum" in s and s["sum"].shape != stats["sum"].shape:  # the features vary in number: pool them
                    width = s["sum"].numel()
                    s.update(sum=s["sum"].sum().reshape(1), sumsq=s["sumsq"].sum().reshape(1), n=s["n"] * width)
                    s.update(min=s["min"].min().reshape(1), max=s["max"].max().reshape(1))
                    width = stats["sum"].numel()
                    stats = {"sum": stats["sum"].sum().reshape(1), "sumsq": stats["sumsq"].sum().reshape(1),
                             "n": stats["n"] * width, "min": stats["min"].min().reshape(1),
                             "max": stats["max"].max().reshape(1)}  # fmt: skip
                for k in ("sum", "sumsq", "n"):
                    if k in s:
                        s[k] = s[k] + stats[k]
                s["min"], s["max"] = torch.minimum(s["min"], stats["min"]), torch.maximum(s["max"], stats["max"])
        self.input_batches += 1
        if self.input_batches >= self.cfg.input_batches:
            self._write_inputs()

    def _write_inputs(self) -> None:
        s = self.input_sums
        self.inputs_done = True
        if s is None:
            return
        out: dict[str, Any] = {
            "split": "train",
            "batches": self.input_batches,
            "shape": self.input_shape,
            "dtype": self.input_dtype,
        }
        n = float(s["n"])
        if "sum" in s:
            mean = (s["sum"].double() / n).cpu()
            var = (s["sumsq"].double() / n - mean * mean).clamp_min(0)
            axis = "feature" if len(self.input_shape) in (2, 3) else "channel" if len(self.input_shape) > 3 else "value"
            out.update(
                axis=axis,
                values_per_feature=n,
                mean=mean.tolist(),
                std=var.sqrt().tolist(),
                min=s["min"].double().cpu().tolist(),
                max=s["max"].double().cpu().tolist(),
            )
        else:
            out.update(axis="ids", min=s["min"].tolist(), max=s["max"].tolist())
        atomic_write_text(self.dir / "inputs.json", json.dumps(out))

    def _flush(self, step: int | None, write: bool = True) -> None:
        """Close the timing interval at ``step``; with ``write``, write what is pending (one synchronization with
        the device), one write per file."""
        if step is not None and step > self.interval_from and (self.data_s or self.compute_s):
            self.pending["timing.csv"].append([self.interval_from, step, _num(self.data_s), _num(self.compute_s)])
            self.interval_from, self.data_s, self.compute_s = step, 0.0, 0.0
        if not write:
            return
        self.written = time.perf_counter()
        rows: dict[str, list[list[Any]]] = {name: [] for name in FILES}
        if self.losses:
            losses = [v for _, _, v, _ in self.losses if v is not None]
            values = iter(torch.stack([v.float() for v in losses]).tolist()) if losses else iter(())
            for st, ep, v, lr in self.losses:
                rows["steps.csv"].append([st, ep, _num(next(values)) if v is not None else "", _num(lr)])
            self.losses = []
        for st, w_norm, upd, grads in self.pending["layers.csv"]:
            cols = [w_norm.tolist(), upd.tolist()]
            g: list[Any] = [None] * len(cols[0])
            z: list[Any] = [None] * len(cols[0])
            if grads is not None:  # parameters without a gradient at that step: nan norm, no zeros
                have, g_norm, nonzero = grads
                g, z = [math.nan] * len(cols[0]), [0.0] * len(cols[0])
                for i, gn, nz in zip(have, g_norm.tolist(), nonzero.tolist(), strict=True):
                    g[i], z[i] = gn, 1.0 - nz / max(1, self.params[i][1].numel())
            for (name, _), wn, up, gn, gz in zip(self.params, cols[0], cols[1], g, z, strict=True):
                rows["layers.csv"].append([st, name, _num(gn), _num(gz), _num(wn), _num(up)])
        self.pending["layers.csv"] = []
        for st, name, kind, stats in self.pending["activations.csv"]:
            inactive, dead, saturated, mean, std = stats.tolist()
            rows["activations.csv"].append([st, name, kind, *(_num(v) for v in (inactive, dead, saturated, mean, std))])
        self.pending["activations.csv"] = []
        rows["timing.csv"], self.pending["timing.csv"] = self.pending["timing.csv"], []
        for name, header in FILES.items():
            if rows[name]:
                append_rows(self.dir / name, header, rows[name])


def activation_stats(y: torch.Tensor, kind: str) -> torch.Tensor:
    """``[inactive, dead, saturated, mean, std]`` of an activation's output, on its device."""
    yf = y.float()
    nan = torch.full((), float("nan"), device=y.device)
    if kind == "relu":
        off = yf <= 0
        inactive = off.float().mean()
        axes = tuple(d for d in range(yf.ndim) if d != (yf.ndim - 1 if yf.ndim == 3 else min(1, yf.ndim - 1)))
        dead = off.all(dim=axes).float().mean() if axes else off.float().mean()
    else:
        inactive = dead = nan
    if kind == "sigmoid":
        saturated = ((yf < 0.01) | (yf > 0.99)).float().mean()
    elif kind == "tanh":
        saturated = (yf.abs() > 0.99).float().mean()
    else:
        saturated = nan
    return torch.stack([inactive, dead, saturated, yf.mean(), yf.std() if yf.numel() > 1 else nan])


def _num(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def append_rows(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    """Append whole CSV lines in one write (a header first if the file is new or empty)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if not path.is_file() or path.stat().st_size == 0:
        w.writerow(header)
    w.writerows(rows)
    with open(path, "a", encoding="utf-8") as f:
        f.write(buf.getvalue())
        f.flush()


@contextlib.contextmanager
def preserved_rng():
    """Python's, NumPy's and torch's (CPU and CUDA) random states as they were before, whatever runs inside."""
    py, npy = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(npy)


# --- the data scan: duplicates across splits, class counts ---------------------------------------------------------
def example_rows(x: torch.Tensor, batch: Any) -> list[np.ndarray]:
    """One array per example: its input, without padding (``lengths`` of a token batch)."""
    arr = x.detach().cpu()
    lengths = batch.get("lengths") if isinstance(batch, dict) else None
    if lengths is not None and arr.ndim == 2:
        return [arr[i, : int(n)].numpy() for i, n in enumerate(lengths.tolist())]
    return list(arr.reshape(len(arr), -1).numpy())


def _digest(a: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(a).tobytes(), digest_size=12).digest()


def scan_data(data: Any, task: Any, max_examples: int) -> dict[str, Any]:
    """Per split: examples and class counts; inputs found in two splits (exact and near duplicates)."""
    splits: dict[str, Any] = {}
    exact: dict[str, dict[bytes, int]] = {}
    near: dict[str, dict[bytes, int]] = {}
    t0 = time.perf_counter()
    compare = bool(getattr(task, "inputs_identify_examples", True))  # else: class counts only, no hashing
    for split in ("train", "val", "test"):
        if not data.has(split):
            continue
        try:
            loader = data.loader(split, shuffle=False)
        except TypeError:
            loader = data.loader(split)
        exact[split], near[split] = {}, {}
        counts: dict[int, int] = {}
        i = 0
        for batch in loader:
            x = batch_inputs(batch)
            labels = task.example_labels(batch) if hasattr(task, "example_labels") else None
            if labels is not None:
                for value, n in zip(*np.unique(labels.detach().cpu().numpy(), return_counts=True), strict=True):
                    counts[int(value)] = counts.get(int(value), 0) + int(n)
            if x is None or not compare:
                i += batch_len_of(batch)
                continue
            for row in example_rows(x, batch):
                exact[split].setdefault(_digest(row), i)
                if row.dtype.kind == "f":
                    grid = np.round(row / NEAR_GRID).astype(np.int32)
                    if len(grid) and (grid != grid[0]).any():  # a row that is one value on the grid says nothing
                        near[split].setdefault(_digest(grid), i)
                i += 1
            if i >= max_examples:
                break
        splits[split] = {"examples": i}
        if counts:
            splits[split]["labels"] = {str(k): v for k, v in sorted(counts.items())}
    compared = bool(getattr(task, "inputs_identify_examples", True))
    out: dict[str, Any] = {"splits": splits, "exact": {}, "near": {}, "near_grid": NEAR_GRID, "compared": compared}
    names = list(exact) if compared else []
    for kind, table in (("exact", exact), ("near", near)):  # near: exact ones included (floats only)
        for a_i, a in enumerate(names):
            for b in names[a_i + 1 :]:
                pairs = sorted((table[a][h], table[b][h]) for h in table[a].keys() & table[b].keys())
                out[kind][f"{a}-{b}"] = {"count": len(pairs), "pairs": pairs[:MAX_PAIRS]}
    out["seconds"] = round(time.perf_counter() - t0, 3)
    return out


def batch_len_of(batch: Any) -> int:
    first = next(iter(batch.values())) if isinstance(batch, dict) else batch[0]
    return len(first)


# --- the end of a run: per-example validation outputs --------------------------------------------------------------
def write_predictions(path: Path, trainer: Any, max_examples: int) -> None:
    """``val_predictions.npz``: per-example label, loss and probabilities on the validation split (last weights)."""
    task = trainer.task
    loader = trainer.data.loader("val")
    loader = loader.to(trainer.device) if hasattr(loader, "to") else loader
    parts: dict[str, list[np.ndarray]] = {"label": [], "loss": [], "probs": []}
    was_training = task.model.training
    task.model.eval()
    n = 0
    try:
        with preserved_rng(), torch.no_grad(), trainer._autocast():
            for batch in loader:
                out = task.example_outputs(batch)
                if out is None:
                    return
                for k in parts:
                    parts[k].append(out[k].detach().float().cpu().numpy() if k != "label" else out[k].cpu().numpy())
                n += len(out["label"])
                if n >= max_examples:
                    break
    finally:
        task.model.train(was_training)
    if not n:
        return
    arrays = {k: np.concatenate(v) for k, v in parts.items()}
    arrays["index"] = np.arange(len(arrays["label"]))
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)

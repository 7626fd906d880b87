"""Checkpoints without pickle: weights and optimizer tensors in safetensors, everything else in JSON.

Layout of ``RUN_DIR/checkpoints/{last,best}/``::

    model.safetensors   weights + metadata (model name, config, preprocessing, task)
    state.safetensors   optimizer tensors, RNG states, running sums          (last only)
    state.json          optimizer hyper-parameters, loop position, callbacks (last only)

A task with several optimizers (a GAN) stores each under its name: tensors ``optim:NAME.<param>.<key>`` and
``state.json["optimizers"][NAME]``; a single optimizer keeps the plain ``optim.`` / ``"optimizer"`` layout.

A checkpoint directory is written under a temporary name and swapped in with renames, so a crash (even
SIGKILL) leaves either the old or the new checkpoint, never a mix.

safetensors stores every tensor contiguous; loading gives each restored tensor its live counterpart's memory layout
again: weights are copied into the (e.g. channels_last) parameters, optimizer state is re-laid-out like its
parameter by :func:`match_param_layout` (fused optimizers pair elements by memory position).
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deepkit.errors import CheckpointError
from deepkit.weights import atomic_save_safetensors, atomic_write_text, load_weights

FORMAT_VERSION = 1


# --- optimizer state <-> (tensors, json) ---------------------------------------------------------------------------
def flatten_optimizer(optimizer: torch.optim.Optimizer, prefix: str = "optim") -> tuple[dict[str, torch.Tensor], dict]:
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, pstate in sd["state"].items():
        for name, value in pstate.items():
            key = f"{prefix}.{pid}.{name}"
            if isinstance(value, torch.Tensor):
                tensors[key] = value
            else:
                scalars[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict, prefix: str = "optim") -> dict:
    state: dict[int, dict] = {}
    for key, value in [*tensors.items(), *meta["scalars"].items()]:
        if not key.startswith(prefix + "."):
            continue
        pid, name = key[len(prefix) + 1 :].split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def match_param_layout(optimizer: torch.optim.Optimizer) -> None:
    """Give every optimizer state tensor shaped like its parameter (Adam's moments, SGD's momentum) the parameter's
    memory layout (strides).

    A checkpoint stores them contiguous and ``Optimizer.load_state_dict`` keeps that layout. The fused kernels (fused
    Adam/AdamW/SGD, on the CPU as on CUDA) walk parameter, gradient and state as flat memory, so a channels_last
    (NHWC) kernel with contiguous (NCHW) moments would be updated with other elements' moments: a wrong step after
    every resume, not a rounding difference. Sharded (DTensor) parameters are left to their own loader.
    """
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p)
            if not state or type(p) not in (torch.Tensor, nn.Parameter):
                continue
            for key, value in state.items():
                if type(value) is torch.Tensor and value.shape == p.shape and value.stride() != p.stride():
                    state[key] = torch.empty_like(p, dtype=value.dtype).copy_(value)


def load_optimizer_state(optimizer: torch.optim.Optimizer, state_dict: dict) -> None:
    """``optimizer.load_state_dict`` with each state tensor in its parameter's memory layout (every resume path)."""
    optimizer.load_state_dict(state_dict)
    match_param_layout(optimizer)


def flatten_optimizers(optimizers: dict[str, torch.optim.Optimizer]) -> tuple[dict[str, torch.Tensor], dict]:
    """Named optimizers -> (tensors, {"optimizers": {name: json meta}})."""
    tensors, metas = {}, {}
    for name, opt in optimizers.items():
        t, metas[name] = flatten_optimizer(opt, f"optim:{name}")
        tensors.update(t)
    return tensors, {"optimizers": metas}


def load_named_optimizers(
    optimizers: dict[str, torch.optim.Optimizer], tensors: dict[str, torch.Tensor], state: dict, source: str
) -> None:
    """Restore every named optimizer from a checkpoint; all names must be there."""
    saved = state.get("optimizers") or {}
    missing = [name for name in optimizers if name not in saved]
    if missing:
        raise CheckpointError(
            f"checkpoint {source} has no state for optimizer(s) {missing} (it holds {sorted(saved) or 'one unnamed'});"
            " expected a checkpoint of the same task"
        )
    for name, opt in optimizers.items():
        load_optimizer_state(opt, unflatten_optimizer(tensors, saved[name], f"optim:{name}"))


# --- RNG states ----------------------------------------------------------------------------------------------------
def capture_rng() -> tuple[dict[str, torch.Tensor], dict]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    np_state = np.random.get_state()
    tensors["rng.numpy.keys"] = torch.from_numpy(np_state[1].astype(np.int64))
    py = random.getstate()
    meta = {
        "numpy": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": [py[0], list(py[1]), py[2]],
    }
    return tensors, meta


def restore_rng(tensors: dict[str, torch.Tensor], meta: dict) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    n = meta["numpy"]
    np.random.set_state((n[0], tensors["rng.numpy.keys"].numpy().astype(np.uint32), n[1], n[2], n[3]))
    p = meta["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))


# --- whole checkpoints ---------------------------------------------------------------------------------------------
def model_metadata(model: nn.Module, extra: dict | None = None) -> dict:
    from deepkit.models.registry import describe_config

    return {
        "format": FORMAT_VERSION,
        "model": getattr(model, "model_name", None),
        "model_config": describe_config(model),
        **(extra or {}),
    }


def unwrap(model: nn.Module) -> nn.Module:
    """The module whose state dict we save (strip torch.compile and DDP wrappers)."""
    model = getattr(model, "_orig_mod", model)
    return getattr(model, "module", model)


def save_checkpoint(
    directory: str | Path,
    model: nn.Module,
    meta: dict,
    optimizer: torch.optim.Optimizer | dict[str, torch.optim.Optimizer] | None = None,
    state: dict | None = None,
    state_tensors: dict[str, torch.Tensor] | None = None,
    weights: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write a checkpoint directory atomically (temp dir + rename). ``optimizer``/``state`` make it resumable.

    ``optimizer`` may be a dict of named optimizers (manual-optimization tasks); each is saved under its name.
    ``weights``: the state dict to save instead of ``model.state_dict()`` (gathered from an FSDP2-sharded model).
    """
    directory = Path(directory)
    tmp = directory.with_name(f".tmp-{directory.name}")
    old = directory.with_name(f".old-{directory.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model = unwrap(model)
    weights = model.state_dict() if weights is None else weights
    atomic_save_safetensors(weights, tmp / "model.safetensors", model_metadata(model, meta))
    if optimizer is not None:
        if isinstance(optimizer, dict):
            o_tensors, o_json = flatten_optimizers(optimizer)
        else:
            o_tensors, o_meta = flatten_optimizer(optimizer)
            o_json = {"optimizer": o_meta}
        r_tensors, r_meta = capture_rng()
        tensors = {**o_tensors, **r_tensors, **(state_tensors or {})}
        atomic_save_safetensors(tensors, tmp / "state.safetensors")
        payload = {"format": FORMAT_VERSION, **o_json, "rng": r_meta, **(state or {})}
        atomic_write_text(tmp / "state.json", json.dumps(payload, indent=1))
    # swap: directory -> old, tmp -> directory, drop old. A crash in between leaves `old` intact (see find_checkpoint).
    shutil.rmtree(old, ignore_errors=True)
    if directory.exists():
        directory.rename(old)
    tmp.rename(directory)
    shutil.rmtree(old, ignore_errors=True)
    return directory


def find_checkpoint(directory: str | Path) -> Path | None:
    """The checkpoint directory, or the previous one if a crash interrupted the swap."""
    directory = Path(directory)
    for candidate in (directory, directory.with_name(f".old-{directory.name}")):
        if (candidate / "model.safetensors").is_file():
            return candidate
    return None


def load_training_state(directory: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict, dict]:
    """(model state dict, model metadata, state tensors, state json) of a resumable checkpoint."""
    found = find_checkpoint(directory)
    if found is None or not (found / "state.json").is_file():
        raise CheckpointError(
            f"no resumable checkpoint in {directory} (expected model.safetensors, state.safetensors and state.json)"
        )
    weights, meta = load_weights(found / "model.safetensors")
    s_tensors, _ = load_weights(found / "state.safetensors")
    try:
        s_json = json.loads((found / "state.json").read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"corrupt {found / 'state.json'}: {e}") from None
    return weights, meta, s_tensors, s_json

"""Safe weight files: safetensors by default; pickle-based files only when the user says they trust them.

A ``torch.save`` file is a pickle and can run arbitrary code when loaded. deepkit refuses it unless
``trust_pickle=True`` (CLI: ``--trust-pickle``), and even then loads with ``weights_only=True``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

from deepkit.errors import CheckpointError

META_KEY = "deepkit"  # safetensors metadata key holding our JSON (model name, config, preprocessing)


def is_safetensors(path: Path) -> bool:
    """A safetensors file starts with an 8-byte little-endian header length and a JSON object."""
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9 or head[8:9] != b"{":
        return False
    n = int.from_bytes(head[:8], "little")
    return 0 < n <= path.stat().st_size - 8


def resolve_weights_path(path: str | Path) -> Path:
    """A file, a checkpoint directory (``.../model.safetensors``) or a run directory (its best, else last)."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"weights not found: {p} (expected a .safetensors file, a checkpoint or a run directory)")
    if p.is_file():
        return p
    for candidate in (
        p / "model.safetensors",
        p / "checkpoints" / "best" / "model.safetensors",
        p / "checkpoints" / "last" / "model.safetensors",
    ):
        if candidate.is_file():
            return candidate
    raise CheckpointError(
        f"no model.safetensors in {p} (expected a run directory with checkpoints/best or a checkpoint)"
    )


def load_weights(path: str | Path, trust_pickle: bool = False) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a state dict and deepkit's metadata (``{}`` for foreign files).

    Raises:
        CheckpointError: the file is missing, corrupt, or pickle-based without ``trust_pickle``.
    """
    p = resolve_weights_path(path)
    if is_safetensors(p):
        from safetensors.torch import load as load_bytes

        try:
            data = p.read_bytes()  # one read: weights and metadata of the same version of the file
            loaded = load_bytes(data)
            state = {k: loaded[k] for k in sorted(loaded)}  # name order, as safetensors' load_file gives them
            n = int.from_bytes(data[:8], "little")
            raw = (json.loads(data[8 : 8 + n]).get("__metadata__") or {}).get(META_KEY)
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"corrupt safetensors file {p}: {e}") from None
        return state, (json.loads(raw) if raw else {})
    if not trust_pickle:
        raise CheckpointError(
            f"refusing to load {p}: it is not safetensors but a pickle-based file, which can run code when loaded; "
            "pass trust_pickle=True (CLI: --trust-pickle) if you trust its source"
        )
    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure here is a bad file
        raise CheckpointError(f"could not read {p} as a torch state dict (weights_only): {e}") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{p} does not hold a state dict of tensors")
    return dict(obj), {}


def atomic_save_safetensors(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict | None = None) -> None:
    """Write a safetensors file via a temp file + rename, so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {META_KEY: json.dumps(metadata)} if metadata else None
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".safetensors")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=meta)
        _fsync(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

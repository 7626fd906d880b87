"""Weight files: safetensors round trips, run directories, and refusal of pickle files unless trusted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import deepkit
from deepkit import create_model
from deepkit.errors import CheckpointError, ConfigError
from deepkit.train.checkpoint import model_metadata
from deepkit.weights import atomic_save_safetensors, is_safetensors, load_weights, resolve_weights_path


def mlp(**kw) -> torch.nn.Module:
    torch.manual_seed(kw.pop("seed", 0))
    return create_model("mlp", **{"in_features": 64, "num_classes": 10, "width": 32, **kw}).eval()


def outputs(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("weights") / "run"
    deepkit.train("digits_mlp", "trainer.epochs=1", "trainer.progress=none", "model.width=32", out=out)
    return out


def test_plain_safetensors_round_trip(tmp_path, x):
    src = mlp()
    path = tmp_path / "plain.safetensors"
    save_file(src.state_dict(), str(path))  # a foreign file: no deepkit metadata, so the config must be given
    assert is_safetensors(path)
    loaded = create_model("mlp", weights=path, in_features=64, num_classes=10, width=32)
    assert torch.equal(outputs(src, x), outputs(loaded, x))
    assert not torch.equal(outputs(mlp(seed=1), x), outputs(loaded, x))  # the comparison can fail


def test_deepkit_safetensors_carries_config(tmp_path, x):
    src = mlp(width=24, depth=3, act="gelu")
    path = tmp_path / "model.safetensors"
    atomic_save_safetensors(src.state_dict(), path, model_metadata(src))
    state, meta = load_weights(path)
    assert meta["model"] == "mlp" and meta["model_config"]["width"] == 24
    assert set(state) == set(src.state_dict())
    loaded = create_model("mlp", weights=path)  # no overrides: the file's config is used
    assert (loaded.cfg.width, loaded.cfg.depth, loaded.cfg.act) == (24, 3, "gelu")
    assert torch.equal(outputs(src, x), outputs(loaded, x))
    assert not list(tmp_path.glob(".tmp-*")), "atomic save left a temporary file behind"


def test_weights_from_run_directory(tiny_run, x):
    best = load_file(str(tiny_run / "checkpoints" / "best" / "model.safetensors"))
    assert resolve_weights_path(tiny_run) == tiny_run / "checkpoints" / "best" / "model.safetensors"
    model = create_model("mlp", weights=tiny_run)
    assert model.cfg.in_features == 64 and model.cfg.width == 32
    for k, v in model.state_dict().items():
        assert torch.equal(v, best[k]), k
    last = create_model("mlp", weights=tiny_run / "checkpoints" / "last")  # a checkpoint directory works too
    assert set(last.state_dict()) == set(best)
    assert outputs(model, x).shape == (5, 10)


def test_weights_of_another_model_are_refused(tiny_run):
    with pytest.raises(ConfigError, match="for model 'mlp', not 'lenet5'"):
        create_model("lenet5", weights=tiny_run)


def test_pickle_file_refused_unless_trusted(tmp_path, x):
    src = mlp()
    path = tmp_path / "model.pt"
    torch.save(src.state_dict(), path)
    with pytest.raises(CheckpointError, match="pickle") as info:
        create_model("mlp", weights=path, in_features=64, width=32)
    assert "trust_pickle" in str(info.value)
    loaded = create_model("mlp", weights=path, trust_pickle=True, in_features=64, width=32)
    assert torch.equal(outputs(src, x), outputs(loaded, x))


def test_trusted_pickle_accepts_wrapped_state_dict(tmp_path, x):
    src = mlp()
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": src.state_dict(), "epoch": 3}, path)
    loaded = create_model("mlp", weights=path, trust_pickle=True, in_features=64, width=32)
    assert torch.equal(outputs(src, x), outputs(loaded, x))


class _Evil:
    """Unpickling this creates a marker file: what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_trusted_pickle_still_refuses_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"weight": torch.zeros(2), "payload": _Evil(marker)}, path)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_weights(path, trust_pickle=True)
    assert not marker.exists(), "loading a weights file ran code from it"


def test_trusted_pickle_of_non_tensors_is_refused(tmp_path):
    path = tmp_path / "not_weights.pt"
    torch.save({"lr": 0.1, "epochs": [1, 2]}, path)
    with pytest.raises(CheckpointError, match="state dict of tensors"):
        load_weights(path, trust_pickle=True)


@pytest.mark.parametrize("trust", [False, True])
def test_garbage_bytes(tmp_path, trust):
    path = tmp_path / "garbage.safetensors"
    path.write_bytes(b"this is not a weights file at all " * 8)
    with pytest.raises(CheckpointError):
        load_weights(path, trust_pickle=trust)


def test_corrupt_safetensors_header(tmp_path):
    path = tmp_path / "broken.safetensors"
    body = b"{not json at all, but long enough}"
    path.write_bytes(len(body).to_bytes(8, "little") + body)
    assert is_safetensors(path)  # looks like one from the outside
    with pytest.raises(CheckpointError, match="corrupt safetensors"):
        create_model("mlp", weights=path)


def test_truncated_safetensors(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file(mlp().state_dict(), str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        create_model("mlp", weights=path, in_features=64, width=32)


def test_missing_weights_and_empty_directory(tmp_path):
    with pytest.raises(CheckpointError, match="weights not found"):
        create_model("mlp", weights=tmp_path / "nope.safetensors")
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        create_model("mlp", weights=tmp_path)


def test_shape_mismatch_names_the_key(tmp_path):
    path = tmp_path / "w32.safetensors"
    save_file(mlp(width=32).state_dict(), str(path))
    with pytest.raises(CheckpointError) as info:
        create_model("mlp", weights=path, in_features=64, width=16)
    msg = str(info.value)
    assert "shape mismatch" in msg and "features.1.weight" in msg
    assert "(32, 64)" in msg and "(16, 64)" in msg


def test_deepkit_file_with_conflicting_override(tmp_path):
    src = mlp(width=32)
    path = tmp_path / "model.safetensors"
    atomic_save_safetensors(src.state_dict(), path, model_metadata(src))
    with pytest.raises(CheckpointError, match=r"features\.1\.weight"):
        create_model("mlp", weights=path, width=48)  # explicit overrides win over the file's config, then misfit


def test_missing_and_unexpected_keys(tmp_path):
    path = tmp_path / "deep.safetensors"
    save_file(mlp(depth=2).state_dict(), str(path))
    with pytest.raises(CheckpointError, match=r"unexpected keys \[.*'features\.4\.weight'"):
        create_model("mlp", weights=path, in_features=64, width=32, depth=1)
    with pytest.raises(CheckpointError, match=r"missing keys \[.*'features\.7\.weight'"):
        create_model("mlp", weights=path, in_features=64, width=32, depth=3)


def test_metadata_is_json(tmp_path):
    src = mlp()
    path = tmp_path / "m.safetensors"
    atomic_save_safetensors(src.state_dict(), path, {**model_metadata(src), "note": "hi"})
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["deepkit"])
    assert meta["note"] == "hi" and meta["model"] == "mlp" and meta["model_config"]["in_features"] == 64

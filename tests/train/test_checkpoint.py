"""Checkpoints without pickle: optimizer state and RNG round trips, atomic directory swaps, file layout."""

from __future__ import annotations

import copy
import json
import random

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from deepkit import Trainer, create_model
from deepkit.data import from_arrays
from deepkit.errors import CheckpointError
from deepkit.tasks import ClassificationTask
from deepkit.train.checkpoint import (
    capture_rng,
    find_checkpoint,
    flatten_optimizer,
    load_named_optimizers,
    load_optimizer_state,
    load_training_state,
    restore_rng,
    save_checkpoint,
    unflatten_optimizer,
)
from deepkit.train.optim import OptimizerConfig, build_optimizer
from deepkit.weights import atomic_save_safetensors, is_safetensors, load_weights


def through_disk(tensors: dict, meta: dict, tmp_path) -> tuple[dict, dict]:
    """What a checkpoint does to the state: tensors via safetensors, the rest via JSON."""
    path = tmp_path / "state.safetensors"
    atomic_save_safetensors(tensors, path)
    return load_file(str(path)), json.loads(json.dumps(meta))


def train_steps(model, opt, n: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x, y = torch.randn(8, 4, generator=g), torch.randint(0, 3, (8,), generator=g)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def nhwc_convnet() -> torch.nn.Module:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(64, 2))
    return net.to(memory_format=torch.channels_last)


def conv_steps(model, opt, n: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x = torch.randn(8, 3, 6, 6, generator=g).contiguous(memory_format=torch.channels_last)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), torch.randint(0, 2, (8,), generator=g)).backward()
        opt.step()


@pytest.mark.parametrize("named", [False, True], ids=["optimizer", "named-optimizers"])
@pytest.mark.parametrize("kind", ["adamw", "sgd"])
def test_fused_optimizer_resumes_exactly_on_channels_last_weights(kind, named, tmp_path):
    """The CPU fast path: channels_last kernels + a fused optimizer. The checkpoint stores the moments contiguous
    (NCHW); restored so, the fused kernel pairs them with the weights by memory position, i.e. with the wrong
    weights (max |d| 0.16 after one AdamW step at lr 0.1). Restored in the parameter's layout: bit-identical."""

    def optimizer(model):
        if kind == "adamw":
            return torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.01, fused=True)
        return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, fused=True)

    model = nhwc_convnet()
    opt = optimizer(model)
    conv_steps(model, opt, 2, seed=1)
    save_checkpoint(tmp_path / "last", model, {}, {"net": opt} if named else opt, state={})

    weights, _, tensors, state = load_training_state(tmp_path / "last")
    resumed = nhwc_convnet()
    resumed.load_state_dict(weights)  # copies into the channels_last parameters
    resumed_opt = optimizer(resumed)
    if named:
        load_named_optimizers({"net": resumed_opt}, tensors, state, "test")
    else:
        load_optimizer_state(resumed_opt, unflatten_optimizer(tensors, state["optimizer"]))
    kernel = resumed[0].weight
    assert not kernel.is_contiguous() and kernel.is_contiguous(memory_format=torch.channels_last)
    for value in resumed_opt.state[kernel].values():
        if value.shape == kernel.shape:
            assert value.stride() == kernel.stride()

    conv_steps(model, opt, 2, seed=2)
    conv_steps(resumed, resumed_opt, 2, seed=2)
    for (k, a), b in zip(model.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_contiguous_moments_pair_wrongly_in_the_fused_kernel():
    """Why the layout matters (torch's behaviour, not deepkit's): a fused AdamW step with contiguous moments on a
    channels_last kernel equals Adam applied to the moments of the element at the same memory position."""
    shape, lr, b1, b2, eps = (2, 3, 2, 2), 0.1, 0.9, 0.999, 1e-8
    g = torch.Generator().manual_seed(0)
    w, grad = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    m, v = torch.rand(shape, generator=g), torch.rand(shape, generator=g) + 0.5

    def adam(m, v):  # the second step of Adam from moments (m, v), bias-corrected
        m2, v2 = b1 * m + (1 - b1) * grad, b2 * v + (1 - b2) * grad * grad
        return w - lr * (m2 / (1 - b1**2)) / ((v2 / (1 - b2**2)).sqrt() + eps)

    p = torch.nn.Parameter(w.clone().contiguous(memory_format=torch.channels_last))
    opt = torch.optim.Adam([p], lr=lr, betas=(b1, b2), eps=eps, fused=True)
    group = {**opt.param_groups[0], "params": [0]}
    moments = {"step": torch.tensor(1.0), "exp_avg": m.clone(), "exp_avg_sq": v.clone()}  # stepped in place
    opt.load_state_dict({"state": {0: moments}, "param_groups": [group]})
    p.grad = grad.contiguous(memory_format=torch.channels_last)
    opt.step()
    by_memory = [t.flatten().view(2, 2, 2, 3).permute(0, 3, 1, 2) for t in (m, v)]  # NCHW storage read as NHWC
    torch.testing.assert_close(p.detach(), adam(*by_memory), rtol=0, atol=1e-6)
    assert (p.detach() - adam(m, v)).abs().max() > 1e-3  # not the logical pairing


@pytest.mark.parametrize(
    "cfg",
    [
        OptimizerConfig(name="adam", lr=0.01),
        OptimizerConfig(name="adamw", lr=0.01, weight_decay=0.1),  # two param groups
        OptimizerConfig(name="sgd", lr=0.1, momentum=0.9),
        OptimizerConfig(name="sgd", lr=0.1, momentum=0.9, nesterov=True),
        OptimizerConfig(name="sgd", lr=0.1, momentum=0.0),  # momentum_buffer is None: a JSON scalar
        OptimizerConfig(name="rmsprop", lr=0.01, momentum=0.5),
    ],
    ids=["adam", "adamw", "sgd", "nesterov", "sgd-no-momentum", "rmsprop"],
)
def test_optimizer_state_round_trip_continues_identically(cfg, tmp_path):
    torch.manual_seed(0)
    model = create_model("mlp", in_features=4, num_classes=3, width=8, depth=2)
    opt = build_optimizer(model, cfg)
    train_steps(model, opt, 3, seed=1)

    tensors, meta = through_disk(*flatten_optimizer(opt), tmp_path)
    assert all(k.startswith("optim.") for k in tensors)
    resumed_model = copy.deepcopy(model)
    resumed_opt = build_optimizer(resumed_model, cfg)
    resumed_opt.load_state_dict(unflatten_optimizer(tensors, meta))

    train_steps(model, opt, 3, seed=2)
    train_steps(resumed_model, resumed_opt, 3, seed=2)
    for (k, a), b in zip(model.state_dict().items(), resumed_model.state_dict().values(), strict=True):
        assert torch.equal(a, b), k

    fresh_model = copy.deepcopy(resumed_model)
    fresh_opt = build_optimizer(fresh_model, cfg)  # negative control: the state matters
    train_steps(fresh_model, fresh_opt, 1, seed=3)
    train_steps(resumed_model, resumed_opt, 1, seed=3)
    if cfg.momentum or cfg.name in ("adam", "adamw"):
        assert any(
            not torch.equal(a, b) for a, b in zip(fresh_model.parameters(), resumed_model.parameters(), strict=True)
        )


def test_flatten_optimizer_keeps_hyper_parameters():
    model = create_model("mlp", in_features=4, num_classes=3, width=8)
    opt = build_optimizer(model, OptimizerConfig(name="adamw", lr=0.003, betas=[0.8, 0.9], weight_decay=0.1))
    train_steps(model, opt, 1, seed=0)
    tensors, meta = flatten_optimizer(opt)
    groups = json.loads(json.dumps(meta))["param_groups"]
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]
    assert groups[0]["lr"] == 0.003 and groups[0]["betas"] == [0.8, 0.9]
    assert any(k.endswith(".exp_avg") for k in tensors) and any(k.endswith(".exp_avg_sq") for k in tensors)


def test_rng_capture_restore(tmp_path):
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    torch.rand(5), np.random.rand(5), random.random()  # move away from the seeded start
    tensors, meta = through_disk(*capture_rng(), tmp_path)
    first = (torch.rand(4), np.random.rand(4), [random.random() for _ in range(4)], torch.randint(0, 10**6, (3,)))
    torch.manual_seed(999)  # scramble everything
    np.random.seed(999)
    random.seed(999)
    restore_rng(tensors, meta)
    second = (torch.rand(4), np.random.rand(4), [random.random() for _ in range(4)], torch.randint(0, 10**6, (3,)))
    assert torch.equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert first[2] == second[2]
    assert torch.equal(first[3], second[3])


def make_checkpoint(directory, resumable=True):
    torch.manual_seed(0)
    model = create_model("mlp", in_features=4, num_classes=3, width=8)
    opt = build_optimizer(model, OptimizerConfig(name="adam"))
    train_steps(model, opt, 2, seed=0)
    if not resumable:
        return model, save_checkpoint(directory, model, {"note": "best"})
    return model, save_checkpoint(
        directory,
        model,
        {"note": "x"},
        opt,
        state={"loop": {"epoch": 3, "batch": 7}},
        state_tensors={"loop.sum.loss": torch.tensor(4.5)},
    )


def test_checkpoint_layout_has_no_pickle(tmp_path):
    model, path = make_checkpoint(tmp_path / "checkpoints" / "last")
    assert path == tmp_path / "checkpoints" / "last"
    assert sorted(p.name for p in path.iterdir()) == ["model.safetensors", "state.json", "state.safetensors"]
    assert is_safetensors(path / "model.safetensors") and is_safetensors(path / "state.safetensors")
    state = json.loads((path / "state.json").read_text())  # plain JSON, not a pickle
    assert state["loop"] == {"epoch": 3, "batch": 7}
    assert {"format", "optimizer", "rng"} <= set(state)
    for f in path.iterdir():
        assert not f.read_bytes().startswith(b"\x80"), f"{f.name} looks like a pickle"
        assert b"PK\x03\x04" not in f.read_bytes()[:4], f"{f.name} looks like a torch.save zip"
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["last"], "temporary dirs left behind"


def test_non_resumable_checkpoint_has_weights_only(tmp_path):
    _, path = make_checkpoint(tmp_path / "best", resumable=False)
    assert [p.name for p in path.iterdir()] == ["model.safetensors"]
    with pytest.raises(CheckpointError, match="no resumable checkpoint"):
        load_training_state(path)


def test_load_training_state_round_trip(tmp_path):
    model, path = make_checkpoint(tmp_path / "last")
    weights, meta, tensors, state = load_training_state(path)
    assert meta["model"] == "mlp" and meta["note"] == "x" and meta["model_config"]["width"] == 8
    for k, v in model.state_dict().items():
        assert torch.equal(weights[k], v)
    assert float(tensors["loop.sum.loss"]) == 4.5
    assert "rng.torch" in tensors and state["loop"]["batch"] == 7
    restored = create_model("mlp", weights=path)
    for k, v in model.state_dict().items():
        assert torch.equal(restored.state_dict()[k], v)


def test_save_replaces_previous_checkpoint(tmp_path):
    target = tmp_path / "last"
    make_checkpoint(target)
    model = create_model("mlp", in_features=4, num_classes=3, width=8)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(0.25)
    save_checkpoint(target, model, {"note": "second"})
    weights = load_file(str(target / "model.safetensors"))
    assert all(bool((v == 0.25).all()) for v in weights.values())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]
    assert not (target / "state.json").exists(), "the new (non-resumable) checkpoint replaced the whole directory"


def test_find_checkpoint_falls_back_to_old_after_interrupted_swap(tmp_path):
    target = tmp_path / "last"
    make_checkpoint(target)
    old = tmp_path / ".old-last"
    target.rename(old)  # a crash between "last -> .old-last" and ".tmp-last -> last"
    assert find_checkpoint(target) == old
    _, _, _, state = load_training_state(target)
    assert state["loop"]["epoch"] == 3
    make_checkpoint(target)  # both present: the new one wins
    assert find_checkpoint(target) == target
    assert find_checkpoint(tmp_path / "missing") is None


def test_half_written_tmp_dir_is_ignored_and_cleaned(tmp_path):
    target = tmp_path / "last"
    make_checkpoint(target)
    junk = tmp_path / ".tmp-last"
    junk.mkdir()
    (junk / "model.safetensors").write_bytes(b"half")
    assert find_checkpoint(target) == target
    make_checkpoint(target)
    assert not junk.exists()


def test_corrupt_state_json(tmp_path):
    _, path = make_checkpoint(tmp_path / "last")
    (path / "state.json").write_text('{"loop": ')
    with pytest.raises(CheckpointError, match="corrupt"):
        load_training_state(path)


def test_trainer_checkpoint_contents(tmp_path):
    rng = np.random.default_rng(0)
    data = from_arrays(rng.normal(size=(64, 4)).astype(np.float32), np.arange(64) % 2, batch_size=16)
    torch.manual_seed(0)
    task = ClassificationTask(create_model("mlp", in_features=4, num_classes=2, width=8), 2, data.preprocessing)
    trainer = Trainer(progress="none", epochs=2, run_dir=tmp_path)
    history = trainer.fit(task, data)
    _, meta, tensors, state = load_training_state(tmp_path / "checkpoints" / "last")
    loop = state["loop"]
    assert (loop["epoch"], loop["batch"], loop["step"]) == (2, 0, trainer.state.step)
    assert loop["history"] == json.loads(json.dumps(history))
    assert any("ModelCheckpoint" in k for k in state["callbacks"])
    assert meta["task"] == {"name": "classification"} and meta["preprocessing"]["input_shape"] == [4]
    best_meta = load_weights(tmp_path / "checkpoints" / "best")[1]
    assert best_meta["monitor"] == "val_accuracy" and 1 <= best_meta["epoch"] <= 2

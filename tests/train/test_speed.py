"""The fast path (train/speed.py): the auto rules with mocked GPUs, the switches acting on a CPU run, activation
checkpointing (same loss and gradients, fewer saved activations), peak memory, and ``--explain-speed``."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from deepkit import Trainer, create_model
from deepkit.config import from_dict
from deepkit.data import from_arrays
from deepkit.data.loader import TensorLoader
from deepkit.data.text import SequenceLoader
from deepkit.errors import ConfigError
from deepkit.tasks import ClassificationTask
from deepkit.train import Callback, TrainerConfig
from deepkit.train.speed import (
    DeviceCopyLoader,
    DeviceInfo,
    checkpoint_blocks,
    find_blocks,
    mfu,
    peak_tflops,
    plan_speed,
)

H100 = DeviceInfo("cuda", "NVIDIA H100 80GB HBM3", (9, 0), 80 * 2**30)
V100 = DeviceInfo("cuda", "Tesla V100-SXM2-16GB", (7, 0), 16 * 2**30)
CPU = DeviceInfo("cpu", "8 threads, AVX2, no native bf16")


def cnn():
    return create_model("simple_cnn", in_channels=1, num_classes=10, channels=[4, 8], input_size=[8, 8], hidden=8)


def small_loader(n=64):
    return TensorLoader(torch.zeros(n, 1, 8, 8), torch.zeros(n, dtype=torch.long), batch_size=16)


def plan(device=H100, steps=5000, model=None, loaders=None, **cfg):
    config = from_dict(TrainerConfig, cfg, "trainer")
    return plan_speed(config, device, model or cnn(), loaders or [small_loader()], steps)


def applied(p) -> dict[str, bool]:
    return {d.name: d.applied for d in p.decisions}


# --- the rules ---------------------------------------------------------------------------------------------------
def test_h100_gets_the_whole_fast_path():
    p = plan(H100, steps=5000)
    on = applied(p)
    for name in ("device_data", "channels_last", "bf16_autocast", "tf32", "fused_optimizer", "compile", "log_sync"):
        assert on[name], (name, p.get(name).reason)
    assert not on["pin_memory"] and not on["cuda_graphs"] and not on["activation_checkpointing"]
    assert p.precision == "bf16" and p.compile_mode == "default"
    assert "5,000 planned steps >= compile_min_steps 2,000" in p.get("compile").reason
    assert all(d.reason for d in p.decisions), "every decision has a reason"


def test_short_gpu_run_is_not_compiled():
    p = plan(H100, steps=300)
    assert not p.on("compile") and p.compile_mode is None
    assert "300 planned steps < compile_min_steps" in p.get("compile").reason
    assert plan(H100, steps=300, speed={"compile_min_steps": 100}).on("compile")


def test_cuda_graphs_compile_with_reduce_overhead():
    p = plan(H100, steps=10, speed={"cuda_graphs": True})
    assert p.on("cuda_graphs") and p.compile_mode == "reduce-overhead"
    on_cpu = plan(CPU, speed={"cuda_graphs": True})
    assert not on_cpu.on("cuda_graphs") and on_cpu.compile_mode is None
    assert "no CUDA graphs" in on_cpu.get("cuda_graphs").reason


def test_v100_has_tensor_cores_but_no_bf16():
    p = plan(V100)
    assert p.on("channels_last") and not p.on("bf16_autocast") and not p.on("tf32") and p.precision == "fp32"


def test_cpu_auto_keeps_the_plain_loop_and_says_why():
    p = plan(CPU, steps=10**6)
    on = applied(p)
    assert on["device_data"] and on["log_sync"] and on["channels_last"]  # NHWC measured faster for conv nets here
    assert on["fused_optimizer"]  # fused AdamW measured ~5x faster per optimizer step than torch's CPU default
    for name in ("pin_memory", "bf16_autocast", "tf32", "compile"):
        assert not on[name], name
    assert p.precision == "fp32" and p.compile_mode is None
    for name in ("bf16_autocast", "compile", "channels_last", "fused_optimizer"):
        reason = p.get(name).reason  # describes this machine and run, quotes no figure measured elsewhere
        assert "measured" not in reason and "2-core" not in reason and " x" not in reason, reason
    assert CPU.name in p.table().splitlines()[0] and "1,000,000 steps" in p.get("compile").reason
    assert "no bf16 instructions" in p.get("bf16_autocast").reason  # this mocked CPU: AVX2, no native bf16


def test_fast_false_turns_every_auto_off_but_keeps_explicit_settings():
    p = plan(H100, speed={"fast": False})
    on = applied(p)
    for name in ("channels_last", "bf16_autocast", "tf32", "fused_optimizer", "compile", "device_data"):
        assert not on[name], name
        assert "fast=false" in p.get(name).reason, p.get(name).reason
    forced = plan(H100, precision="bf16", compile=True, speed={"fast": False, "fused_optimizer": True})
    assert forced.precision == "bf16" and forced.on("compile") and forced.on("fused_optimizer")


def test_explicit_switches_win_and_old_recipes_still_parse():
    for old in ({"precision": "fp32", "compile": False}, {"precision": "bf16", "compile": True}):
        cfg = from_dict(TrainerConfig, old, "trainer")
        assert (cfg.precision, cfg.compile) == (old["precision"], old["compile"])
    p = plan(H100, precision="fp32", compile=False, speed={"channels_last": False, "fused_optimizer": False})
    assert p.precision == "fp32" and not p.on("compile") and not p.on("channels_last") and not p.on("fused_optimizer")
    with pytest.raises(ConfigError, match="trainer.compile"):
        from_dict(TrainerConfig, {"compile": "sometimes"}, "trainer")
    with pytest.raises(ConfigError, match="trainer.precision"):
        from_dict(TrainerConfig, {"precision": "fp16"}, "trainer")


def test_large_data_stays_on_the_host_in_pinned_batches():
    tiny_gpu = DeviceInfo("cuda", "NVIDIA A100-SXM4-40GB", (8, 0), 4 * 2**20)  # 4 MiB: the data does not fit
    loader = TensorLoader(torch.zeros(1024, 1, 8, 8), torch.zeros(1024, dtype=torch.long), 16)  # 256 KiB + 8 KiB
    p = plan(tiny_gpu, loaders=[loader], speed={"device_data_fraction": 0.01})
    assert not p.on("device_data") and p.on("pin_memory")
    assert "> 1% of" in p.get("device_data").reason
    assert plan(tiny_gpu, loaders=[loader]).on("device_data")  # 264 KiB <= 25% of 4 MiB


def test_host_collating_loaders_use_pinned_copies_on_gpu():
    seqs = SequenceLoader([[1, 2, 3], [4, 5]], torch.tensor([0, 1]), batch_size=2)
    p = plan(H100, loaders=[seqs])
    assert not p.on("device_data") and p.on("pin_memory")
    assert "SequenceLoader builds each batch on the host" in p.get("device_data").reason


def test_non_conv_and_manual_tasks():
    mlp = create_model("mlp", in_features=4, num_classes=3)
    assert "no Conv2d" in plan(H100, model=mlp).get("channels_last").reason
    config = from_dict(TrainerConfig, {}, "trainer")
    p = plan_speed(config, H100, cnn(), [small_loader()], 10**5, manual=True)
    assert not p.on("fused_optimizer") and not p.on("compile")
    rms = plan(H100, optimizer={"name": "rmsprop"})
    assert not rms.on("fused_optimizer") and "no fused rmsprop" in rms.get("fused_optimizer").reason


def test_peak_flops_table_and_mfu(monkeypatch):
    monkeypatch.delenv("DEEPKIT_PEAK_TFLOPS", raising=False)
    assert peak_tflops(H100, "bf16") == 989.0
    assert peak_tflops(DeviceInfo("cuda", "NVIDIA H100 PCIe", (9, 0)), "bf16") == 756.0
    assert peak_tflops(DeviceInfo("cuda", "NVIDIA A100-SXM4-80GB", (8, 0)), "fp32", tf32=True) == 156.0
    assert peak_tflops(CPU, "fp32") is None
    assert peak_tflops(DeviceInfo("cuda", "Some Future GPU", (12, 0)), "bf16") is None
    monkeypatch.setenv("DEEPKIT_PEAK_TFLOPS", "2.5")
    assert peak_tflops(CPU, "fp32") == 2.5
    assert mfu(1e12, 0.5, 2.5) == pytest.approx(0.2)
    assert mfu(None, 3.0, 2.5) is None and mfu(1e9, 3.0, None) is None
    monkeypatch.setenv("DEEPKIT_PEAK_TFLOPS", "fast")
    with pytest.raises(ConfigError, match="DEEPKIT_PEAK_TFLOPS"):
        peak_tflops(CPU, "fp32")


# --- acting on the plan (CPU) ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def blobs_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0)
    return from_arrays(x, y, batch_size=16, test_split=0.0, val_split=0.25)


def mlp_task(seed=0):
    torch.manual_seed(seed)
    return ClassificationTask(create_model("mlp", in_features=4, num_classes=3, depth=1, width=16), 3)


def test_forced_fused_optimizer_is_used_and_matches_foreach(blobs_data):
    weights = []
    for fused in (False, True):
        task = mlp_task()
        trainer = Trainer(progress="none", epochs=2, speed={"fused_optimizer": fused})
        trainer.fit(task, blobs_data)
        assert bool(trainer.optimizer.defaults.get("fused")) is fused
        assert trainer.speed.on("fused_optimizer") is fused
        weights.append(torch.cat([p.detach().flatten() for p in task.model.parameters()]))
    torch.testing.assert_close(weights[0], weights[1], rtol=1e-4, atol=1e-5)


def test_forced_channels_last_converts_the_conv_weights():
    x = torch.rand(32, 1, 8, 8)
    data = from_arrays(x.numpy(), np.arange(32) % 2, batch_size=8, test_split=0.0, val_split=0.0)
    model = create_model("simple_cnn", in_channels=1, num_classes=2, channels=[4, 8], input_size=[8, 8], hidden=8)
    Trainer(progress="none", epochs=1, speed={"channels_last": True}).fit(ClassificationTask(model, 2), data)
    conv = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]  # 4 -> 8 channels: NHWC differs
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert not conv.weight.is_contiguous()


def test_device_copy_loader_keeps_batches_and_lengths_on_the_host():
    seqs = SequenceLoader([[1, 2, 3], [4, 5], [6], [7, 8, 9, 10]], torch.tensor([0, 1, 0, 1]), batch_size=2)
    wrapped = DeviceCopyLoader(seqs, torch.device("cpu"), pin=False)
    plain = list(seqs)
    copied = list(wrapped)
    assert len(wrapped) == len(seqs) == len(copied) == 2 and wrapped.num_samples == 4
    for a, b in zip(plain, copied, strict=True):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        assert b["lengths"].device.type == "cpu"
    tuples = list(DeviceCopyLoader(small_loader(40), torch.device("cpu"), pin=False))
    assert [len(b[0]) for b in tuples] == [16, 16, 8] and isinstance(tuples[0], tuple)


def test_explain_speed_prints_the_plan_and_the_log_has_it(blobs_data, tmp_path, capsys):
    Trainer(progress="none", epochs=1, run_dir=tmp_path, speed={"explain": True}).fit(mlp_task(), blobs_data)
    out = capsys.readouterr().out
    assert out.startswith("speed plan (cpu: ") and "[ ] bf16_autocast" in out and "[x] log_sync" in out
    assert "speed plan (cpu: " in (tmp_path / "log.txt").read_text()
    Trainer(progress="none", epochs=1).fit(mlp_task(), blobs_data)
    assert "speed plan" not in capsys.readouterr().out  # only with --explain-speed


# --- peak memory ----------------------------------------------------------------------------------------------------
def test_peak_memory_is_logged_and_sees_a_large_allocation(blobs_data):
    class Hog(Callback):
        def on_step_end(self, trainer):
            if trainer.state.step == 1:
                block = torch.ones(64 * 2**20)  # 256 MiB, touched
                block.sum()

    runs = {}
    for name, cbs in (("hog", [Hog()]), ("plain", [])):  # hog first: the second fit must reset the peak
        trainer = Trainer(progress="none", epochs=1, callbacks=cbs)
        history = trainer.fit(mlp_task(), blobs_data)
        assert history[-1]["peak_rss_mb"] == pytest.approx(trainer.peak_memory["peak_rss_mb"], rel=0.05)
        runs[name] = trainer.peak_memory["peak_rss_mb"]
    assert 20 < runs["plain"] < 64 * 1024, runs  # a python + torch process: tens to hundreds of MiB
    assert "peak_gpu_mb" not in trainer.peak_memory
    if Path("/proc/self/clear_refs").exists():  # Linux: the peak is reset at each fit start
        assert runs["hog"] > runs["plain"] + 200, runs  # the hog's 256 MiB counted in its own run only


# --- activation checkpointing ---------------------------------------------------------------------------------------
def saved_bytes(fn) -> int:
    """Bytes of tensors autograd saves for backward outside checkpointed regions while ``fn()`` runs."""
    total = [0]

    def pack(t):
        total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total[0]


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("name", ["resnet20", "gpt2"])
def test_activation_checkpointing_same_loss_and_grads_less_saved(name):
    torch.manual_seed(0)
    if name == "resnet20":
        kw = {"num_classes": 10, "in_channels": 3}
        x = torch.randn(4, 3, 16, 16)
    else:
        kw = {"vocab_size": 50, "n_embd": 32, "n_layer": 3, "n_head": 2, "n_positions": 16}
        x = torch.randint(0, 50, (2, 16))
    ref = create_model(name, **kw)
    ckpt = create_model(name, **kw)
    ckpt.load_state_dict(ref.state_dict())
    n = checkpoint_blocks(ckpt)
    assert n == (9 if name == "resnet20" else 3)
    assert set(ckpt.state_dict()) == set(ref.state_dict()), "parameter names do not change"
    out = {}
    for tag, model in (("ref", ref), ("ckpt", ckpt)):
        model.train()
        torch.manual_seed(1)  # dropout (GPT-2) draws the same masks; checkpoint replays the RNG state
        holder = {}

        def step(model=model, holder=holder):
            holder["loss"] = model(x).float().pow(2).mean()

        out[tag] = saved_bytes(step)
        holder["loss"].backward()
        out[tag + "_loss"] = holder["loss"].detach()
    torch.testing.assert_close(out["ref_loss"], out["ckpt_loss"], rtol=0, atol=0)
    gr, gc = _grads(ref), _grads(ckpt)
    assert gr.keys() == gc.keys()
    for k in gr:
        torch.testing.assert_close(gr[k], gc[k], rtol=1e-5, atol=1e-6)
    assert out["ckpt"] < 0.5 * out["ref"], out  # most activations are recomputed, not stored
    for (k, a), b in zip(ref.state_dict().items(), ckpt.state_dict().values(), strict=True):
        assert torch.equal(a, b), f"{k}: BatchNorm statistics updated once per step, as without checkpointing"


def test_checkpointing_finds_blocks_of_transformers_and_refuses_flat_models():
    bert = create_model(
        "bert",
        vocab_size=30,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
    )
    assert [type(b).__name__ for b in find_blocks(bert)] == ["BertLayer", "BertLayer"]
    t5 = create_model("t5", vocab_size=30, d_model=16, d_kv=8, d_ff=32, num_layers=2, num_heads=2)
    assert [type(b).__name__ for b in find_blocks(t5)] == ["T5Block"] * 4
    with pytest.raises(ConfigError, match="no repeated blocks"):
        checkpoint_blocks(create_model("mlp", in_features=4, num_classes=3))


def test_trainer_option_checkpoints_and_trains_the_same(blobs_data):
    """trainer.speed.activation_checkpointing=true: same weights after training as without (ResNet: BN included)."""
    x = torch.rand(24, 3, 16, 16)
    data = from_arrays(x.numpy(), np.arange(24) % 3, batch_size=8, test_split=0.0, val_split=0.0)
    finals = []
    for on in (False, True):
        torch.manual_seed(0)
        task = ClassificationTask(create_model("resnet20", num_classes=3, in_channels=3), 3)
        trainer = Trainer(progress="none", epochs=1, speed={"activation_checkpointing": on})
        trainer.fit(task, data)
        assert trainer.speed.on("activation_checkpointing") is on
        finals.append({k: v.clone() for k, v in task.model.state_dict().items()})
    assert "9 blocks" in trainer.speed.get("activation_checkpointing").reason
    for k in finals[0]:
        torch.testing.assert_close(finals[0][k], finals[1][k], rtol=1e-4, atol=1e-5)


def test_a_fit_on_a_mocked_h100_applies_the_plan(monkeypatch):
    """The Trainer acts on each GPU decision: fused optimizer, NHWC weights, bf16 autocast, TF32 flags (restored
    after the fit) and torch.compile with the plan's mode (a recording stand-in here; nothing is compiled on CPU)."""
    from deepkit.train import speed

    compiled, seen = [], {}
    monkeypatch.setattr(speed, "device_info", lambda device: H100)
    monkeypatch.setattr(torch, "compile", lambda model, mode=None: compiled.append(mode) or model)

    class Probe(Callback):
        def on_step_end(self, trainer):
            seen["tf32"] = torch.get_float32_matmul_precision()
            seen["autocast"] = trainer._autocast()

    x = torch.rand(32, 1, 8, 8)
    data = from_arrays(x.numpy(), np.arange(32) % 2, batch_size=8, test_split=0.0, val_split=0.0)
    model = create_model("simple_cnn", in_channels=1, num_classes=2, channels=[4, 8], input_size=[8, 8], hidden=8)
    before = torch.get_float32_matmul_precision()
    trainer = Trainer(progress="none", epochs=1, max_steps=3, callbacks=[Probe()], speed={"compile_min_steps": 2})
    trainer.fit(ClassificationTask(model, 2), data)
    assert compiled == ["default"] and trainer.task.model is model, "compiled for the loop, uncompiled afterwards"
    assert trainer.optimizer.defaults["fused"] is True
    assert [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1].weight.is_contiguous(
        memory_format=torch.channels_last
    )
    assert seen["tf32"] == "high" and torch.get_float32_matmul_precision() == before
    assert seen["autocast"].fast_dtype == torch.bfloat16 and trainer.speed.precision == "bf16"


# --- on a real GPU (skipped without CUDA) ---------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_pinned_copies_on_cuda_give_the_same_batches():
    seqs = SequenceLoader([[1, 2, 3], [4, 5], [6], [7, 8, 9, 10]], torch.tensor([0, 1, 0, 1]), batch_size=2)
    for plain, copied in zip(seqs, DeviceCopyLoader(seqs, torch.device("cuda"), pin=True), strict=True):
        assert copied["tokens"].is_cuda and copied["lengths"].device.type == "cpu"
        assert torch.equal(plain["tokens"], copied["tokens"].cpu())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_auto_fast_path_trains_on_cuda(blobs_data):
    task = mlp_task()
    trainer = Trainer(progress="none", epochs=3, device="cuda", optimizer={"name": "adamw", "lr": 0.01})
    history = trainer.fit(task, blobs_data)
    p = trainer.speed
    assert p.on("device_data") and p.on("fused_optimizer") and trainer.optimizer.defaults["fused"] is True
    assert p.precision == ("bf16" if torch.cuda.get_device_capability() >= (8, 0) else "fp32")
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["peak_gpu_mb"] > 0 and trainer.peak_memory["peak_gpu_mb"] > 0


def test_the_loop_reads_device_values_only_at_log_intervals(blobs_data, monkeypatch):
    """No .item()/float() in deepkit's code per step: per-step logs stay on the device until a log interval (here
    every 4 steps). On a GPU each such read is a synchronization that stalls the queue of kernels."""
    reads = []

    class Window(Callback):  # count host reads between the first and the last step of the epoch
        def on_epoch_start(self, trainer):
            reads.append("start")

        def on_step_end(self, trainer):
            reads.append(f"step {trainer.state.step}")

    for name in ("item", "__float__", "__int__", "__bool__", "tolist"):
        original = getattr(torch.Tensor, name)

        def counting(self, *a, _original=original, _name=name, **k):
            caller = sys._getframe(1).f_code.co_filename
            if "deepkit" in caller:  # torch's own CPU-side reads (AdamW's step counter) are not device syncs
                reads.append(f"{_name} in {Path(caller).name}")
            return _original(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, counting)
    x = np.random.default_rng(0).normal(size=(192, 4)).astype(np.float32)
    data = from_arrays(x, (x[:, 0] > 0).astype(np.int64), batch_size=8, test_split=0.0, val_split=0.0)  # 24 steps
    Trainer(progress="none", epochs=1, log_every=4, callbacks=[Window()]).fit(mlp_task(), data)
    monkeypatch.undo()
    first, last = reads.index("step 1"), reads.index("step 24")
    host_reads = [r for r in reads[first:last] if not r.startswith("step")]
    assert len(host_reads) == 6 * 2, host_reads  # steps 4, 8, ..., 24 (checked before the hook): loss, accuracy


def test_peak_memory_columns_get_no_curve_plot(blobs_data, tmp_path):
    Trainer(progress="none", epochs=2, run_dir=tmp_path).fit(mlp_task(), blobs_data)
    assert "peak_rss_mb" in (tmp_path / "metrics.csv").read_text().splitlines()[0]
    assert {p.name for p in (tmp_path / "plots").iterdir()} == {"loss.png", "accuracy.png", "f1.png"}

"""Transfer learning: per-pattern learning rates, freezing by name, loading pretrained weights with a new head,
the backbone-freezing callback and the recipe's finetune section end to end."""

from __future__ import annotations

import pytest
import torch

import deepkit
from deepkit import create_model
from deepkit.errors import CheckpointError, ConfigError
from deepkit.train.callbacks import Callback
from deepkit.train.finetune import (
    BackboneFreezer,
    FinetuneConfig,
    finetune_lr_mult,
    freeze,
    head_parameter_names,
    head_patterns,
    load_pretrained,
    unfreeze,
)
from deepkit.train.optim import OptimizerConfig, build_optimizer, param_groups
from deepkit.weights import atomic_save_safetensors


def test_head_names_per_family():
    with torch.device("meta"):
        assert head_parameter_names(create_model("resnet18")) == ["fc.weight", "fc.bias"]
        assert head_patterns(create_model("vgg11")) == ["classifier.6.*"]
        assert head_patterns(create_model("alexnet")) == ["classifier.6.*"]
    assert head_patterns(create_model("lenet5")) == ["head.*"]


def test_lr_mult_groups_and_first_match_wins():
    model = create_model("resnet20")
    opt = build_optimizer(
        model, OptimizerConfig(lr=0.1, weight_decay=0.01, lr_mult={"fc.*": 1.0, "layer1.*": 0.0, "*": 0.1})
    )
    by_name = {n: g for g in opt.param_groups for n in g["names"]}
    assert by_name["fc.weight"]["lr"] == pytest.approx(0.1) and by_name["fc.weight"]["weight_decay"] == 0.01
    assert by_name["fc.bias"]["weight_decay"] == 0.0
    assert by_name["layer1.0.conv1.weight"]["lr"] == 0.0
    assert by_name["layer3.2.conv2.weight"]["lr"] == pytest.approx(0.01)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))
    with pytest.raises(ConfigError, match="lr_mult"):
        param_groups(model, 0.0, False, {"fc.*": -1})


def test_logged_lr_is_the_schedules_base_lr_whatever_the_group_order():
    from deepkit.train.optim import Schedule, ScheduleConfig, base_lr

    model = create_model("resnet20")
    # the first group (conv1, matched by "*") runs at 100x and layer1 is frozen at 0x: neither is the base lr
    opt = build_optimizer(model, OptimizerConfig(lr=0.01, lr_mult={"layer1.*": 0.0, "fc.*": 1.0, "*": 100.0}))
    assert opt.param_groups[0]["lr"] == pytest.approx(1.0) and base_lr(opt) == pytest.approx(0.01)
    sched = Schedule(ScheduleConfig(name="cosine"), total_steps=10, steps_per_epoch=10)
    assert sched.apply(opt, 5) == pytest.approx(0.005) == base_lr(opt)


def test_freeze_unfreeze_by_pattern():
    model = create_model("resnet20")
    names = freeze(model, ["conv1.*", "layer1.*"])
    assert "conv1.weight" in names and all(n.startswith(("conv1", "layer1")) for n in names)
    assert not model.conv1.weight.requires_grad and model.layer2[0].conv1.weight.requires_grad
    unfreeze(model, ["layer1.*"])
    assert model.layer1[0].conv1.weight.requires_grad and not model.conv1.weight.requires_grad
    with pytest.raises(ConfigError, match="'layer9.\\*' matches no parameter"):
        freeze(model, ["layer9.*"])


def test_load_pretrained_resets_head_and_reports_misfits(tmp_path):
    src = create_model("resnet20", num_classes=10)
    atomic_save_safetensors(src.state_dict(), tmp_path / "w.safetensors")
    dst = create_model("resnet20", num_classes=5)
    info = load_pretrained(dst, tmp_path / "w.safetensors")
    assert info["skipped_head"] == ["fc.bias", "fc.weight"]
    torch.testing.assert_close(dst.layer3[2].conv2.weight, src.layer3[2].conv2.weight)
    assert dst.fc.weight.shape == (5, 64)
    with pytest.raises(CheckpointError, match=r"shape mismatch .*fc.weight: file \(10, 64\) vs model \(5, 64\)"):
        load_pretrained(create_model("resnet20", num_classes=5), tmp_path / "w.safetensors", reset_head=False)
    with pytest.raises(CheckpointError, match=r"shape mismatch \['bn1.bias: file \(16,\) vs model \(8,\)"):
        load_pretrained(create_model("resnet20", widths=[8, 32, 64]), tmp_path / "w.safetensors")
    with pytest.raises(CheckpointError, match=r"missing keys \['layer3.3.conv1.weight'"):
        load_pretrained(create_model("resnet20", layers=[3, 3, 4]), tmp_path / "w.safetensors")
    with pytest.raises(CheckpointError, match=r"unexpected keys \['layer3.2."):
        load_pretrained(create_model("resnet20", layers=[3, 3, 2]), tmp_path / "w.safetensors")


def test_reset_patterns_keep_fresh_init_and_train_like_the_head(tmp_path):
    src = create_model("simple_cnn", num_classes=10)
    atomic_save_safetensors(src.state_dict(), tmp_path / "w.safetensors")
    torch.manual_seed(123)
    dst = create_model("simple_cnn", num_classes=5)
    fresh_fc = dst.fc[0].weight.detach().clone()
    info = load_pretrained(dst, tmp_path / "w.safetensors", reset=["fc.*"])
    assert info["skipped_head"] == ["fc.0.bias", "fc.0.weight", "head.bias", "head.weight"]
    assert torch.equal(dst.fc[0].weight, fresh_fc) and not torch.equal(dst.fc[0].weight, src.fc[0].weight)
    torch.testing.assert_close(dst.features[1][0].weight, src.features[1][0].weight)
    assert finetune_lr_mult(dst, FinetuneConfig(backbone_lr_mult=0.2, reset=["fc.*"])) == {
        "head.*": 1.0,
        "fc.*": 1.0,
        "*": 0.2,
    }


def test_torch_state_dict_needs_trust(tmp_path):
    src = create_model("lenet5")
    torch.save(src.state_dict(), tmp_path / "w.pt")
    with pytest.raises(CheckpointError, match="pickle-based"):
        load_pretrained(create_model("lenet5"), tmp_path / "w.pt")
    model = create_model("lenet5", num_classes=3)
    load_pretrained(model, tmp_path / "w.pt", trust_pickle=True)
    torch.testing.assert_close(model.features[0].weight, src.features[0].weight)


def test_finetune_lr_mult():
    model = create_model("lenet5")
    assert finetune_lr_mult(model, FinetuneConfig()) is None
    assert finetune_lr_mult(model, FinetuneConfig(backbone_lr_mult=0.1)) == {"head.*": 1.0, "*": 0.1}
    with pytest.raises(ConfigError, match="backbone_lr_mult"):
        finetune_lr_mult(model, FinetuneConfig(backbone_lr_mult=0))


def test_backbone_freezer_follows_epochs(tmp_path, write_mnist):
    """Frozen epochs leave the backbone (and its BN statistics) untouched; after them it trains at its own lr."""
    folder = write_mnist(tmp_path / "mnist", n_train=80, n_test=20)
    snapshots = []

    class Snap(Callback):
        def on_epoch_end(self, trainer, logs):
            m = trainer.task.model
            snapshots.append(
                (
                    m.features[0][0].weight.detach().clone(),
                    m.head.weight.detach().clone(),
                    m.features[0][1].running_mean.clone(),
                )
            )

    common = [
        f"data.path={folder}",
        "model.channels=[4,8]",
        "model.norm=batchnorm",
        "trainer.epochs=3",
        "trainer.progress=none",
    ]
    deepkit.train("mnist_cnn", *common, "trainer.epochs=1", out=tmp_path / "pre")
    pre = create_model("simple_cnn", weights=tmp_path / "pre")
    deepkit.train(
        "mnist_cnn",
        *common,
        f"finetune.weights={tmp_path / 'pre'}",
        "finetune.freeze_backbone_epochs=2",
        "finetune.backbone_lr_mult=0.5",
        "data.classes=[0,1,2]",
        out=tmp_path / "ft",
        callbacks=[Snap()],
    )
    (w1, h1, r1), (w2, h2, r2), (w3, h3, r3) = snapshots
    torch.testing.assert_close(w1, pre.features[0][0].weight)  # loaded, then frozen
    assert torch.equal(w1, w2) and not torch.equal(w2, w3), "backbone trains only after the frozen epochs"
    torch.testing.assert_close(r1, pre.features[0][1].running_mean)
    assert torch.equal(r1, r2) and not torch.equal(r2, r3), "BN statistics stay fixed while the backbone is frozen"
    assert not torch.equal(h1, h2), "the head trains from the start"
    cfg = (tmp_path / "ft" / "config.yaml").read_text()
    assert "lr_mult" in cfg and "head.*" in cfg


def test_finetune_bad_weights_leave_no_run_dir(tmp_path, write_mnist):
    folder = write_mnist(tmp_path / "mnist", n_train=40, n_test=10)
    with pytest.raises(CheckpointError, match="weights not found"):
        deepkit.train("mnist_cnn", f"data.path={folder}", "finetune.weights=nowhere", out=tmp_path / "run")
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match="finetune.freeze_backbone_epoch"):
        deepkit.train("mnist_cnn", f"data.path={folder}", "finetune.freeze_backbone_epoch=1", out=tmp_path / "r")


def test_callback_is_stateless_for_resume():
    assert BackboneFreezer(2).state_dict() == {}


def test_freezer_keeps_fresh_layers_trainable():
    from types import SimpleNamespace

    model = create_model("simple_cnn")
    trainer = SimpleNamespace(
        task=SimpleNamespace(model=model), state=SimpleNamespace(epoch=0, batch=0), log=lambda *a, **k: None
    )
    cb = BackboneFreezer(epochs=1, fresh=["fc.*"])
    model.train()
    cb.on_epoch_start(trainer)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"fc.0.weight", "fc.0.bias", "head.weight", "head.bias"}
    assert not model.features[0][1].training, "frozen batch norm keeps its statistics"
    trainer.state.epoch = 1
    model.train()
    cb.on_epoch_start(trainer)
    assert all(p.requires_grad for p in model.parameters()) and model.features[0][1].training

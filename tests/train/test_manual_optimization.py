"""Manual optimization (a task stepping several optimizers): the GAN's two optimizers, their schedules and the
generator EMA are checkpointed and resumed exactly, in process and after a real SIGKILL."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import read_loop
from deepkit import Trainer, create_model
from deepkit.data import from_arrays
from deepkit.errors import CheckpointError, ConfigError
from deepkit.tasks import GANTask, VAETask
from deepkit.tasks.gan import GANTaskConfig
from deepkit.train import Callback, TrainingDiverged
from deepkit.train.checkpoint import load_training_state


def metrics_rows(run):
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def images():
    """120 digit-like 8×8 images in [0, 1] with 3 labels: 96 train (12 batches of 8) / 24 val."""
    from sklearn.datasets import load_digits

    d = load_digits()
    keep = np.isin(d.target, [0, 1, 2])
    x = (d.images[keep][:120] / 16.0).astype(np.float32)[:, None]
    y = d.target[keep][:120]
    return from_arrays(x, y, batch_size=8, val_split=0.2, test_split=0.0, normalize="none")


def make_gan(seed: int = 0, **task_kw) -> GANTask:
    torch.manual_seed(seed)
    model = create_model("cdcgan", num_classes=3, image_size=8, latent_dim=8, g_width=8, d_width=8)
    cfg = GANTaskConfig(**{"g_lr": 1e-3, "d_lr": 3e-3, "ema_decay": 0.9, "label_smoothing": 0.1, **task_kw})
    return GANTask(model, cfg=cfg)


CONFIG = {
    "epochs": 3,
    "seed": 3,
    "optimizer": {"name": "adam", "lr": 1e-3},
    "schedule": {"name": "cosine", "warmup_steps": 4},
    "progress": "none",
}
KEYS = ("epoch", "step", "train_loss", "train_d_loss", "train_g_loss", "val_d_loss", "lr_generator", "lr_discriminator")


class Crash(Callback):
    def __init__(self, at: int):
        self.at = at

    def on_step_end(self, trainer):
        if trainer.state.step == self.at:
            raise KeyboardInterrupt("simulated crash")


@pytest.mark.parametrize("loss", ["nonsaturating", "wgan-gp"])
def test_gan_mid_epoch_resume_is_exact(images, tmp_path, loss):
    ref_task = make_gan(loss=loss)
    ref = Trainer(CONFIG, run_dir=tmp_path / "ref")
    ref_history = ref.fit(ref_task, images)

    crashed = Trainer({**CONFIG, "checkpoint_every": 1}, run_dir=tmp_path / "run", callbacks=[Crash(at=17)])
    with pytest.raises(KeyboardInterrupt):
        crashed.fit(make_gan(loss=loss), images)
    last = tmp_path / "run" / "checkpoints" / "last"
    assert read_loop(last)["step"] == 17 and read_loop(last)["batch"] == 5  # epoch 2, batch 5 of 12

    _, _, tensors, state = load_training_state(last)
    assert set(state["optimizers"]) == {"generator", "discriminator"}
    assert any(k.startswith("optim:generator.") for k in tensors)
    assert any(k.startswith("optim:discriminator.") for k in tensors)

    resumed_task = make_gan(seed=99, loss=loss)  # another init: everything must come from the checkpoint
    resumed = Trainer({**CONFIG, "checkpoint_every": 1}, run_dir=tmp_path / "run")
    history = resumed.fit(resumed_task, images, resume=last)
    ref_state, got = ref_task.model.state_dict(), resumed_task.model.state_dict()
    assert any(k.startswith("generator_ema.") for k in ref_state)
    for k, v in ref_state.items():
        assert torch.equal(v, got[k]), k
    for name in ("generator", "discriminator"):
        a, b = ref.optimizers[name].state_dict(), resumed.optimizers[name].state_dict()
        assert json.dumps(a["param_groups"]) == json.dumps(b["param_groups"])  # JSON: betas tuple -> list
        for pid, s in a["state"].items():
            for key, value in s.items():
                assert torch.equal(torch.as_tensor(value), torch.as_tensor(b["state"][pid][key])), (name, pid, key)
    assert [[h[k] for k in KEYS] for h in history] == [[h[k] for k in KEYS] for h in ref_history]


def test_two_timescale_learning_rates_follow_the_schedule(images):
    task = make_gan()
    trainer = Trainer({**CONFIG, "epochs": 1, "schedule": {"name": "constant", "warmup_steps": 4}})
    history = trainer.fit(task, images)
    g, d = trainer.optimizers["generator"], trainer.optimizers["discriminator"]
    assert g.param_groups[0]["initial_lr"] == 1e-3 and d.param_groups[0]["initial_lr"] == 3e-3
    assert g.param_groups[0]["betas"] == (0.5, 0.999)  # the task's GAN betas override trainer.optimizer's
    assert history[0]["lr_generator"] == pytest.approx(1e-3) and history[0]["lr_discriminator"] == pytest.approx(3e-3)
    gen = {id(p) for p in task.model.generator.parameters()}
    assert {id(p) for grp in g.param_groups for p in grp["params"]} == gen
    assert not any(id(p) in gen for grp in d.param_groups for p in grp["params"])


def test_ema_moves_towards_the_generator(images):
    task = make_gan(ema_decay=0.5)
    before = {k: v.clone() for k, v in task.model.generator_ema.state_dict().items()}
    Trainer({**CONFIG, "epochs": 1}).fit(task, images)
    ema, gen = task.model.generator_ema.state_dict(), task.model.generator.state_dict()
    changed = [k for k in ema if ema[k].is_floating_point() and not torch.equal(ema[k], before[k])]
    assert changed, "the EMA generator never moved"
    k = "project.0.weight"
    assert not torch.equal(ema[k], gen[k])  # an average, not a copy
    assert (ema[k] - gen[k]).abs().mean() < (before[k] - gen[k]).abs().mean()


def test_manual_task_rejects_accumulation_and_penalties(images):
    for bad in ({"accumulate": 2}, {"l2": 0.1}):
        with pytest.raises(ConfigError, match="steps its own optimizers"):
            Trainer({**CONFIG, **bad}).fit(make_gan(), images)


def test_single_optimizer_checkpoint_does_not_resume_a_gan(images, tmp_path):
    from deepkit.tasks import ClassificationTask

    cls = ClassificationTask(create_model("mlp", in_features=64, num_classes=3, width=8), 3)
    Trainer({**CONFIG, "epochs": 1}, run_dir=tmp_path / "clf").fit(cls, images)
    gan = Trainer({**CONFIG, "epochs": 1})
    with pytest.raises(CheckpointError):
        gan.fit(make_gan(), images, resume=tmp_path / "clf" / "checkpoints" / "last")


class Poison(Callback):
    """After step ``at`` (and its checkpoint), make the VAE encoder's log-variance overflow: the KL turns Inf/NaN."""

    def __init__(self, at: int):
        self.at = at

    def on_step_end(self, trainer):
        if trainer.state.step == self.at:
            with torch.no_grad():
                trainer.task.model.encoder[-1].bias[trainer.task.model.cfg.latent_dim :] = 1e4


def test_nan_kl_stops_the_run_and_keeps_the_last_good_checkpoint(images, tmp_path):
    torch.manual_seed(0)
    model = create_model("vae", input_size=[8, 8], hidden=[32], latent_dim=4)
    task = VAETask(model)
    trainer = Trainer(
        {**CONFIG, "checkpoint_every": 1, "log_every": 1000}, run_dir=tmp_path / "run", callbacks=[Poison(at=5)]
    )
    with pytest.raises(TrainingDiverged, match=r"training .*kl.* became .*step 6") as info:
        trainer.fit(task, images)
    assert "last good checkpoint" in str(info.value)
    last = tmp_path / "run" / "checkpoints" / "last"
    assert read_loop(last)["step"] == 5
    weights = load_file(str(last / "model.safetensors"))
    assert all(torch.isfinite(w).all() for w in weights.values())


# --- a real SIGKILL mid-epoch, then `deepkit train --resume` -----------------------------------------------------
GAN_ARGS = [
    "train",
    "mnist_cdcgan",
    "data.name=digits",
    "data.batch_size=16",
    "data.val_split=0.1",
    "model.g_width=16",
    "model.d_width=16",
    "model.latent_dim=16",
    "trainer.epochs=3",
    "trainer.checkpoint_every=3",
    "trainer.schedule.name=cosine",
    "trainer.progress=plain",
]


@pytest.mark.slow  # ~60 s: three CLI runs (killed, reference, resumed)
def test_gan_resume_after_sigkill_is_bit_identical(tmp_path, kill_mid_epoch, run_cli_process):
    a, b = tmp_path / "A", tmp_path / "B"
    seen, _ = kill_mid_epoch(GAN_ARGS, a, tmp_path / "a.log", max_batch=60)  # mid-epoch 2 (~66 batches an epoch)
    assert seen is not None, (tmp_path / "a.log").read_text()[-2000:]
    assert json.loads((a / "run.json").read_text())["status"] == "running"
    ref = run_cli_process(*GAN_ARGS, "--out", b, timeout=300)
    assert ref.returncode == 0, ref.stderr
    resumed = run_cli_process("train", "--resume", a, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    for ckpt in ("last", "best"):
        wa = load_file(str(a / "checkpoints" / ckpt / "model.safetensors"))
        wb = load_file(str(b / "checkpoints" / ckpt / "model.safetensors"))
        assert set(wa) == set(wb) and any(k.startswith("generator_ema.") for k in wa)
        for k in wb:
            assert torch.equal(wa[k], wb[k]), f"{ckpt}: {k} differs after resume"
    sa, sb = (
        load_file(str(a / "checkpoints/last/state.safetensors")),
        load_file(str(b / "checkpoints/last/state.safetensors")),
    )
    optim = [k for k in sb if k.startswith("optim:")]
    assert optim and all(torch.equal(sa[k], sb[k]) for k in optim)
    ra, rb = metrics_rows(a), metrics_rows(b)
    assert len(ra) == len(rb) == 3
    for col in ("step", "train_d_loss", "train_g_loss", "val_d_loss", "lr_generator", "lr_discriminator"):
        assert [r[col] for r in ra] == [r[col] for r in rb], col
    assert (a / "plots" / "samples_epoch003.png").is_file()

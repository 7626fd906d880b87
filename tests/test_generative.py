"""Generative runs end to end on the embedded digits (8×8): train -> grids each epoch -> results -> sample / embed,
and the one-line errors of the generative commands."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import deepkit
from deepkit.api import open_run

FAST = ["data.name=digits", "trainer.epochs=2", "trainer.progress=none", "data.batch_size=64"]


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("vae") / "run"
    deepkit.train("mnist_vae", *FAST, "model.hidden=[64]", "model.latent_dim=4", "task.vae.iw_samples=8", out=out)
    return out


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gan") / "run"
    deepkit.train("mnist_cdcgan", *FAST, "model.g_width=8", "model.d_width=8", "model.latent_dim=8", out=out)
    return out


@pytest.fixture(scope="module")
def ae_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ae") / "run"
    deepkit.train("mnist_autoencoder", *FAST, "model.hidden=[8,16]", "task.autoencoder.noise=0.2", out=out)
    return out


def test_vae_run_reports_elbo_terms_and_iw_nll_and_writes_grids(vae_run):
    res = json.loads((vae_run / "results.json").read_text())["metrics"]
    assert res["loss"] == pytest.approx(res["recon"] + res["kl"], rel=1e-4)
    assert 0 < res["iw_nll_k8"] < res["loss"] * 1.05  # the IW estimate is a tighter bound than the ELBO
    rows = (vae_run / "metrics.csv").read_text().splitlines()
    assert {"train_recon", "train_kl", "val_recon", "val_kl"} <= set(rows[0].split(","))
    for name in ("samples", "reconstructions", "interpolations"):
        for suffix in ("", "_epoch001", "_epoch002"):
            assert (vae_run / "plots" / f"{name}{suffix}.png").is_file(), name + suffix


def test_vae_val_split_is_binarized_once_and_training_is_dynamic(vae_run):
    run = open_run(vae_run)
    task, bundle = run.task, run.data
    val = bundle.val[0]
    assert set(val.unique().tolist()) == {0.0, 1.0}
    again = open_run(vae_run).data
    assert (again.val[0] == val).all(), "held-out binarization must be the same every time"
    train = bundle.train[0]
    assert len(train.unique()) > 2  # grey pixels; Bernoulli draws happen per batch
    assert set(task.prepare(train[:64]).unique().tolist()) == {0.0, 1.0}


def test_sample_writes_a_grid_for_vae_and_conditional_gan(vae_run, gan_run, tmp_path, deepkit_cli):
    code, out, _ = deepkit_cli("sample", vae_run, "-n", 16, "--out", tmp_path / "v.png")
    assert code == 0 and "wrote 16 samples" in out
    scale = 56 // 8  # 8×8 digits are enlarged ×7
    assert Image.open(tmp_path / "v.png").size == (8 * (8 * scale + 2) + 2, 2 * (8 * scale + 2) + 2)
    code, _, _ = deepkit_cli("sample", gan_run, "-n", 20, "--label", 7, "--out", tmp_path / "g.png")
    assert code == 0 and (tmp_path / "g.png").is_file()
    assert (gan_run / "plots" / "samples_epoch002.png").is_file()
    metrics = (gan_run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train_d_loss", "train_g_loss", "lr_generator", "lr_discriminator"} <= set(metrics)


def test_conditional_samples_follow_the_label(gan_run):
    task = open_run(gan_run).task
    import torch

    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    a = task.model.sample(4, labels=torch.full((4,), 3), generator=g1)
    b = task.model.sample(4, labels=torch.full((4,), 5), generator=g2)
    assert a.shape == (4, 1, 8, 8) and float(a.min()) >= 0 and float(a.max()) <= 1
    assert not torch.equal(a, b)  # same noise, another label: another image


def test_autoencoder_anomaly_report_latent_plot_and_embed(ae_run, tmp_path, deepkit_cli):
    res = json.loads((ae_run / "results.json").read_text())["metrics"]
    for key in ("anomaly_auroc", "anomaly_threshold", "anomaly_f1", "latent2d_knn_accuracy", "pca2d_knn_accuracy"):
        assert key in res, key
    assert 0.0 <= res["anomaly_auroc"] <= 1.0
    assert (ae_run / "plots" / "latent_vs_pca.png").is_file()
    bundle = open_run(ae_run).data
    assert 0 not in bundle.train[1].tolist() and 0 not in bundle.val[1].tolist()  # the anomaly is held out
    assert 0 in bundle.test[1].tolist()
    code, out, _ = deepkit_cli("encode", ae_run, "--out", tmp_path / "codes.csv")
    assert code == 0
    lines = (tmp_path / "codes.csv").read_text().splitlines()
    assert lines[0] == "label," + ",".join(f"z{i}" for i in range(8))
    assert len(lines) - 1 == len(bundle.test[1]) and f"wrote {len(bundle.test[1])} codes of dimension 8" in out
    code, _, _ = deepkit_cli("embed", ae_run, "--split", "val", "--out", tmp_path / "codes.npz")  # the former name
    assert code == 0 and np.load(tmp_path / "codes.npz")["codes"].shape == (len(bundle.val[1]), 8)


def test_eval_of_a_generative_run_matches_its_results(vae_run, deepkit_cli):
    code, out, _ = deepkit_cli("eval", vae_run, "--json")
    assert code == 0
    got, want = json.loads(out), json.loads((vae_run / "results.json").read_text())["metrics"]
    for key in ("loss", "recon", "kl"):
        assert got[key] == pytest.approx(want[key], rel=1e-5), key


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["sample", "{gan}", "--label", "12"], "--label 12 is not a class of this GAN; expected 0..9"),
        (["sample", "{vae}", "--label", "3"], "--label needs a class-conditional GAN"),
        (["sample", "{ae}"], "no prior to sample from"),
        (["embed", "{gan}"], "has no encoder"),
        (["embed", "{ae}", "--out", "codes.txt"], "expected a .csv or .npz"),
        (["sample", "{tmp}"], "is not a run directory"),
        (["predict", "{gan}", "x.png"], "use `deepkit sample`"),
    ],
)
def test_generative_command_errors_are_one_line(args, fragment, vae_run, gan_run, ae_run, tmp_path, deepkit_cli):
    paths = {"gan": gan_run, "vae": vae_run, "ae": ae_run, "tmp": tmp_path}
    code, _, err = deepkit_cli(*[a.format(**paths) for a in args])
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and fragment in err, err


@pytest.mark.parametrize(
    "override,fragment",
    [
        ("task.gan.los=hinge", "unknown key 'task.gan.los' (did you mean 'loss'?)"),
        ("task.gan.loss=wgan", "task.gan.loss: expected one of 'nonsaturating', 'hinge', 'wgan-gp', got 'wgan'"),
    ],
)
def test_bad_gan_options_are_named(override, fragment, tmp_path, deepkit_cli):
    code, _, err = deepkit_cli("train", "mnist_cdcgan", override, "--out", tmp_path / "r")
    assert code == 2 and fragment in err, err


def test_task_and_model_must_match(tmp_path, deepkit_cli):
    code, _, err = deepkit_cli("train", "mnist_vae", *FAST, "model.name=dcgan", "--out", tmp_path / "r")
    assert code == 2 and "task 'vae' needs model vae or conv_vae, got model.name=dcgan" in err
    code, _, err = deepkit_cli("train", "mnist_cdcgan", "data.name=diabetes", "--out", tmp_path / "r2")
    assert code == 2 and "expected images (channels, height, width)" in err
    assert not (tmp_path / "r").exists() and not (tmp_path / "r2").exists()


def test_a_collapsing_gan_stops_with_the_step_where_it_started(tmp_path, deepkit_cli):
    """D far faster than G (d_lr 0.01 vs g_lr 1e-6, no smoothing): D's loss falls to ~0 and stays there."""
    out = tmp_path / "div"
    code, _, err = deepkit_cli(
        "train",
        "mnist_dcgan",
        *FAST,
        "trainer.epochs=5",
        "model.spectral_norm=false",
        "model.g_width=8",
        "model.d_width=8",
        "model.latent_dim=8",
        "task.gan.loss=nonsaturating",
        "task.gan.d_lr=0.01",
        "task.gan.g_lr=0.000001",
        "task.gan.divergence_window=20",
        "trainer.log_every=10",
        "--out",
        out,
    )
    assert code == 2 and "GAN training diverged: discriminator loss stayed below 0.01" in err, err
    start = int(err.split("starting at step ")[1].split(".")[0])
    status = json.loads((out / "run.json").read_text())
    assert status["status"] == "failed" and f"starting at step {start}" in status["error"]
    last = json.loads((out / "checkpoints" / "last" / "state.json").read_text())["loop"]
    assert last["step"] < start + 20  # the checkpoint predates the detected collapse

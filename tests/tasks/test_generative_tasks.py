"""VAE / GAN / autoencoder tasks: loss terms against torch.distributions and the papers' formulas, the IW bound,
KL warm-up, gradient penalty, divergence detection."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepkit import create_model
from deepkit.tasks import AutoencoderTask, GANTask, VAETask
from deepkit.tasks.autoencoder import AutoencoderTaskConfig
from deepkit.tasks.gan import GANDiverged, GANTaskConfig
from deepkit.tasks.vae import VAETaskConfig, binarize, kl_to_standard_normal, log_likelihood

D = torch.distributions


def test_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    ref = D.kl_divergence(D.Normal(mu, (0.5 * logvar).exp()), D.Normal(0.0, 1.0)).sum(1)
    torch.testing.assert_close(kl_to_standard_normal(mu, logvar), ref)


def test_log_likelihoods_match_torch_distributions():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 1, 3, 3, generator=g) * 3
    xb = torch.bernoulli(torch.full((4, 1, 3, 3), 0.4), generator=g)
    ref = D.Bernoulli(logits=logits).log_prob(xb).flatten(1).sum(1)
    torch.testing.assert_close(log_likelihood(logits, xb, "bernoulli"), ref)
    x = torch.rand(4, 1, 3, 3, generator=g)
    lam = logits.sigmoid().double()  # continuous Bernoulli by its formula: λ^x (1-λ)^(1-x) C(λ)
    log_c = torch.log(2 * torch.atanh(1 - 2 * lam) / (1 - 2 * lam))
    ref = (x * lam.log() + (1 - x) * (1 - lam).log() + log_c).flatten(1).sum(1)
    torch.testing.assert_close(log_likelihood(logits, x, "continuous_bernoulli").double(), ref, rtol=1e-4, atol=1e-4)


def test_binarize_modes():
    x = torch.tensor([[0.2, 0.5, 0.51, 1.0]])
    assert binarize(x, "threshold").tolist() == [[0.0, 0.0, 1.0, 1.0]]
    draws = binarize(torch.full((20000,), 0.3), "dynamic", torch.Generator().manual_seed(0))
    assert set(draws.unique().tolist()) == {0.0, 1.0} and abs(float(draws.mean()) - 0.3) < 0.02


def make_vae(**cfg) -> VAETask:
    torch.manual_seed(0)
    return VAETask(create_model("vae", input_size=[8, 8], hidden=[32], latent_dim=4), cfg=VAETaskConfig(**cfg))


def test_kl_warmup_is_linear_then_beta():
    task = make_vae(kl_warmup_steps=10, beta=0.5)
    assert [task.kl_weight(s) for s in (0, 4, 9, 50)] == pytest.approx([0.05, 0.25, 0.5, 0.5])
    assert make_vae().kl_weight(0) == 1.0


def test_importance_weighting_tightens_the_bound():
    task = make_vae()
    x = torch.bernoulli(torch.rand(256, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(1)
    elbo_nll = task.iw_nll(x, k=1).mean()
    torch.manual_seed(1)
    iw = task.iw_nll(x, k=64).mean()
    task.model.eval()
    with torch.no_grad():
        recon, kl = task.terms(x)
    assert iw < elbo_nll  # log p(x) >= IW_k >= ELBO: more samples, a tighter (lower) NLL estimate
    assert abs(float(elbo_nll) - float((recon + kl).mean())) < 0.05 * float(elbo_nll)  # k=1 is the ELBO


def test_vae_training_step_logs_terms_and_steps_the_optimizer():
    task = make_vae(kl_warmup_steps=100)
    opt = torch.optim.SGD(task.model.parameters(), lr=0.01)

    class Ctx:
        step = 0
        optimizers = {"vae": opt}

        def optimize(self, name, loss):
            self.loss = loss
            opt.zero_grad()
            loss.backward()
            opt.step()

    ctx = Ctx()
    x = torch.rand(8, 1, 8, 8)
    before = [p.clone() for p in task.model.parameters()]
    out = task.training_step((x, torch.zeros(8)), ctx)
    assert set(out) == {"loss", "recon", "kl"}
    torch.testing.assert_close(out["loss"], out["recon"] + out["kl"])
    torch.testing.assert_close(ctx.loss.detach(), out["recon"] + 0.01 * out["kl"])  # warm-up weight at step 0
    assert any(not torch.equal(a, b) for a, b in zip(before, task.model.parameters(), strict=True))


# --- GAN -----------------------------------------------------------------------------------------------------------
def make_gan(**cfg) -> GANTask:
    torch.manual_seed(0)
    model = create_model("dcgan", image_size=8, latent_dim=4, g_width=4, d_width=4)
    return GANTask(model, cfg=GANTaskConfig(**cfg))


def test_gan_losses_match_their_definitions():
    r, f = torch.tensor([2.0, -1.0, 0.5]), torch.tensor([-3.0, 0.2, 1.5])
    ns = make_gan(label_smoothing=0.1)
    ref_d = -(0.9 * F.logsigmoid(r) + 0.1 * F.logsigmoid(-r)).mean() - F.logsigmoid(-f).mean()
    torch.testing.assert_close(ns.d_loss(r, f), ref_d)
    torch.testing.assert_close(ns.g_loss(f), -F.logsigmoid(f).mean())
    hinge = make_gan(loss="hinge")
    torch.testing.assert_close(hinge.d_loss(r, f), torch.tensor((0 + 2 + 0.5) / 3 + (0 + 1.2 + 2.5) / 3))
    torch.testing.assert_close(hinge.g_loss(f), -f.mean())
    torch.testing.assert_close(make_gan(loss="wgan-gp").d_loss(r, f), f.mean() - r.mean())


class Linear(nn.Module):
    """D(x) = w·x with ‖w‖ = scale: its gradient norm is `scale` everywhere."""

    def __init__(self, scale: float):
        super().__init__()
        w = torch.randn(64)
        self.w = nn.Parameter(w / w.norm() * scale)

    def forward(self, x, labels=None):
        return x.flatten(1) @ self.w


@pytest.mark.parametrize("scale,penalty", [(1.0, 0.0), (3.0, 4.0)])
def test_gradient_penalty_of_a_linear_critic(scale, penalty):
    task = make_gan(loss="wgan-gp")
    task.model.discriminator = Linear(scale)
    real, fake = torch.rand(5, 1, 8, 8), torch.rand(5, 1, 8, 8)
    assert float(task.gradient_penalty(real, fake, None).detach()) == pytest.approx(penalty, abs=1e-5)


def feed(task: GANTask, rows):
    task.trace = [torch.tensor(r, dtype=torch.float32) for r in rows]
    task.check_training(int(rows[-1][0]))


def test_discriminator_collapse_is_reported_with_its_first_step():
    task = make_gan(divergence_window=50)
    feed(task, [(s, 0.7, 1.0) for s in range(100)])  # healthy: nothing happens
    with pytest.raises(
        GANDiverged, match=r"discriminator loss stayed below 0.01 .* for 50 steps, starting at step 130"
    ):
        feed(task, [(s, 0.5 if s < 130 else 1e-4, 9.0) for s in range(100, 200)])


def test_collapse_streak_spans_check_intervals_and_resets():
    task = make_gan(divergence_window=50)
    feed(task, [(s, 1e-4, 1.0) for s in range(0, 40)])  # 40 bad steps: not yet
    feed(task, [(s, 0.5, 1.0) for s in range(40, 45)])  # recovered: the streak resets
    feed(task, [(s, 1e-4, 1.0) for s in range(45, 90)])  # 45 bad steps: not yet
    with pytest.raises(GANDiverged, match="starting at step 45"):
        feed(task, [(s, 1e-4, 1.0) for s in range(90, 100)])


def test_collapse_streak_survives_a_checkpoint_round_trip():
    task = make_gan(divergence_window=50)
    feed(task, [(s, 1e-4, 1.0) for s in range(0, 40)])
    resumed = make_gan(divergence_window=50)
    resumed.load_state_dict(json.loads(json.dumps(task.state_dict())))
    with pytest.raises(GANDiverged, match="starting at step 0"):
        feed(resumed, [(s, 1e-4, 1.0) for s in range(40, 60)])


def test_generator_explosion_and_nan_are_reported():
    with pytest.raises(GANDiverged, match=r"generator loss stayed above 15.0 for 20 steps, starting at step 7"):
        feed(make_gan(divergence_window=20), [(s, 0.3, 1.0 if s < 7 else 40.0) for s in range(40)])
    with pytest.raises(GANDiverged, match=r"non-finite .* at step 12"):
        feed(make_gan(divergence="warn"), [(s, 0.3, math.nan if s >= 12 else 1.0) for s in range(20)])


def test_warn_mode_prints_once_and_continues(capsys):
    task = make_gan(divergence="warn", divergence_window=10)
    feed(task, [(s, 1e-5, 1.0) for s in range(30)])
    feed(task, [(s, 1e-5, 1.0) for s in range(30, 60)])
    err = capsys.readouterr().err
    assert err.count("warning: GAN training diverged") == 1 and "starting at step 0" in err


def test_gan_training_step_updates_both_networks_and_the_ema():
    task = make_gan()
    opts = {n: torch.optim.Adam(m.parameters(), lr=1e-2) for n, (m, _) in task.optimizer_targets().items()}
    from deepkit.train.manual import ManualStep
    from deepkit.train.optim import Schedule, ScheduleConfig

    ctx = ManualStep(opts, Schedule(ScheduleConfig(), 10, 10)).at(0)
    snap = {k: v.clone() for k, v in task.model.state_dict().items()}
    out = task.training_step((torch.rand(6, 1, 8, 8), torch.zeros(6, dtype=torch.long)), ctx)
    assert {"loss", "d_loss", "g_loss", "d_real", "d_fake"} <= set(out)
    after = task.model.state_dict()
    for part in ("generator.", "discriminator.", "generator_ema."):
        assert any(not torch.equal(snap[k], after[k]) for k in snap if k.startswith(part)), part
    assert all(p.requires_grad for p in task.model.discriminator.parameters())  # restored after the G step


# --- autoencoder ---------------------------------------------------------------------------------------------------
def test_denoising_autoencoder_trains_on_noisy_inputs_against_clean_targets():
    torch.manual_seed(0)
    model = create_model("autoencoder", input_size=[8, 8], hidden=[16], latent_dim=2)
    seen = []
    model.register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()))
    task = AutoencoderTask(model, cfg=AutoencoderTaskConfig(noise=0.3))
    x = torch.rand(4, 1, 8, 8)
    out = task.training_step((x, torch.zeros(4)))
    assert not torch.equal(seen[0], x) and seen[0].min() >= 0 and seen[0].max() <= 1
    with torch.no_grad():
        ref = F.binary_cross_entropy_with_logits(model(seen[0]), x)
    torch.testing.assert_close(out["loss"].detach(), ref)
    scores = task.anomaly_scores(torch.cat([x, torch.rand(2, 1, 8, 8)]))
    assert scores.shape == (6,) and torch.isfinite(scores).all()

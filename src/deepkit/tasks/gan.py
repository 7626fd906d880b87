"""GAN training: alternating discriminator and generator steps with their own optimizers (manual optimization).

Losses (D: discriminator logits on real r and generated f images):
  nonsaturating  D: -log σ(r) - log(1 - σ(f)),  G: -log σ(f)          (Goodfellow et al., 2014)
  hinge          D: relu(1 - r) + relu(1 + f),  G: -f                  (Lim & Ye, 2017; Miyato et al., 2018)
  wgan-gp        D: f - r + λ (‖∇D(x̂)‖ - 1)²,   G: -f                  (Gulrajani et al., 2017)
Stabilizers: one-sided label smoothing (Salimans et al., 2016), spectral norm (model option), two-timescale learning
rates (Heusel et al., 2017: ``g_lr``/``d_lr``), an EMA of the generator (model.generator_ema).

Divergence: per-step losses are kept on the device and checked at every log interval and checkpoint; NaN/Inf, a
discriminator loss stuck near 0, or a generator loss stuck very high for ``divergence_window`` steps raises
:class:`GANDiverged` naming the step where it started (``divergence=warn`` prints instead).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import nn

from deepkit.data.preprocess import Preprocessing
from deepkit.errors import DeepkitError
from deepkit.tasks.base import Task

if TYPE_CHECKING:
    pass


class GANDiverged(DeepkitError):
    """GAN training collapsed or produced NaN; the message names the step where it started."""


@dataclass
class GANTaskConfig:
    loss: Literal["nonsaturating", "hinge", "wgan-gp"] = "nonsaturating"
    g_lr: float | None = None  # generator learning rate (default trainer.optimizer.lr)
    d_lr: float | None = None  # discriminator learning rate (two-timescale: often 2-4x g_lr)
    betas: list[float] = field(default_factory=lambda: [0.5, 0.999])  # Adam betas for both (DCGAN's choice)
    d_steps: int = 1  # discriminator steps per generator step (5 is usual for wgan-gp)
    label_smoothing: float = 0.0  # one-sided: real targets become 1 - label_smoothing (nonsaturating loss)
    gp_weight: float = 10.0  # wgan-gp: λ
    ema_decay: float = 0.999  # generator EMA; 0 turns it off (the EMA then just copies the generator)
    divergence: Literal["stop", "warn", "off"] = "stop"
    divergence_window: int = 200  # consecutive steps of collapse before it counts as divergence
    d_loss_floor: float = 0.01  # collapse: discriminator loss below this (nonsaturating/hinge)
    g_loss_ceiling: float = 15.0  # collapse: generator loss above this (nonsaturating); wgan-gp: |loss| > 1e4


@dataclass
class GANTaskSection:
    """The ``task`` section of a GAN recipe (dcgan/cdcgan): ``{name: gan, gan: {...}}``."""

    name: str = "gan"
    gan: GANTaskConfig = field(default_factory=GANTaskConfig)


class GANTask(Task):
    """Trains a ``dcgan``/``cdcgan`` model. Logs ``d_loss``, ``g_loss``, ``d_real`` and ``d_fake`` (mean D(x))."""

    name = "gan"
    monitor = "epoch"  # the latest (EMA) generator: adversarial losses do not measure sample quality
    monitor_mode = "max"
    manual_optimization = True
    loss_falls = False  # deepkit doctor: the sum of the two players' losses is no training curve

    def __init__(self, model: nn.Module, preprocessing: Preprocessing | None = None, cfg: GANTaskConfig | None = None):
        self.cfg = cfg or GANTaskConfig()
        self.trace: list[torch.Tensor] = []  # per-step (step, d_loss, g_loss) on the device, since the last check
        self.streaks = {"d": None, "g": None}  # first step of the current collapse streak of each kind
        self.warned = False
        self.val_gen: torch.Generator | None = None
        super().__init__(model, preprocessing)

    def make_metrics(self):
        import torchmetrics

        return torchmetrics.MetricCollection(
            {k: torchmetrics.MeanMetric() for k in ("d_loss", "g_loss", "d_real", "d_fake")}
        )

    def optimizer_targets(self):
        c = self.cfg
        common = {"betas": list(c.betas)}
        return {
            "discriminator": (self.model.discriminator, {**common, **({"lr": c.d_lr} if c.d_lr else {})}),
            "generator": (self.model.generator, {**common, **({"lr": c.g_lr} if c.g_lr else {})}),
        }

    # --- losses ----------------------------------------------------------------------------------------------------
    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        if self.cfg.loss == "hinge":
            return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
        if self.cfg.loss == "wgan-gp":
            return fake_logits.mean() - real_logits.mean()
        target = torch.full_like(real_logits, 1.0 - self.cfg.label_smoothing)
        return F.binary_cross_entropy_with_logits(real_logits, target) + F.softplus(fake_logits).mean()

    def g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        if self.cfg.loss == "nonsaturating":
            return F.softplus(-fake_logits).mean()  # -log σ(D(G(z)))
        return -fake_logits.mean()

    def gradient_penalty(self, real: torch.Tensor, fake: torch.Tensor, labels) -> torch.Tensor:
        eps = torch.rand(len(real), 1, 1, 1, device=real.device)
        mix = (eps * real + (1 - eps) * fake).requires_grad_(True)
        (grad,) = torch.autograd.grad(self.model.discriminator(mix, labels).sum(), mix, create_graph=True)
        return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()

    def noise(self, n: int, device, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(n, self.model.cfg.latent_dim, device=device, generator=generator)

    # --- steps -----------------------------------------------------------------------------------------------------
    def training_step(self, batch, ctx):
        x, y = batch[0], batch[1]
        real = x * 2 - 1  # images in [0, 1] -> the generator's tanh range
        labels = y if self.model.conditional else None
        G, D = self.model.generator, self.model.discriminator
        for _ in range(self.cfg.d_steps):
            with torch.no_grad():
                fake = G(self.noise(len(x), x.device), labels)
            real_logits, fake_logits = D(real, labels), D(fake, labels)
            d_loss = self.d_loss(real_logits, fake_logits)
            if self.cfg.loss == "wgan-gp":
                d_loss = d_loss + self.cfg.gp_weight * self.gradient_penalty(real, fake, labels)
            ctx.optimize("discriminator", d_loss)
        D.requires_grad_(False)  # the generator step needs gradients w.r.t. images only, not D's weights
        g_loss = self.g_loss(D(G(self.noise(len(x), x.device), labels), labels))
        ctx.optimize("generator", g_loss)
        D.requires_grad_(True)
        self.model.update_ema(self.cfg.ema_decay if self.cfg.ema_decay > 0 else 0.0)
        d_loss, g_loss = d_loss.detach(), g_loss.detach()
        if self.cfg.divergence != "off":
            self.trace.append(torch.stack([torch.tensor(float(ctx.step), device=x.device), d_loss, g_loss]))
        return {
            "loss": d_loss + g_loss,
            "d_loss": d_loss,
            "g_loss": g_loss,
            "d_real": real_logits.detach().sigmoid().mean(),
            "d_fake": fake_logits.detach().sigmoid().mean(),
        }

    def reset_metrics(self) -> None:  # start of an evaluation: the EMA generator gets its own BN statistics
        super().reset_metrics()
        self.val_gen = None
        self.model.refresh_ema_stats()

    @torch.no_grad()
    def validation_step(self, batch):
        x, y = batch[0], batch[1]
        if self.val_gen is None or self.val_gen.device != x.device:  # same noise at every evaluation
            self.val_gen = torch.Generator(device=x.device).manual_seed(0)
        labels = y if self.model.conditional else None
        fake = self.model.generator_ema(self.noise(len(x), x.device, self.val_gen), labels)
        r, f = self.model.discriminator(x * 2 - 1, labels), self.model.discriminator(fake, labels)
        d_loss = self.d_loss(r, f)
        for k, v in {"d_loss": d_loss, "g_loss": self.g_loss(f), "d_real": r.sigmoid(), "d_fake": f.sigmoid()}.items():
            self.metrics[k].update(v)
        return {"loss": d_loss}

    @torch.no_grad()
    def predict_step(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.discriminator(x * 2 - 1).sigmoid()  # P(real) per image

    @torch.no_grad()
    def grids(self, n: int = 64, seed: int = 0) -> dict[str, tuple[torch.Tensor, int]]:
        """EMA-generator samples from fixed noise (one row per class for a conditional model)."""
        g = torch.Generator().manual_seed(seed)
        k = self.model.cfg.num_classes
        nrow = k if k else 8
        if k:
            n = k * max(1, n // k)
        return {"samples": (self.model.sample(n, generator=g), nrow)}

    # --- divergence ------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"streaks": dict(self.streaks), "warned": self.warned}  # the trace was flushed by check_training

    def load_state_dict(self, state: dict) -> None:
        self.streaks = dict(state.get("streaks", {"d": None, "g": None}))
        self.warned = bool(state.get("warned", False))

    def check_training(self, step: int) -> None:
        if not self.trace:
            return
        rows = torch.stack(self.trace).cpu().tolist()  # one sync per log interval
        self.trace = []
        c = self.cfg
        problem = None
        for s, d, g in rows:
            s = int(s)
            if not (math.isfinite(d) and math.isfinite(g)):
                problem = (s, f"the losses became non-finite (d_loss {d}, g_loss {g}) at step {s}")
                break
            if c.loss == "wgan-gp":
                d_bad, g_bad = abs(d) > 1e4, abs(g) > 1e4
            else:
                d_bad, g_bad = d < c.d_loss_floor, c.loss == "nonsaturating" and g > c.g_loss_ceiling
            for kind, bad in (("d", d_bad), ("g", g_bad)):
                self.streaks[kind] = (self.streaks[kind] if self.streaks[kind] is not None else s) if bad else None
                start = self.streaks[kind]
                if start is not None and s - start + 1 >= c.divergence_window:
                    what = (
                        f"discriminator loss stayed below {c.d_loss_floor} (D wins; the generator gets no signal)"
                        if kind == "d"
                        else f"generator loss stayed above {c.g_loss_ceiling}"
                    )
                    problem = (start, f"{what} for {s - start + 1} steps, starting at step {start}")
                    break
            if problem:
                break
        if problem is None:
            return
        message = (
            f"GAN training diverged: {problem[1]}. Try task.gan.loss=hinge, model.spectral_norm=true, "
            "a lower task.gan.d_lr, or task.gan.label_smoothing=0.1"
        )
        nonfinite = "non-finite" in problem[1]
        if c.divergence == "stop" or nonfinite:
            raise GANDiverged(message)
        if not self.warned:
            print(f"warning: {message}", file=sys.stderr, flush=True)
            self.warned = True


class GeneratorInference(nn.Module):
    """Noise z (B, latent_dim) [and class labels (B,)] -> images (B, C, s, s) in [0, 1]: what ``DCGAN.sample``
    computes with its EMA generator, as one module for ``deepkit export`` (call ``refresh_ema_stats`` first)."""

    def __init__(self, generator: nn.Module, conditional: bool):
        super().__init__()
        self.generator, self.conditional = generator, conditional

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return (self.generator(z, labels if self.conditional else None) + 1) / 2

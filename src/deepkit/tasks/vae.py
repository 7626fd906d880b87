"""VAE: the negative ELBO with its reconstruction and KL terms logged separately, KL warm-up, and the
importance-weighted estimate of -log p(x) (Burda et al., 2016).

Images are pixel intensities in [0, 1]. With ``likelihood=bernoulli`` the data are binarized: ``dynamic`` draws
x ~ Bernoulli(pixel) afresh for every training batch (validation/test splits are binarized once, with a fixed seed,
by the data preparation in :mod:`deepkit.families.generative`), ``threshold`` uses pixel > 0.5. ``continuous_bernoulli``
models the grey levels themselves (Loaiza-Ganem & Cunningham, 2019).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import nn

from deepkit.data.preprocess import Preprocessing
from deepkit.tasks.base import Task

if TYPE_CHECKING:
    pass


@dataclass
class VAETaskConfig:
    likelihood: Literal["bernoulli", "continuous_bernoulli"] = "bernoulli"
    binarize: Literal["dynamic", "threshold"] = "dynamic"  # bernoulli likelihood: how grey pixels become 0/1
    beta: float = 1.0  # weight of the KL term after warm-up (1 = the ELBO)
    kl_warmup_steps: int = 0  # KL weight rises linearly from 0 to beta over this many steps (Bowman et al., 2016)
    iw_samples: int = 100  # importance samples per image for the test log-likelihood estimate


@dataclass
class VAETaskSection:
    """The ``task`` section of a VAE recipe (vae/conv_vae): ``{name: vae, vae: {...}}``."""

    name: str = "vae"
    vae: VAETaskConfig = field(default_factory=VAETaskConfig)


def binarize(x: torch.Tensor, mode: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """Grey images in [0, 1] -> {0, 1}: Bernoulli draws (``dynamic``) or pixel > 0.5 (``threshold``)."""
    if mode == "threshold":
        return (x > 0.5).to(x.dtype)
    return torch.bernoulli(x, generator=generator)


def log_likelihood(logits: torch.Tensor, x: torch.Tensor, likelihood: str) -> torch.Tensor:
    """log p(x | z) per image (B,), summed over pixels."""
    if likelihood == "continuous_bernoulli":  # Bernoulli cross-entropy + the log normalizer log C(lambda)
        return torch.distributions.ContinuousBernoulli(logits=logits, validate_args=False).log_prob(x).flatten(1).sum(1)
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


def kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per sample (B,), in closed form."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)


class VAETask(Task):
    """Trains a ``vae``/``conv_vae`` model. Logs ``loss`` (= -ELBO, nats per image), ``recon`` and ``kl``."""

    name = "vae"
    monitor = "val_loss"
    monitor_mode = "min"
    manual_optimization = True  # the KL warm-up follows the global step

    def __init__(self, model: nn.Module, preprocessing: Preprocessing | None = None, cfg: VAETaskConfig | None = None):
        self.cfg = cfg or VAETaskConfig()
        self.preview: torch.Tensor | None = None  # a few validation images for the reconstruction grid
        self.val_gen: torch.Generator | None = None
        super().__init__(model, preprocessing)

    def make_metrics(self):
        import torchmetrics

        return torchmetrics.MetricCollection({"recon": torchmetrics.MeanMetric(), "kl": torchmetrics.MeanMetric()})

    def optimizer_targets(self):
        return {"vae": (self.model, {})}

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Training inputs: binarized afresh (dynamic) or thresholded for the Bernoulli likelihood."""
        return binarize(x, self.cfg.binarize) if self.cfg.likelihood == "bernoulli" else x

    def terms(self, x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstruction NLL, KL) per image (B,) for one reparameterized sample z = mu + sigma * eps."""
        mu, logvar = self.model.encode(x)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        logits = self.model.decode(mu + eps * (0.5 * logvar).exp()).float()
        return -log_likelihood(logits, x, self.cfg.likelihood), kl_to_standard_normal(mu.float(), logvar.float())

    def reset_metrics(self) -> None:
        super().reset_metrics()
        self.val_gen = None

    def kl_weight(self, step: int) -> float:
        w = self.cfg.kl_warmup_steps
        return self.cfg.beta * (min(1.0, (step + 1) / w) if w > 0 else 1.0)

    def training_step(self, batch, ctx):
        x = self.prepare(batch[0])
        recon, kl = self.terms(x)
        recon, kl = recon.mean(), kl.mean()
        weight = self.kl_weight(ctx.step)
        ctx.optimize("vae", recon + weight * kl)
        return {"loss": (recon + kl).detach(), "recon": recon.detach(), "kl": kl.detach()}

    @torch.no_grad()
    def validation_step(self, batch):
        x = batch[0]  # val/test splits were binarized once by the data preparation
        if self.val_gen is None or self.val_gen.device != x.device:  # the same eps at every evaluation
            self.val_gen = torch.Generator(device=x.device).manual_seed(0)
        recon, kl = self.terms(x, self.val_gen)
        self.metrics["recon"].update(recon)
        self.metrics["kl"].update(kl)
        return {"loss": (recon + kl).mean()}

    @torch.no_grad()
    def predict_step(self, x: torch.Tensor) -> torch.Tensor:
        mu, _ = self.model.encode(x)
        return mu  # latent means (B, latent_dim)

    @torch.no_grad()
    def iw_nll(self, x: torch.Tensor, k: int | None = None, chunk: int = 128) -> torch.Tensor:
        """Importance-weighted -log p(x) per image (B,), k samples from q(z|x) (Burda et al., 2016; k=1: -ELBO)."""
        k = k or self.cfg.iw_samples
        was = self.model.training
        self.model.eval()
        out = []
        for xb in x.split(chunk):
            mu, logvar = self.model.encode(xb)
            std = (0.5 * logvar).exp()
            logw = []
            for _ in range(k):  # one sample per image at a time keeps memory at one batch
                eps = torch.randn_like(mu)
                z = mu + std * eps
                log_q = (-0.5 * eps.pow(2) - 0.5 * logvar - 0.5 * math.log(2 * math.pi)).sum(1)
                log_p = (-0.5 * z.pow(2) - 0.5 * math.log(2 * math.pi)).sum(1)
                logw.append(log_likelihood(self.model.decode(z), xb, self.cfg.likelihood) + log_p - log_q)
            out.append(-(torch.logsumexp(torch.stack(logw), 0) - math.log(k)))
        self.model.train(was)
        return torch.cat(out)

    @torch.no_grad()
    def grids(self, n: int = 64, seed: int = 0) -> dict[str, tuple[torch.Tensor, int]]:
        """Image grids in [0, 1]: prior samples, reconstructions (input row / output row), latent interpolations."""
        was = self.model.training
        self.model.eval()
        device = next(self.model.parameters()).device
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.model.cfg.latent_dim, generator=g).to(device)
        out = {"samples": (self.model.decode(z).sigmoid(), 8)}
        if self.preview is not None:
            x = self.preview[:8].to(device)
            mu, _ = self.model.encode(x)
            out["reconstructions"] = (torch.cat([x, self.model.decode(mu).sigmoid()]), len(x))
            pairs = min(4, len(x) // 2)
            t = torch.linspace(0, 1, 8, device=device)[None, :, None]  # (1, 8, 1)
            za, zb = mu[:pairs, None], mu[pairs : 2 * pairs, None]  # (P, 1, D)
            path = (1 - t) * za + t * zb  # (P, 8, D): straight lines between the codes of two images
            out["interpolations"] = (self.model.decode(path.flatten(0, 1)).sigmoid(), 8)
        self.model.train(was)
        return out

    def describe(self):
        return {"name": self.name}


class DecoderInference(nn.Module):
    """Latent codes z (B, latent_dim) -> images (B, C, H, W) in [0, 1]: ``VAE.sample`` after its draw of z, as one
    module for ``deepkit export``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.model.decode(z).sigmoid()

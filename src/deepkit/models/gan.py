"""DCGAN (Radford et al., 2016) for small images, unconditional or class-conditional.

The registered module holds the generator, the discriminator and an exponential moving average of the generator
(``generator_ema``, no gradients; Karras et al., 2018). Keeping the EMA inside the module puts it in every checkpoint
(``model.safetensors``), so it is saved and resumed bit-exactly with the rest of the weights.

Conditioning: the generator concatenates a learned label embedding to z; the discriminator is a projection
discriminator (Miyato & Koyama, 2018): D(x, y) = w·h(x) + embed(y)·h(x).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _sn

from deepkit.errors import ConfigError, ShapeError
from deepkit.models.base import example_generator, model_device
from deepkit.models.registry import register_model
from deepkit.nn import get_norm


@dataclass
class DCGANConfig:
    in_channels: int = 1  # image channels (filled from the data)
    image_size: int = 28  # square images; must be divisible by 4
    num_classes: int = 0  # 0: unconditional; K > 0: class-conditional on labels 0..K-1
    latent_dim: int = 100  # z ~ N(0, I) of this size (DCGAN's nz)
    g_width: int = 64  # generator base channels (DCGAN's ngf)
    d_width: int = 64  # discriminator base channels (DCGAN's ndf)
    g_norm: str = "batchnorm"
    d_norm: str = "none"  # batch statistics in D break the per-sample gradient penalty of WGAN-GP
    spectral_norm: bool = False  # spectral normalization of every D layer (Miyato et al., 2018)
    embed_dim: int = 32  # conditional generator: label embedding size


class Generator(nn.Module):
    """z (B, latent) [+ label] -> Linear -> (2w, s/4, s/4) -> 2 × [ConvT stride 2] -> tanh image (B, C, s, s)."""

    def __init__(self, cfg: DCGANConfig):
        super().__init__()
        self.cfg = cfg
        s, w = cfg.image_size // 4, cfg.g_width
        self.embed = nn.Embedding(cfg.num_classes, cfg.embed_dim) if cfg.num_classes else None
        n_in = cfg.latent_dim + (cfg.embed_dim if cfg.num_classes else 0)
        self.project = nn.Sequential(
            nn.Linear(n_in, 2 * w * s * s, bias=False),
            nn.Unflatten(1, (2 * w, s, s)),
            get_norm(cfg.g_norm, 2 * w, "2d"),
            nn.ReLU(),
        )
        self.up = nn.Sequential(
            nn.ConvTranspose2d(2 * w, w, 4, 2, 1, bias=False),  # (B, 2w, s/4) -> (B, w, s/2)
            get_norm(cfg.g_norm, w, "2d"),
            nn.ReLU(),
            nn.ConvTranspose2d(w, cfg.in_channels, 4, 2, 1),  # -> (B, C, s)
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            z = torch.cat([z, self.embed(labels)], dim=1)
        return self.up(self.project(z))


class Discriminator(nn.Module):
    """image (B, C, s, s) -> 2 × [Conv stride 2, LeakyReLU 0.2] -> features h (B, 2w·s²/16) -> one logit per image."""

    def __init__(self, cfg: DCGANConfig):
        super().__init__()
        w, s = cfg.d_width, cfg.image_size // 4
        sn = _sn if cfg.spectral_norm else (lambda m: m)
        self.features = nn.Sequential(
            sn(nn.Conv2d(cfg.in_channels, w, 4, 2, 1)),
            nn.LeakyReLU(0.2),
            sn(nn.Conv2d(w, 2 * w, 4, 2, 1)),
            get_norm(cfg.d_norm, 2 * w, "2d"),
            nn.LeakyReLU(0.2),
            nn.Flatten(),
        )
        self.head = sn(nn.Linear(2 * w * s * s, 1))
        self.embed = sn(nn.Embedding(cfg.num_classes, 2 * w * s * s)) if cfg.num_classes else None

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = self.features(x)  # (B, F)
        out = self.head(h).squeeze(1)  # (B,)
        if self.embed is not None:
            out = out + (self.embed(labels) * h).sum(1)  # projection term
        return out


class DCGAN(nn.Module):
    """DCGAN generator + discriminator (+ EMA generator); conditional when num_classes > 0."""

    def __init__(self, cfg: DCGANConfig):
        super().__init__()
        if cfg.image_size % 4:
            raise ConfigError(f"model.image_size must be divisible by 4, got {cfg.image_size}")
        if cfg.num_classes < 0:
            raise ConfigError(f"model.num_classes must be >= 0, got {cfg.num_classes}")
        self.cfg = cfg
        self.generator = Generator(cfg)
        self.discriminator = Discriminator(cfg)
        self.generator_ema = copy.deepcopy(self.generator).requires_grad_(False)

    @property
    def conditional(self) -> bool:
        return self.cfg.num_classes > 0

    def check_input(self, shape: tuple[int, ...]) -> None:
        want = (self.cfg.in_channels, self.cfg.image_size, self.cfg.image_size)
        if tuple(shape) != want:
            raise ShapeError(f"dcgan was built for images of shape {want}, the data has {tuple(shape)}")

    def default_labels(self, n: int, device) -> torch.Tensor | None:
        """Labels 0, 1, ..., K-1, 0, 1, ... (a grid row per class if n % K == 0); None if unconditional."""
        return torch.arange(n, device=device) % self.cfg.num_classes if self.conditional else None

    def example_input(self, batch_size: int = 2) -> dict[str, torch.Tensor]:
        """``{"z": noise (B, latent_dim)}``, plus ``"labels"`` 0, 1, ... (B,) when conditional."""
        device = model_device(self)
        z = torch.randn(batch_size, self.cfg.latent_dim, generator=example_generator(), device="cpu").to(device)
        return {"z": z} if not self.conditional else {"z": z, "labels": self.default_labels(batch_size, device)}

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """One adversarial pass, D(G(z, y), y): discriminator logits (B,) for generated images."""
        if labels is None:
            labels = self.default_labels(len(z), z.device)
        return self.discriminator(self.generator(z, labels), labels)

    @torch.no_grad()
    def update_ema(self, decay: float) -> None:
        """ema <- decay * ema + (1 - decay) * generator; buffers (batch-norm statistics) are copied."""
        for e, p in zip(self.generator_ema.parameters(), self.generator.parameters(), strict=True):
            e.lerp_(p, 1 - decay)
        for e, b in zip(self.generator_ema.buffers(), self.generator.buffers(), strict=True):
            e.copy_(b)

    @torch.no_grad()
    def refresh_ema_stats(self, batches: int = 40, batch_size: int = 256, seed: int = 0) -> None:
        """Standing statistics (Brock et al., 2019): recompute the EMA generator's batch-norm running statistics
        from its own outputs. Averaged weights with the raw generator's statistics give noisy, off-class samples.
        Uses its own seeded RNG, so the global random state (and an exact resume) is untouched."""
        g = self.generator_ema
        norms = [m for m in g.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not norms:
            return
        device = next(g.parameters()).device
        rng = torch.Generator().manual_seed(seed)
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the batches below
        was = g.training
        g.train()
        for _ in range(batches):
            z = torch.randn(batch_size, self.cfg.latent_dim, generator=rng).to(device)
            labels = (
                torch.randint(0, self.cfg.num_classes, (batch_size,), generator=rng).to(device)
                if self.conditional
                else None
            )
            g(z, labels)
        g.train(was)
        for m, mom in zip(norms, momenta, strict=True):
            m.momentum = mom

    @torch.no_grad()
    def sample(
        self,
        n: int,
        labels: torch.Tensor | None = None,
        ema: bool = True,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """``n`` images in [0, 1] (B, C, s, s) from the EMA generator (or the raw one), labels as given or cycling."""
        g = self.generator_ema if ema else self.generator
        if ema:
            self.refresh_ema_stats()
        device = next(g.parameters()).device
        z = torch.randn(n, self.cfg.latent_dim, generator=generator, device="cpu").to(device)
        if labels is None:
            labels = self.default_labels(n, device)
        was = g.training
        g.eval()
        out = g(z, labels)
        g.train(was)
        return (out + 1) / 2


register_model("dcgan", DCGANConfig)(DCGAN)


@register_model("cdcgan", DCGANConfig, num_classes=10)
class ConditionalDCGAN(DCGAN):
    """Class-conditional DCGAN (10 classes by default; projection discriminator)."""

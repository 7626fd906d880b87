"""Autoencoders and the VAE: an encoder to a latent vector and a decoder back to image logits.

Dense (MLP) and convolutional variants share one config. The decoder returns logits; the task decides the
likelihood (Bernoulli / continuous Bernoulli through a sigmoid, or MSE on the sigmoid output).

References: Hinton & Salakhutdinov, 2006 (autoencoders for dimensionality reduction); Vincent et al., 2008
(denoising); Kingma & Welling, 2014 (VAE, reparameterization).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from deepkit.errors import ShapeError
from deepkit.models.base import example_generator, model_device
from deepkit.models.registry import register_model
from deepkit.nn import get_act


@dataclass
class AutoencoderConfig:
    in_channels: int = 1  # filled from the data
    input_size: list[int] = field(default_factory=lambda: [28, 28])  # (H, W), filled from the data
    arch: Literal["dense", "conv"] = "dense"
    hidden: list[int] = field(default_factory=lambda: [512, 256])  # dense: widths; conv: channels per stride-2 stage
    latent_dim: int = 32
    act: str = "relu"


def _encoder(cfg: AutoencoderConfig, out_features: int) -> nn.Sequential:
    c, (h, w) = cfg.in_channels, cfg.input_size
    layers: list[nn.Module] = []
    if cfg.arch == "dense":
        n = c * h * w
        layers.append(nn.Flatten())
        for width in cfg.hidden:
            layers += [nn.Linear(n, width), get_act(cfg.act)]
            n = width
    else:
        for ch in cfg.hidden:  # each stage halves H and W: (B, c, h, w) -> (B, ch, h/2, w/2)
            layers += [nn.Conv2d(c, ch, 4, 2, 1), get_act(cfg.act)]
            c, h, w = ch, h // 2, w // 2
        layers.append(nn.Flatten())
        n = c * h * w
    layers.append(nn.Linear(n, out_features))
    return nn.Sequential(*layers)


def _decoder(cfg: AutoencoderConfig) -> nn.Sequential:
    c, (h, w) = cfg.in_channels, cfg.input_size
    layers: list[nn.Module] = []
    if cfg.arch == "dense":
        n = cfg.latent_dim
        for width in reversed(cfg.hidden):
            layers += [nn.Linear(n, width), get_act(cfg.act)]
            n = width
        layers += [nn.Linear(n, c * h * w), nn.Unflatten(1, (c, h, w))]
    else:
        k = len(cfg.hidden)
        top = cfg.hidden[-1]
        hh, ww = h >> k, w >> k
        layers += [nn.Linear(cfg.latent_dim, top * hh * ww), get_act(cfg.act), nn.Unflatten(1, (top, hh, ww))]
        chans = [*reversed(cfg.hidden[:-1]), c]
        for i, ch in enumerate(chans):  # each stage doubles H and W; the last one outputs logits (no activation)
            layers.append(nn.ConvTranspose2d(top, ch, 4, 2, 1))
            if i < len(chans) - 1:
                layers.append(get_act(cfg.act))
            top = ch
    return nn.Sequential(*layers)


def _check(cfg: AutoencoderConfig, shape: tuple[int, ...]) -> None:
    if len(shape) != 3:
        raise ShapeError(f"autoencoders take images (C, H, W), got per-sample shape {shape}")
    if shape[0] != cfg.in_channels or list(shape[1:]) != list(cfg.input_size):
        raise ShapeError(
            f"model was built for {cfg.in_channels}×{cfg.input_size[0]}×{cfg.input_size[1]} images, got {shape}"
        )
    if cfg.arch == "conv":
        f = 2 ** len(cfg.hidden)
        if shape[1] % f or shape[2] % f:
            raise ShapeError(
                f"conv autoencoder with {len(cfg.hidden)} stages needs H and W divisible by {f}, got {shape}"
            )


def _example(model: nn.Module, batch_size: int) -> dict[str, torch.Tensor]:
    """``{"x": images (B, in_channels, *input_size)}`` uniform in [0, 1], the range the decoder reconstructs."""
    cfg = model.cfg
    x = torch.rand(batch_size, cfg.in_channels, *cfg.input_size, generator=example_generator(), device="cpu")
    return {"x": x.to(model_device(model))}


@register_model("autoencoder", AutoencoderConfig)
class Autoencoder(nn.Module):
    """Deterministic autoencoder (dense by default; arch=conv for the convolutional one): x -> z -> logits."""

    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        self.cfg = cfg
        _check(cfg, (cfg.in_channels, *cfg.input_size))
        self.encoder = _encoder(cfg, cfg.latent_dim)
        self.decoder = _decoder(cfg)

    def check_input(self, shape: tuple[int, ...]) -> None:
        _check(self.cfg, shape)

    def example_input(self, batch_size: int = 2) -> dict[str, torch.Tensor]:
        return _example(self, batch_size)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)  # (B, C, H, W) -> (B, latent_dim)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)  # (B, latent_dim) -> (B, C, H, W) logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


@register_model("conv_autoencoder", AutoencoderConfig, arch="conv", hidden=[32, 64], latent_dim=16)
class ConvAutoencoder(Autoencoder):
    """Convolutional autoencoder: two stride-2 conv stages (32, 64 channels) around a 16-d code."""


@register_model("vae", AutoencoderConfig)
class VAE(nn.Module):
    """Variational autoencoder: Gaussian encoder q(z|x) = N(mu, diag(exp(logvar))), decoder logits of p(x|z)."""

    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        self.cfg = cfg
        _check(cfg, (cfg.in_channels, *cfg.input_size))
        self.encoder = _encoder(cfg, 2 * cfg.latent_dim)
        self.decoder = _decoder(cfg)

    def check_input(self, shape: tuple[int, ...]) -> None:
        _check(self.cfg, shape)

    def example_input(self, batch_size: int = 2) -> dict[str, torch.Tensor]:
        return _example(self, batch_size)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(x).chunk(2, dim=-1)  # (B, latent_dim) each
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)  # (B, latent_dim) -> (B, C, H, W) logits

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits, mu, logvar) with z = mu + sigma * eps (the reparameterization trick)."""
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        return self.decode(z), mu, logvar

    @torch.no_grad()
    def sample(self, n: int, device: torch.device | str = "cpu", generator: torch.Generator | None = None):
        """``n`` images (probabilities in [0, 1]) decoded from z ~ N(0, I)."""
        z = torch.randn(n, self.cfg.latent_dim, generator=generator, device=device)
        return self.decode(z).sigmoid()


@register_model("conv_vae", AutoencoderConfig, arch="conv", hidden=[32, 64])
class ConvVAE(VAE):
    """Convolutional VAE: two stride-2 conv stages (32, 64 channels), 32-d Gaussian latent."""

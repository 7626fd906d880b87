"""Optimizers and learning-rate schedules from config.

Schedules are pure functions of the optimizer step (``lr = base_lr * factor(step)``), so resuming needs
nothing but the step count: there is no scheduler object whose hidden state could drift.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from deepkit.errors import ConfigError


@dataclass
class OptimizerConfig:
    name: Literal["sgd", "adam", "adamw", "rmsprop"] = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.0  # decoupled for adamw, added to the gradient (L2-style) for the others
    momentum: float = 0.9  # sgd, rmsprop
    nesterov: bool = False  # sgd
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # adam, adamw
    eps: float = 1e-8
    alpha: float = 0.99  # rmsprop smoothing constant
    decay_bias_and_norm: bool = False  # by default biases and norm weights (1-D params) get no weight decay
    # discriminative learning rates: parameter-name pattern (fnmatch, e.g. "fc.*", "layer4.*") -> lr multiplier;
    # the first matching pattern wins, unmatched parameters keep the base lr. Fine-tuning sets it from finetune.*
    lr_mult: dict[str, float] | None = None


@dataclass
class ScheduleConfig:
    name: Literal["constant", "step", "cosine", "onecycle"] = "constant"
    warmup_steps: int = 0  # linear warm-up from 0, combined with any schedule
    warmup_epochs: float = 0.0  # same, in epochs (converted with steps per epoch)
    step_size: int = 10  # step: epochs between decays
    milestones: list[int] | None = None  # step: epochs at which to decay (instead of step_size)
    gamma: float = 0.1  # step: decay factor
    final_lr_ratio: float = 0.0  # cosine: lr at the end as a fraction of the base lr
    pct_start: float = 0.3  # onecycle: fraction of the run spent increasing the lr
    div_factor: float = 25.0  # onecycle: initial lr = base lr / div_factor
    final_div_factor: float = 1e4  # onecycle: final lr = initial lr / final_div_factor


def lr_multiplier(name: str, lr_mult: dict[str, float] | None) -> float:
    """The multiplier of the first pattern in ``lr_mult`` that matches parameter ``name`` (1.0 if none does)."""
    for pattern, mult in (lr_mult or {}).items():
        if fnmatch.fnmatchcase(name, pattern):
            return float(mult)
    return 1.0


def param_groups(
    model: nn.Module, weight_decay: float, decay_bias_and_norm: bool, lr_mult: dict[str, float] | None = None
) -> list[dict]:
    """Group trainable parameters by learning-rate multiplier and by weight decay.

    Biases and norm scales (ndim < 2) get no weight decay unless ``decay_bias_and_norm``, as in nanoGPT and timm.
    Each group carries ``lr_mult`` (applied to the base lr by :func:`build_optimizer`) and the parameter names.
    """
    for pattern, mult in (lr_mult or {}).items():
        if not isinstance(mult, int | float) or mult < 0:
            raise ConfigError(f"trainer.optimizer.lr_mult['{pattern}'] must be a number >= 0, got {mult!r}")
    groups: dict[tuple[float, float], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        wd = weight_decay if (decay_bias_and_norm or p.ndim >= 2) else 0.0
        key = (lr_multiplier(name, lr_mult), wd)
        g = groups.setdefault(key, {"params": [], "names": [], "weight_decay": wd, "lr_mult": key[0]})
        g["params"].append(p)
        g["names"].append(name)
    return list(groups.values())


def build_optimizer(model: nn.Module, cfg: OptimizerConfig, fused: bool = False) -> torch.optim.Optimizer:
    """An optimizer over ``model``'s trainable parameters, as ``cfg`` says.

    Args:
        fused: sgd/adam/adamw as one fused kernel per step (the Trainer sets it on CUDA, see train/speed/).
    """
    if cfg.lr <= 0:
        raise ConfigError(f"trainer.optimizer.lr must be > 0, got {cfg.lr}")
    groups = param_groups(model, cfg.weight_decay, cfg.decay_bias_and_norm, cfg.lr_mult)
    kw = {"fused": True} if fused and cfg.name in ("sgd", "adam", "adamw") else {}
    for g in groups:
        g["lr"] = cfg.lr * g["lr_mult"]
    if cfg.name == "sgd":
        if cfg.nesterov and cfg.momentum <= 0:
            raise ConfigError("trainer.optimizer.nesterov=true needs trainer.optimizer.momentum > 0")
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, **kw)
    if cfg.name == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, **kw)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, **kw)
    if cfg.name == "rmsprop":
        return torch.optim.RMSprop(groups, lr=cfg.lr, alpha=cfg.alpha, eps=cfg.eps, momentum=cfg.momentum)
    raise ConfigError(f"unknown optimizer '{cfg.name}' (valid: sgd, adam, adamw, rmsprop)")


class Schedule:
    """``factor(step)`` multiplies each group's base lr. ``total_steps`` and ``steps_per_epoch`` come from the run.

    Example:
        >>> s = Schedule(ScheduleConfig(name="cosine", warmup_steps=10), total_steps=100, steps_per_epoch=10)
        >>> s.factor(4), s.factor(10), round(s.factor(100), 6)
        (0.5, 1.0, 0.0)
    """

    def __init__(self, cfg: ScheduleConfig, total_steps: int, steps_per_epoch: int):
        self.cfg = cfg
        self.total = max(1, total_steps)
        self.per_epoch = max(1, steps_per_epoch)
        self.warmup = cfg.warmup_steps or round(cfg.warmup_epochs * self.per_epoch)
        if cfg.name == "step" and not cfg.milestones and cfg.step_size <= 0:
            raise ConfigError(f"trainer.schedule.step_size must be > 0, got {cfg.step_size}")

    def factor(self, step: int) -> float:
        c = self.cfg
        if c.name == "onecycle":  # warm-up is built in (Smith & Topin, 2018); torch's OneCycleLR, cosine annealing
            up = max(1, round(c.pct_start * self.total))
            start, end = 1 / c.div_factor, 1 / (c.div_factor * c.final_div_factor)
            if step <= up:
                return _cos_interp(start, 1.0, step / up)
            return _cos_interp(1.0, end, min(1.0, (step - up) / max(1, self.total - up)))
        warm = min(1.0, (step + 1) / self.warmup) if self.warmup and step < self.warmup else 1.0
        if c.name == "constant":
            return warm
        if c.name == "step":
            epoch = step // self.per_epoch
            n = sum(epoch >= m for m in c.milestones) if c.milestones else epoch // c.step_size
            return warm * c.gamma**n
        if c.name == "cosine":
            t = min(1.0, max(0, step - self.warmup) / max(1, self.total - self.warmup))
            return warm * (c.final_lr_ratio + (1 - c.final_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))
        raise ConfigError(f"unknown schedule '{c.name}' (valid: constant, step, cosine, onecycle)")

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        """Set every group's lr for ``step`` and return the base lr (before ``lr_mult``)."""
        f = self.factor(step)
        for g in optimizer.param_groups:
            g.setdefault("initial_lr", g["lr"])
            g["lr"] = g["initial_lr"] * f
        return base_lr(optimizer)


def base_lr(optimizer: torch.optim.Optimizer) -> float:
    """The scheduled base learning rate: a group's lr divided by its ``lr_mult`` (what logs report as ``lr``)."""
    for g in optimizer.param_groups:
        if g.get("lr_mult", 1.0) > 0:
            return g["lr"] / g.get("lr_mult", 1.0)
    return optimizer.param_groups[0]["lr"]


def _cos_interp(a: float, b: float, t: float) -> float:
    return b + (a - b) * 0.5 * (1 + math.cos(math.pi * t))

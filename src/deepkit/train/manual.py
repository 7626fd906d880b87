"""Manual optimization: a task that steps several optimizers itself (a GAN's generator and discriminator).

The task names its parameter sets with ``Task.optimizer_targets()`` -> ``{name: (module, overrides)}``; the Trainer
builds one optimizer per name from ``trainer.optimizer`` plus the overrides (two-timescale learning rates, GAN betas)
and hands the task a :class:`ManualStep` in ``training_step(batch, ctx)``. Every optimizer follows the run's
schedule (a pure function of the step), and all of them are saved in and restored from checkpoints.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import torch

from deepkit.config import from_dict, to_dict
from deepkit.errors import ConfigError
from deepkit.train.optim import OptimizerConfig, Schedule, build_optimizer

if TYPE_CHECKING:
    from deepkit.tasks.base import Task

TrainerConfig = Any  # deepkit.train.trainer.TrainerConfig, whose module imports this one


def build_named_optimizers(task: Task, cfg: TrainerConfig) -> dict[str, torch.optim.Optimizer]:
    """One optimizer per entry of ``task.optimizer_targets()``, from ``cfg.optimizer`` updated by its overrides."""
    if cfg.accumulate != 1 or cfg.l1 or cfg.l2:
        raise ConfigError(
            f"task '{task.name}' steps its own optimizers; trainer.accumulate (got {cfg.accumulate}), trainer.l1 "
            f"(got {cfg.l1}) and trainer.l2 (got {cfg.l2}) must stay at 1, 0 and 0 (use weight_decay instead)"
        )
    targets = task.optimizer_targets()
    if not targets:
        raise ConfigError(f"task '{task.name}' uses manual optimization but names no optimizer targets")
    base = to_dict(cfg.optimizer)
    optimizers = {}
    for name, (module, overrides) in targets.items():
        opt_cfg = from_dict(OptimizerConfig, {**base, **overrides}, f"optimizer '{name}'")
        optimizers[name] = build_optimizer(module, opt_cfg)
    return optimizers


@dataclasses.dataclass
class ManualStep:
    """What a manual-optimization task's ``training_step(batch, ctx)`` gets.

    Attributes:
        optimizers: the named optimizers (``ctx.optimizers["discriminator"]``).
        step: optimizer steps done before this batch (the run's global step).

    Example (inside a task):
        >>> d_loss = ...; ctx.optimize("discriminator", d_loss)   # doctest: +SKIP
    """

    optimizers: dict[str, torch.optim.Optimizer]
    schedule: Schedule
    grad_clip: float | None = None
    step: int = 0

    def at(self, step: int) -> ManualStep:
        """Set the step and every optimizer's lr for it (the schedule scales each optimizer's own base lr)."""
        self.step = step
        for opt in self.optimizers.values():
            self.schedule.apply(opt, step)
        return self

    def optimize(self, name: str, loss: torch.Tensor) -> None:
        """zero_grad -> backward -> clip (trainer.grad_clip) -> step for the optimizer ``name``."""
        opt = self.optimizers[name]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip:
            params = [p for g in opt.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
        opt.step()

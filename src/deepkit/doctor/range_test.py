"""The learning-rate range test (Smith, "Cyclical Learning Rates", WACV 2017; fastai's ``lr_find``).

Train a fresh model from a recipe for a few steps while the learning rate grows exponentially from ``start`` to
``end``, one value per step; smooth the loss with a bias-corrected exponential moving average (beta 0.9) and stop
once it is non-finite or ``diverge`` × above its minimum. The suggestion follows fastai's "valley" idea: the
valley is the descent of the loss under a centred running median (no lag), from where it last stood a tenth of
the way down from its starting level to its minimum, to that minimum; the pick lies half way into its middle
third: where the loss falls steadily, not at its floor (the edge of divergence) nor on the flat start (too slow).
Nothing is written but the plot: no run directory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepkit.errors import ConfigError


@dataclass
class LRFind:
    """The sweep: learning rates, raw and smoothed losses, the valley (indices) and the suggested learning rate."""

    recipe: str
    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    valley: tuple[int, int]
    suggestion: float
    current: float | None  # the recipe's trainer.optimizer.lr
    stopped: str  # why the sweep ended
    plot: Path | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe,
            "suggestion": self.suggestion,
            "current": self.current,
            "valley": {"from_lr": self.lrs[self.valley[0]], "to_lr": self.lrs[self.valley[1]]},
            "stopped": self.stopped,
            "steps": len(self.lrs),
            "plot": str(self.plot) if self.plot else None,
            "lrs": self.lrs,
            "losses": self.losses,
            "smoothed": self.smoothed,
        }


def smooth(losses: list[float], beta: float = 0.9) -> list[float]:
    """Bias-corrected exponential moving average (what the sweep watches for divergence, step by step)."""
    out, avg = [], 0.0
    for i, v in enumerate(losses, 1):
        avg = beta * avg + (1 - beta) * v
        out.append(avg / (1 - beta**i))
    return out


def smooth_centered(losses: list[float], half: int = 4) -> list[float]:
    """A running median over ``2 * half + 1`` steps centred on each: smooth without the lag of a one-sided average
    (which, at 100 steps over 8 decades, shifts a curve by about a decade per 12 steps) and without carrying a
    spike over to its neighbours."""
    import numpy as np

    x = np.asarray(losses, dtype=float)
    return [float(np.median(x[max(0, i - half) : i + half + 1])) for i in range(len(x))]


def valley(values: list[float], onset: float = 0.1) -> tuple[int, int, int]:
    """(start, end, pick) of the valley of a smoothed loss curve: it ends at the curve's minimum and starts after
    the curve was last above ``onset`` of the way down from its starting level (the median of its first quarter)
    to that minimum, so the noise of the flat start is no descent; ``pick`` lies half way into the valley's middle
    third (fastai's valley rule)."""
    n = len(values)
    if n < 3:
        return 0, max(0, n - 1), max(0, n - 1) // 2
    end = min(range(n), key=lambda i: values[i])
    level = sorted(values[: max(1, end // 4)])[max(1, end // 4) // 2]
    line = level - onset * (level - values[end])
    start = max((i + 1 for i in range(end) if values[i] >= line), default=0)
    start = min(start, end)
    third = (end - start) / 3
    return start, end, min(end, start + int(third) + int(third / 2))


def lr_find(
    recipe: str | Path | dict,
    *overrides: str,
    start: float = 1e-7,
    end: float = 10.0,
    steps: int = 100,
    diverge: float = 4.0,
    plot: str | Path | None = None,
    quiet: bool = False,
) -> LRFind:
    """Run the range test on a recipe (a bundled name, a YAML path, or a run directory: its config).

    Args:
        recipe: what ``deepkit train`` takes, or a run directory (``deepkit doctor`` points here).
        *overrides: ``"model.width=64"``-style overrides.
        start, end: the learning-rate range, swept exponentially.
        steps: optimizer steps (the training data is cycled if it has fewer batches).
        diverge: stop when the smoothed loss exceeds this many times its minimum.
        plot: where to write the PNG (None: no plot).
        quiet: print nothing (no "loading data" lines).

    Example:
        >>> result = lr_find("digits_mlp", steps=60)      # doctest: +SKIP
        >>> result.suggestion                              # doctest: +SKIP
    """
    import torch

    from deepkit import api
    from deepkit.recipe import resolve_recipe, run_recipe
    from deepkit.train.optim import build_optimizer
    from deepkit.train.trainer import resolve_device

    if not (0 < start < end) or steps < 5:
        raise ConfigError(f"lr-find needs 0 < start < end and steps >= 5, got start={start}, end={end}, steps={steps}")
    ov = api.parse_overrides([*overrides, *(["trainer.progress=none"] if quiet else [])])
    path = Path(recipe) if isinstance(recipe, str | Path) else None
    if path is not None and path.is_dir() and (path / "config.yaml").is_file():
        rec = run_recipe(path, ov)
    else:
        rec = resolve_recipe(recipe, ov)
    built = api.build(rec)
    task = built.task
    if task.manual_optimization:
        raise ConfigError(f"lr-find needs a task with one optimizer; task '{rec.task.name}' steps its own (a GAN)")
    device = resolve_device(rec.trainer.device)
    task.to(device)
    task.model.train()
    opt = build_optimizer(task.model, rec.trainer.optimizer)
    params = [p for p in task.model.parameters() if p.requires_grad]
    loader = built.data.loader("train", seed=rec.trainer.seed)
    loader = loader.to(device) if hasattr(loader, "to") else loader
    lrs, losses, smoothed = [], [], []
    stopped = f"reached end={end:g}"
    epoch = 0
    ratio = end / start
    while len(lrs) < steps:
        loader.set_epoch(epoch) if hasattr(loader, "set_epoch") else None
        for batch in loader:
            lr = start * ratio ** (len(lrs) / (steps - 1))
            for g in opt.param_groups:
                g["lr"] = lr * g.get("lr_mult", 1.0)
            loss = task.training_step(batch)["loss"]
            value = float(loss.detach())
            lrs.append(lr)
            losses.append(value)
            if not math.isfinite(value):
                smoothed.append(math.nan)
                stopped = f"the loss became {value} at lr {lr:.3g}"
                break
            smoothed = smooth(losses)
            if len(smoothed) > 5 and smoothed[-1] > diverge * min(smoothed):
                stopped = f"the smoothed loss exceeded {diverge:g}× its minimum at lr {lr:.3g}"
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if rec.trainer.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, rec.trainer.grad_clip)
            opt.step()
            if len(lrs) >= steps:
                break
        else:
            epoch += 1
            continue
        break
    good = [i for i, v in enumerate(losses) if math.isfinite(v)]
    centered = smooth_centered([losses[i] for i in good])
    values = centered
    s, e, pick = valley(values)
    result = LRFind(
        rec.name,
        lrs,
        losses,
        [centered[good.index(i)] if i in good else math.nan for i in range(len(losses))],
        (good[s], good[e]) if good else (0, 0),
        lrs[good[pick]] if good else start,
        float(rec.trainer.optimizer.lr),
        stopped,
    )
    if len(good) < 10:
        result.notes.append(f"only {len(good)} finite steps: widen the range (start) or add steps")
    if plot is not None:
        result.plot = Path(plot)
        draw(result, result.plot)
    return result


def draw(result: LRFind, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    try:
        ax.plot(result.lrs, result.losses, lw=0.6, alpha=0.4, label="loss per step")
        ax.plot(result.lrs, result.smoothed, lw=1.6, label="smoothed")
        a, b = result.valley
        ax.axvspan(result.lrs[a], result.lrs[b], color="tab:green", alpha=0.1, label="valley")
        ax.axvline(result.suggestion, c="tab:red", lw=1, label=f"suggestion {result.suggestion:.2g}")
        if result.current:
            ax.axvline(result.current, c="grey", ls="--", lw=0.8, label=f"recipe's lr {result.current:.2g}")
        finite = [v for v in result.smoothed if math.isfinite(v)]
        if finite:
            ax.set_ylim(min(finite) * 0.95, min(max(finite), 3 * min(finite)) * 1.1)
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss")
        ax.set_title(f"lr-find: {result.recipe}", fontsize=10, loc="left")
        ax.legend(fontsize=8)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    finally:
        plt.close(fig)

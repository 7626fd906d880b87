"""``deepkit bench RECIPE``: training throughput of a recipe, without writing a run directory.

The data, model and task are built exactly as ``deepkit train`` builds them, and the steps run in the Trainer
with the run's fast path (the same :class:`~deepkit.train.speed.SpeedPlan`, decided for the full run's length),
so the figures are those of a real run: steps/s, samples/s (tokens/s for language and text tasks), peak memory,
FLOPs per step (``torch.utils.flop_counter`` on one forward + backward) and MFU where the device's peak is known.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch

from deepkit.errors import ConfigError
from deepkit.train import speed
from deepkit.train.callbacks import Callback
from deepkit.train.trainer import Trainer, batch_len, resolve_device


class _StepTimer(Callback):
    """Marks the time and sample count after the warm-up steps and after the last step (synchronizing a GPU)."""

    def __init__(self, warmup: int):
        self.warmup = warmup
        self.t_start = self.t0 = self.t1 = 0.0
        self.samples0 = self.samples1 = self.step0 = self.step1 = 0

    def _now(self, trainer) -> float:
        if trainer.device.type == "cuda":
            torch.cuda.synchronize(trainer.device)
        return time.perf_counter()

    def on_fit_start(self, trainer):
        self.t_start = self.t0 = self._now(trainer)  # with --warmup 0 the timed steps start here

    def on_step_end(self, trainer):
        s = trainer.state
        if s.step == self.warmup:
            self.t0, self.samples0, self.step0 = self._now(trainer), s.samples, s.step
        elif s.step > self.warmup:
            self.t1, self.samples1, self.step1 = self._now(trainer), s.samples, s.step


class _TokenCounter:
    """Wraps a loader and counts the tokens of the batches it yields (on the device, no synchronization)."""

    def __init__(self, loader: Any, count: Any):
        self.loader, self.count = loader, count
        self.tokens: torch.Tensor | int = 0
        self.samples = 0
        self.counting = False

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str) -> Any:  # set_epoch, num_samples, ... of the wrapped loader
        if name == "loader":
            raise AttributeError(name)
        return getattr(self.loader, name)

    def to(self, device):
        self.loader = self.loader.to(device)
        return self

    def __iter__(self):
        for batch in self.loader:
            if self.counting:
                self.tokens = self.tokens + self.count(batch)
                self.samples += batch_len(batch)
            yield batch


def count_flops(trainer: Trainer, task: Any, batch: Any) -> float | None:
    """FLOPs of one training micro-batch, forward + backward (matmuls, convolutions, attention), None if none seen."""
    from torch.utils.flop_counter import FlopCounterMode

    if task.manual_optimization:
        return None  # the task's step also steps its optimizers; its FLOPs are not one forward + backward
    task.model.train()
    with FlopCounterMode(display=False) as counter:
        with trainer._autocast():
            out = task.training_step(batch)
        out["loss"].backward()
    task.model.zero_grad(set_to_none=True)
    total = counter.get_total_flops()
    return float(total) if total else None


def run_plan(rec: Any, built: Any) -> speed.SpeedPlan:
    """The speed plan a training run of ``rec`` would follow on this machine (for the full run's length)."""
    probe = Trainer(rec.trainer)
    probe.device, cfg = resolve_device(rec.trainer.device), probe.config
    data = built.data
    loaders = [data.loader("train", seed=cfg.seed), data.loader("val") if data.val is not None else None]
    per_epoch = math.ceil(len(loaders[0]) / cfg.accumulate)
    return speed.plan_for(probe, built.task, data, loaders, cfg.max_steps or cfg.epochs * per_epoch)


def explain(recipe: str | dict, *overrides: str) -> speed.SpeedPlan:
    """The speed plan of a recipe on this machine, without training (``deepkit train RECIPE --explain-speed``)."""
    from deepkit.api import build, parse_overrides
    from deepkit.recipe import resolve_recipe

    rec = resolve_recipe(recipe, parse_overrides(overrides))
    return run_plan(rec, build(rec))


def bench(recipe: str | dict, *overrides: str, steps: int = 50, warmup: int = 10) -> dict[str, Any]:
    """Time ``warmup`` + ``steps`` optimizer steps of a recipe's training; nothing is written to disk.

    Args:
        recipe: a bundled recipe name, a YAML path or a mapping.
        *overrides: ``"trainer.precision=bf16"``-style strings, as for ``deepkit train``.
        steps: timed optimizer steps.
        warmup: untimed steps first (compilation, allocator warm-up, cuDNN autotuning).

    Returns:
        A dict: steps_per_s, samples_per_s, tokens_per_s (text tasks), peak memory, flops_per_step, mfu, the speed
        plan and what it was measured on.

    Example:
        >>> from deepkit.bench import bench
        >>> bench("digits_mlp", steps=20, warmup=5)["steps_per_s"] > 0   # doctest: +SKIP
    """
    from deepkit.api import build, parse_overrides
    from deepkit.recipe import resolve_recipe

    if steps < 1 or warmup < 0:
        raise ConfigError(f"bench needs --steps >= 1 and --warmup >= 0, got steps={steps}, warmup={warmup}")
    rec = resolve_recipe(recipe, parse_overrides(overrides))
    built = build(rec)
    task, bundle, callbacks = built.task, built.data, built.callbacks
    device = resolve_device(rec.trainer.device)
    cfg = Trainer(rec.trainer).config
    full_plan = run_plan(rec, built)  # the full run's plan decides compile (the run's length, not the benchmark's)

    timer = _StepTimer(warmup)
    counter: dict[str, _TokenCounter] = {}
    data = bundle.without("val")  # a benchmark does not validate
    if bundle.counts_tokens:  # text: tokens/s too
        make = data.loader

        def counting_loader(*a, **k):
            counter["train"] = _TokenCounter(make(*a, **k), bundle.count_tokens)
            return counter["train"]

        data.loader = counting_loader  # an instance attribute shadows the method, for this copy only

        class _StartCounting(Callback):
            def on_step_end(self, trainer):
                if trainer.state.step == warmup and "train" in counter:
                    counter["train"].counting = True

        callbacks = [*callbacks, _StartCounting()]
    trainer = Trainer(
        rec.trainer,
        run_dir=None,
        callbacks=[*callbacks, timer],
        epochs=10**9,
        max_steps=warmup + steps,
        progress="none",
        early_stopping=None,
        checkpoint_every=0,
        tensorboard=False,
        compile=full_plan.compile_mode is not None if cfg.compile == "auto" else cfg.compile,
    )
    trainer.fit(task, data)
    plan = trainer.speed
    if cfg.compile == "auto":  # report the full run's reason, not "trainer.compile=..." set just above
        plan.decisions = [full_plan.get("compile") if d.name == "compile" else d for d in plan.decisions]
    elapsed = timer.t1 - timer.t0
    done = timer.step1 - timer.step0
    if done < 1 or elapsed <= 0:
        raise ConfigError(f"bench ran {trainer.state.step} steps, none of them timed; lower --warmup ({warmup})")
    steps_per_s = done / elapsed
    samples_per_s = (timer.samples1 - timer.samples0) / elapsed

    batch = next(iter(speed.place_loader(bundle.loader("train", seed=cfg.seed), device, plan)))
    flops = count_flops(trainer, task, batch)
    flops_step = flops * cfg.accumulate if flops else None
    peak = speed.peak_tflops(full_plan.device, plan.precision, plan.on("tf32"))
    result: dict[str, Any] = {
        "recipe": rec.name,
        "device": full_plan.device.name or device.type,
        "steps": done,
        "warmup": warmup,
        "warmup_s": timer.t0 - timer.t_start,
        "steps_per_s": steps_per_s,
        "samples_per_s": samples_per_s,
        "batch_size": rec.data.batch_size,
        **trainer.peak_memory,
        "flops_per_step": flops_step,
        "tflops_per_s": flops_step * steps_per_s / 1e12 if flops_step else None,
        "peak_tflops": peak,
        "mfu": speed.mfu(flops_step, steps_per_s, peak),
        "speed_plan": plan.to_dict(),
    }
    if "train" in counter and counter["train"].samples:
        c = counter["train"]
        result["tokens_per_s"] = float(c.tokens) / c.samples * samples_per_s
    result["plan_table"] = plan.table()
    return result


def format_result(r: dict[str, Any]) -> str:
    """The human-readable report of :func:`bench`."""
    lines = [
        r["plan_table"],
        f"recipe {r['recipe']} on {r['device']}: {r['steps']} timed steps after {r['warmup']} warm-up steps "
        f"({r['warmup_s']:.1f} s)",
        f"  steps/s        {r['steps_per_s']:,.2f}",
        f"  samples/s      {r['samples_per_s']:,.0f}",
    ]
    if "tokens_per_s" in r:
        lines.append(f"  tokens/s       {r['tokens_per_s']:,.0f}")
    lines.append(f"  peak memory    {speed.format_memory(r)}")
    if r["flops_per_step"]:
        lines.append(f"  FLOPs/step     {r['flops_per_step']:.3e} (forward + backward)")
        rate = r["tflops_per_s"]
        lines.append("  achieved       " + (f"{rate:.3g} TFLOP/s" if rate >= 1 else f"{rate * 1e3:.3g} GFLOP/s"))
    else:
        lines.append("  FLOPs/step     unknown (no matmul/convolution counted, or a task that steps itself)")
    if r["mfu"] is not None:
        lines.append(f"  MFU            {r['mfu'] * 100:.3g}% of {r['peak_tflops']:g} TFLOP/s")
    else:
        lines.append("  MFU            peak unknown (set DEEPKIT_PEAK_TFLOPS to the device's peak TFLOP/s)")
    return "\n".join(lines)

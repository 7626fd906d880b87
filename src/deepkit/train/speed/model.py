"""The model side of the plan: NHWC weights, activation checkpointing of the repeated blocks, torch.compile."""

from __future__ import annotations

import functools

import torch
from torch import nn

from deepkit.errors import ConfigError
from deepkit.train.speed.plan import SpeedPlan


def prepare_model(model: nn.Module, plan: SpeedPlan) -> None:
    """Apply the plan's model changes in place: NHWC weights, activation checkpointing of the blocks."""
    if plan.on("channels_last"):
        model.to(memory_format=torch.channels_last)
    if plan.on("activation_checkpointing"):
        n = checkpoint_blocks(model)
        plan.get("activation_checkpointing").reason += f": {n} blocks"


def compile_model(model: nn.Module, plan: SpeedPlan) -> nn.Module:
    return torch.compile(model, mode=plan.compile_mode) if plan.compile_mode else model


def find_blocks(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks of a model: what activation checkpointing wraps.

    A model may name them with a ``checkpoint_blocks()`` method. Otherwise the blocks are the elements of every
    ``nn.ModuleList`` / ``nn.Sequential`` that are themselves modules with sub-modules and parameters but not
    containers (GPT-2's ``h.0``, BERT's ``encoder.layer.0``, T5's ``encoder.block.0``, ResNet's ``layer1.0``);
    a block inside a block is not wrapped twice.
    """
    if hasattr(model, "checkpoint_blocks"):
        return list(model.checkpoint_blocks())
    blocks: list[nn.Module] = []
    inside: set[int] = set()
    for m in model.modules():  # pre-order: outer blocks are seen before the blocks inside them
        if id(m) in inside or not isinstance(m, nn.ModuleList | nn.Sequential):
            continue
        for child in m.children():
            if isinstance(child, nn.ModuleList | nn.Sequential) or id(child) in inside:
                continue
            if next(child.children(), None) is not None and next(child.parameters(), None) is not None:
                blocks.append(child)
                inside.update(id(d) for d in child.modules())
    return blocks


def checkpoint_blocks(model: nn.Module) -> int:
    """Recompute each block's activations in backward (torch.utils.checkpoint, non-reentrant). Returns the count.

    Parameter names do not change (the block's ``forward`` is wrapped in place), so checkpoints load as before.
    BatchNorm running statistics are restored after the recomputation, so they are updated once per step, as
    without checkpointing.

    Raises:
        ConfigError: the model has no repeated blocks to checkpoint.
    """
    blocks = find_blocks(model)
    if not blocks:
        name = getattr(model, "model_name", type(model).__name__)
        raise ConfigError(
            f"trainer.speed.activation_checkpointing=true, but model '{name}' has no repeated blocks "
            "(modules in an nn.ModuleList/nn.Sequential) to checkpoint; expected a ResNet or a Transformer"
        )
    for block in blocks:
        if not getattr(block, "_deepkit_checkpointed", False):
            block.forward = functools.partial(_checkpointed_forward, block, block.forward)
            block._deepkit_checkpointed = True
    return len(blocks)


def _checkpointed_forward(block: nn.Module, forward, *args, **kwargs):
    from torch.utils.checkpoint import checkpoint

    if not (block.training and torch.is_grad_enabled()):
        return forward(*args, **kwargs)
    norms = [m for m in block.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    calls = [0]

    def run(*a, **k):
        calls[0] += 1
        if calls[0] == 1 or not norms:
            return forward(*a, **k)
        saved = [(b, b.clone()) for m in norms for b in m.buffers()]  # recomputation: keep the stats of pass one
        try:
            return forward(*a, **k)
        finally:
            with torch.no_grad():
                for b, old in saved:
                    b.copy_(old)

    return checkpoint(run, *args, use_reentrant=False, **kwargs)

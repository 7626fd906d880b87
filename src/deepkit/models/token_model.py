"""What the Transformer families (gpt2.py, bert.py, roberta.py, deberta.py, t5.py) share.

:class:`TokenModel` is the base of every model whose input is token ids rather than a float tensor. Each family
keeps Hugging Face's parameter names, so a ``transformers`` checkpoint loads without renaming; the
class attributes below tell :mod:`deepkit.interop.hf` how the family's config and heads map to ``transformers``.
"""

from __future__ import annotations

from dataclasses import fields
from typing import ClassVar

import torch
from torch import nn

from deepkit.errors import ConfigError, ShapeError, suggest
from deepkit.models.base import example_generator, model_device, random_ids


class TokenModel(nn.Module):
    """Base of token-id models: ``example_input``, head lookup and input checks.

    Class attributes (set by each family):
        hf_model_type: ``config.json``'s ``model_type`` (``"bert"``, ``"t5"``, ...).
        base_prefix: attribute holding the backbone (``"bert"``, ``"transformer"``, ...); "" if none.
        hf_architectures: deepkit head name → ``transformers`` class name, e.g. ``{"mlm": "BertForMaskedLM"}``.
    """

    hf_model_type: ClassVar[str] = ""
    base_prefix: ClassVar[str] = ""
    hf_architectures: ClassVar[dict[str, str]] = {}

    def example_input(self, batch_size: int = 2, seq_len: int = 8) -> dict[str, torch.Tensor]:
        """Keyword arguments for ``forward``: random token ids ``(B, T)`` and a padding mask whose first row ends in
        padding; ``T`` is ``seq_len`` cut to the model's ``context_length``."""
        seq_len = min(seq_len, getattr(self, "context_length", seq_len))
        ids = random_ids(example_generator(), self.cfg.vocab_size, (batch_size, seq_len))
        mask = torch.ones(batch_size, seq_len, dtype=torch.long, device="cpu")
        mask[0, max(1, seq_len // 2) :] = 0  # the first row is half padding (one real token at least)
        device = model_device(self)
        return {"input_ids": ids.to(device), "attention_mask": mask.to(device)}

    def check_ids(self, input_ids: torch.Tensor, max_len: int | None = None, offset: int = 0) -> None:
        """Raise ``ShapeError`` for ids that are not (B, T) integers within the vocabulary and context length."""
        if input_ids.ndim != 2 or input_ids.dtype.is_floating_point:
            raise ShapeError(
                f"input_ids must be a (batch, length) integer tensor, got {input_ids.dtype} of shape "
                f"{tuple(input_ids.shape)}"
            )
        # not while torch.export traces (a value check is no graph op; `deepkit serve` checks ids against the sidecar)
        exporting = torch.compiler.is_exporting()
        if (
            not exporting
            and input_ids.numel()
            and (int(input_ids.min()) < 0 or int(input_ids.max()) >= self.cfg.vocab_size)
        ):
            raise ShapeError(
                f"token ids must lie in [0, {self.cfg.vocab_size}) (the model's vocab_size), got values in "
                f"[{int(input_ids.min())}, {int(input_ids.max())}]"
            )
        if max_len is not None and offset + input_ids.shape[1] > max_len:
            raise ShapeError(
                f"sequence of {offset + input_ids.shape[1]} positions exceeds the model's context of {max_len}"
            )


def check_head(head: str, family: type[TokenModel]) -> None:
    if head not in family.hf_architectures:
        raise ConfigError(f"unknown head '{head}' for {family.__name__}{suggest(head, family.hf_architectures)}")


_HF_ACTS = {
    "gelu": lambda: nn.GELU(),
    "gelu_new": lambda: nn.GELU(approximate="tanh"),  # GPT-2's tanh approximation
    "gelu_pytorch_tanh": lambda: nn.GELU(approximate="tanh"),
    "relu": lambda: nn.ReLU(),
    "silu": lambda: nn.SiLU(),
    "swish": lambda: nn.SiLU(),
    "tanh": lambda: nn.Tanh(),
}


def hf_activation(name: str) -> nn.Module:
    """Activation module by its Hugging Face config name (``"gelu"``, ``"gelu_new"``, ``"relu"``, ...)."""
    if name not in _HF_ACTS:
        raise ConfigError(f"unknown activation '{name}'{suggest(name, _HF_ACTS)}")
    return _HF_ACTS[name]()


def config_fields(cfg_cls: type) -> set[str]:
    return {f.name for f in fields(cfg_cls)}

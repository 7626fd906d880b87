"""Activation and normalization lookup by name, so configs say ``act="gelu"`` instead of boolean flags."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from deepkit.errors import ConfigError, suggest

_ACTS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "leaky_relu": lambda: nn.LeakyReLU(0.01, inplace=True),
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "elu": nn.ELU,
    "identity": nn.Identity,
}

# Each entry builds a norm layer for `num_features` channels; `dim` says whether the input is
# (B, C) features ("1d") or (B, C, H, W) images ("2d").
_NORMS: dict[str, Callable[[int, str], nn.Module]] = {
    "batchnorm": lambda n, dim: nn.BatchNorm1d(n) if dim == "1d" else nn.BatchNorm2d(n),
    "layernorm": lambda n, dim: nn.LayerNorm(n) if dim == "1d" else nn.GroupNorm(1, n),
    "groupnorm": lambda n, dim: nn.GroupNorm(min(32, n), n),
    "none": lambda n, dim: nn.Identity(),
}


def list_acts() -> list[str]:
    return sorted(_ACTS)


def list_norms() -> list[str]:
    return sorted(_NORMS)


def get_act(act: str | type[nn.Module] | None) -> nn.Module:
    """Build an activation module from a name (``"relu"``, ``"gelu"``, ...) or a module class.

    Args:
        act: name from :func:`list_acts`, an ``nn.Module`` subclass, or None for identity.
    """
    if act is None:
        return nn.Identity()
    if isinstance(act, type) and issubclass(act, nn.Module):
        return act()
    if act not in _ACTS:
        raise ConfigError(f"unknown activation '{act}'{suggest(str(act), _ACTS)}")
    return _ACTS[act]()


def get_norm(norm: str | None, num_features: int, dim: str = "1d") -> nn.Module:
    """Build a normalization layer by name (``"batchnorm"``, ``"layernorm"``, ``"groupnorm"``, ``"none"``).

    Args:
        norm: name from :func:`list_norms` or None.
        num_features: channels (images) or features (vectors).
        dim: ``"1d"`` for (B, C) inputs, ``"2d"`` for (B, C, H, W).
    """
    if norm is None:
        norm = "none"
    if norm not in _NORMS:
        raise ConfigError(f"unknown norm '{norm}'{suggest(str(norm), _NORMS)}")
    return _NORMS[norm](num_features, dim)

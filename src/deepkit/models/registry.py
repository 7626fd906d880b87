"""Model registry: ``@register_model`` and ``create_model(name, weights=None, **overrides)``.

Each entry pairs a model class with its config dataclass and the overrides that define a named variant
(``lenet5`` vs ``simple_cnn``). ``create_model`` is the only constructor the CLI, Trainer and tests use.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from deepkit.config import from_dict, to_dict
from deepkit.errors import CheckpointError, ConfigError, suggest
from deepkit.weights import load_weights


@dataclass(frozen=True)
class ModelEntry:
    name: str
    cls: type[nn.Module]
    config_cls: type
    defaults: dict[str, Any]
    description: str


_REGISTRY: dict[str, ModelEntry] = {}
_WEIGHT_READERS: list[tuple[Any, Any]] = []  # (recognizes(path), build(name, path, trust_pickle, **overrides))


def register_weight_reader(recognizes, build) -> None:
    """Teach :func:`create_model` another checkpoint layout: ``recognizes(path) -> bool`` says whether ``weights``
    is one, ``build(name, path, trust_pickle=..., **overrides) -> model`` builds the model from it. The Hugging Face
    reader (``deepkit.interop.hf``) registers itself this way when ``deepkit`` is imported."""
    if (recognizes, build) not in _WEIGHT_READERS:
        _WEIGHT_READERS.append((recognizes, build))


def register_model(name: str, config: type, description: str | None = None, **defaults: Any):
    """Register a model class under ``name``; ``defaults`` override the config's defaults for this variant.

    Example:
        >>> @register_model("tiny_mlp", MLPConfig, depth=1, width=32)
        ... class TinyMLP(MLP): ...
    """

    def wrap(cls: type[nn.Module]) -> type[nn.Module]:
        if name in _REGISTRY and _REGISTRY[name].cls is not cls:
            raise ValueError(f"model '{name}' is already registered")
        doc = description or ((cls.__doc__ or "").strip().splitlines() or [""])[0]
        _REGISTRY[name] = ModelEntry(name, cls, config, dict(defaults), doc)
        return cls

    return wrap


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    return sorted(_REGISTRY)


def get_entry(name: str) -> ModelEntry:
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model '{name}'{suggest(name, _REGISTRY)}")
    return _REGISTRY[name]


def models_of(base: type) -> list[str]:
    """Names of the registered models whose class derives from ``base`` (a family's kind of model), sorted."""
    return [n for n in list_models() if issubclass(_REGISTRY[n].cls, base)]


def create_bound(model_section: dict[str, Any], bound: dict[str, Any], fits: str) -> nn.Module:
    """The recipe's model (``name`` + config fields) with the sizes ``bound`` from the data (``num_classes``,
    ``in_channels``, ``sample_rate``); a section value that disagrees is a one-line :class:`ShapeError` ending in
    ``fits`` (what the data is, e.g. "(10 classes, 3-channel images)")."""
    from deepkit.errors import ShapeError

    overrides = {k: v for k, v in model_section.items() if k != "name"}
    for key, value in bound.items():
        if key in overrides and overrides[key] != value:
            raise ShapeError(f"model.{key}={overrides[key]} does not fit the data: expected {key}={value} {fits}")
        overrides[key] = value
    return create_model(model_section["name"], **overrides)


def model_config(name: str, **overrides: Any) -> Any:
    """The config dataclass instance ``create_model(name, **overrides)`` would use."""
    entry = get_entry(name)
    merged = {**entry.defaults, **overrides}
    return from_dict(entry.config_cls, merged, where="model")


def create_model(
    name: str, weights: str | Path | None = None, trust_pickle: bool = False, **overrides: Any
) -> nn.Module:
    """Build a registered model, optionally loading weights.

    Args:
        name: a name from :func:`list_models`.
        weights: a ``.safetensors`` file, a run directory (its best checkpoint) or a checkpoint directory.
            deepkit files carry the model config, which becomes the default before ``overrides`` apply.
            A Hugging Face directory (``config.json`` + weights) loads into the Transformer families.
        trust_pickle: allow a pickle-based file (``torch.save``); it is then read with ``weights_only=True``.
        **overrides: config fields, e.g. ``num_classes=5, width=128``.

    Example:
        >>> model = create_model("mlp", in_features=64, num_classes=10, depth=2)
    """
    state = meta = None
    if weights is not None:
        for recognizes, build in _WEIGHT_READERS:
            if recognizes(weights):
                return build(name, weights, trust_pickle=trust_pickle, **overrides)
        state, meta = load_weights(weights, trust_pickle=trust_pickle)
        if meta.get("model") and meta["model"] != name:
            raise ConfigError(f"weights {weights} are for model '{meta['model']}', not '{name}'")
        overrides = {**meta.get("model_config", {}), **overrides}
    cfg = model_config(name, **overrides)
    model = get_entry(name).cls(cfg)
    model.model_name = name
    model.model_config = cfg
    if state is not None:
        load_state_dict_checked(model, state, source=str(weights))
    return model


def describe_config(model: nn.Module) -> dict[str, Any]:
    """Plain-dict config of a model built by :func:`create_model`."""
    cfg = getattr(model, "model_config", None)
    return to_dict(cfg) if dataclasses.is_dataclass(cfg) else {}


def load_state_dict_checked(
    model: nn.Module, state: dict, source: str, skip: set[str] | frozenset[str] = frozenset(), hint: str = ""
) -> None:
    """``load_state_dict`` that names missing/unexpected keys and shape mismatches in one error.

    Args:
        skip: model keys that are not loaded (a new head in transfer learning); they keep their initial values.
        hint: appended to the error, e.g. what the user should check.
    """
    own = model.state_dict()
    missing = [k for k in own if k not in skip and k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in state  # in the file's order
        if k in own and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
        if shapes:
            parts.append(f"shape mismatch {shapes[:3]}{' ...' if len(shapes) > 3 else ''}")
        raise CheckpointError(
            f"weights in {source} do not fit model '{getattr(model, 'model_name', '?')}': " + "; ".join(parts) + hint
        )
    model.load_state_dict(state, strict=not skip)

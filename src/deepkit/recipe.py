"""Recipes: YAML with ``task``, ``model``, ``data`` and ``trainer`` sections, plus dotted CLI overrides.

    deepkit train digits_cnn trainer.epochs=3 model.channels=[16,32]

Unknown keys are an error that suggests the nearest valid key; values are type-checked.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from deepkit.config import from_dict, to_dict
from deepkit.data.build import DataConfig
from deepkit.errors import ConfigError, suggest
from deepkit.models.registry import get_entry, model_config
from deepkit.tasks import TaskConfig
from deepkit.train.finetune import FinetuneConfig
from deepkit.train.trainer import TrainerConfig

SECTIONS = ("name", "description", "task", "model", "data", "trainer", "finetune")


@dataclass
class Recipe:
    name: str = "run"
    description: str = ""
    task: TaskConfig = field(default_factory=TaskConfig)
    model: dict[str, Any] = field(default_factory=lambda: {"name": "mlp"})  # name + that model's config fields
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    finetune: FinetuneConfig | None = None  # transfer learning from pretrained weights (train/finetune.py)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


def bundled_recipes() -> dict[str, Path]:
    folder = resources.files("deepkit") / "recipes"
    return {Path(str(p)).stem: Path(str(p)) for p in folder.iterdir() if str(p).endswith(".yaml")}


def list_recipes() -> dict[str, str]:
    """Bundled recipe name -> one-line description."""
    out = {}
    for name, path in sorted(bundled_recipes().items()):
        out[name] = (yaml.safe_load(path.read_text()) or {}).get("description", "")
    return out


def read_recipe_file(spec: str | Path) -> dict[str, Any]:
    """A recipe path or bundled name -> the raw mapping."""
    path = Path(spec)
    if not path.is_file():
        bundled = bundled_recipes()
        if str(spec) in bundled:
            path = bundled[str(spec)]
        elif str(spec).endswith((".yaml", ".yml")) or "/" in str(spec):
            raise ConfigError(f"recipe file not found: {spec}")
        else:
            raise ConfigError(f"unknown recipe '{spec}'{suggest(str(spec), bundled)}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"recipe {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise ConfigError(
            f"recipe {path} must be a mapping with sections {', '.join(SECTIONS)}; got {type(raw).__name__}"
        )
    raw.pop("meta", None)  # written into resolved config.yaml files; not part of a recipe
    raw.setdefault("name", path.stem)
    return raw


def parse_value(text: str) -> Any:
    """CLI value -> Python: numbers, true/false, null, [lists], {maps}; anything else stays a string."""
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(raw: dict[str, Any], overrides: list[str] | dict[str, Any]) -> dict[str, Any]:
    """Apply ``key.sub=value`` strings (or a ``{dotted: value}`` dict) to a raw recipe mapping (copied)."""
    raw = copy.deepcopy(raw)
    items = list(overrides.items() if isinstance(overrides, dict) else [_split_override(o) for o in overrides])
    # Switching architecture (model.name=mlp on a CNN recipe) starts the model section afresh: the old model's
    # keys (channels, ...) mean nothing to the new one. Other model.* overrides still apply, in any order.
    new_name = dict(items).get("model.name")
    if new_name is not None and new_name != (raw.get("model") or {}).get("name"):
        raw["model"] = {"name": new_name}
    for key, value in items:
        parts = key.split(".")
        if parts[0] not in SECTIONS:
            raise ConfigError(f"unknown key '{key}'{suggest(parts[0], SECTIONS)}")
        node = raw
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                node[p] = {}
            node = node[p]
        node[parts[-1]] = value
    return raw


def _split_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ConfigError(f"override '{text}' is not KEY=VALUE (e.g. trainer.epochs=3)")
    key, value = text.split("=", 1)
    return key.strip(), parse_value(value)


def validate(raw: dict[str, Any]) -> Recipe:
    """Raw mapping -> :class:`Recipe`, checking every section, including the model's own config fields."""
    for key in raw:
        if key not in SECTIONS:
            raise ConfigError(f"unknown key '{key}'{suggest(str(key), SECTIONS)}")
    model = dict(raw.get("model") or {})
    if "name" not in model:
        raise ConfigError("recipe has no model.name; expected e.g. model: {name: simple_cnn}")
    get_entry(model["name"])
    rest = {k: v for k, v in model.items() if k != "name"}
    model_config(model["name"], **rest)  # raises on unknown keys / wrong types, naming model.KEY
    recipe = from_dict(Recipe, {k: v for k, v in raw.items() if k != "model"})
    recipe.model = model
    return recipe


def resolve_recipe(spec: str | Path | dict, overrides: list[str] | dict[str, Any] = ()) -> Recipe:
    raw = copy.deepcopy(spec) if isinstance(spec, dict) else read_recipe_file(spec)
    return validate(apply_overrides(raw, overrides))

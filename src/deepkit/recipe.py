"""Recipes: YAML with ``task``, ``model``, ``data`` and ``trainer`` sections, plus dotted CLI overrides.

    deepkit train digits_cnn trainer.epochs=3 model.channels=[16,32]

``task.name`` picks the family (``deepkit.families``), which defines the ``task`` and ``data`` sections and any
optional section (``finetune``); a run's resolved ``config.yaml`` holds only those. Unknown keys are an error that
suggests the nearest valid key; values are type-checked.
"""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from deepkit.config import coerce, from_dict, prune_unknown
from deepkit.errors import ConfigError, suggest
from deepkit.families.base import Family, Recipe
from deepkit.families.registry import DEFAULT_TASK, family_of
from deepkit.models.registry import get_entry, model_config
from deepkit.train.trainer import TrainerConfig

SECTIONS = ("name", "description", "task", "model", "data", "trainer")  # every family's; families may add more


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
        raise ConfigError(f"recipe {path} is not valid YAML: {yaml_error(e)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(
            f"recipe {path} must be a mapping with sections {', '.join(SECTIONS)}; got {type(raw).__name__}"
        )
    raw.pop("meta", None)  # written into resolved config.yaml files; not part of a recipe
    raw.setdefault("name", path.stem)
    return raw


def yaml_error(e: yaml.YAMLError) -> str:
    """A YAML error in one line, with the line and column where the parser gave up (1-based, as editors count)."""
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    context = getattr(e, "context", None)
    return f"{where}{problem}" + (f" ({context})" if context else "")


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


def _task_name(raw: dict[str, Any]) -> Any:
    task = raw.get("task")
    return task.get("name", DEFAULT_TASK) if isinstance(task, dict) else DEFAULT_TASK


def apply_overrides(raw: dict[str, Any], overrides: list[str] | dict[str, Any]) -> dict[str, Any]:
    """Apply ``key.sub=value`` strings (or a ``{dotted: value}`` dict) to a raw recipe mapping (copied)."""
    raw = copy.deepcopy(raw)
    items = list(overrides.items() if isinstance(overrides, dict) else [split_override(o) for o in overrides])
    given = dict(items)
    # Switching architecture (model.name=mlp on a CNN recipe) starts the model section afresh: the old model's
    # keys (channels, ...) mean nothing to the new one. Other model.* overrides still apply, in any order.
    new_name = given.get("model.name")
    if new_name is not None and new_name != (raw.get("model") or {}).get("name"):
        raw["model"] = {"name": new_name}
    # Switching to a task of another family (task.name=vae on a classifier) starts the task section afresh too.
    new_task = given.get("task.name")
    if isinstance(new_task, str) and new_task != _task_name(raw):
        old = _task_name(raw)
        if not isinstance(old, str) or family_of(new_task) is not _family_or_none(old):
            raw["task"] = {"name": new_task}
    for key, value in items:
        parts = key.split(".")
        if not all(parts):
            raise ConfigError(f"override key '{key}' has an empty part; expected e.g. trainer.epochs=3")
        node = raw
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                node[p] = {}
            node = node[p]
        node[parts[-1]] = value
    return raw


def _family_or_none(task: str) -> Family | None:
    try:
        return family_of(task)
    except ConfigError:
        return None


def split_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ConfigError(f"override '{text}' is not KEY=VALUE (e.g. trainer.epochs=3)")
    key, value = text.split("=", 1)
    return key.strip(), parse_value(value)


def validate(raw: dict[str, Any]) -> Recipe:
    """Raw mapping -> :class:`Recipe`, checking every section, including the model's own config fields."""
    task_name = _task_name(raw)
    if not isinstance(task_name, str):
        raise ConfigError(f"task.name: expected a string, got {task_name!r}")
    family = family_of(task_name)
    allowed = SECTIONS + family.sections
    for key in raw:
        if key not in allowed:
            raise ConfigError(
                f"unknown key '{key}'{suggest(str(key), allowed)}; task '{task_name}' ({family.name} family) has "
                f"the sections {', '.join(allowed[2:])}"
            )
    model = dict(raw.get("model") or {})
    if "name" not in model:
        raise ConfigError("recipe has no model.name; expected e.g. model: {name: simple_cnn}")
    get_entry(model["name"])
    rest = {k: v for k, v in model.items() if k != "name"}
    model_config(model["name"], **rest)  # raises on unknown keys / wrong types, naming model.KEY

    def section(key: str, cls: type) -> Any:
        value = raw.get(key) or {}
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return from_dict(cls, value, key)

    task_section = {**(raw.get("task") or {}), "name": task_name}
    extra = {}
    for key in family.sections:
        extra[key] = section(key, family.section_config(key)) if raw.get(key) is not None else None
    return Recipe(
        name=coerce(raw.get("name", "run"), str, "name"),
        description=coerce(raw.get("description", ""), str, "description"),
        task=from_dict(family.task_config(task_name), task_section, "task"),
        model=model,
        data=section("data", family.data_config(task_name)),
        trainer=section("trainer", TrainerConfig),
        family=family,
        extra=extra,
    )


def resolve_recipe(spec: str | Path | dict, overrides: list[str] | dict[str, Any] = ()) -> Recipe:
    raw = copy.deepcopy(spec) if isinstance(spec, dict) else read_recipe_file(spec)
    return validate(apply_overrides(raw, overrides))


def prune_stored(raw: dict[str, Any]) -> dict[str, Any]:
    """A run's resolved ``config.yaml``, possibly written by an older release, reduced to the keys its family's
    sections have today (releases before the family seam wrote every family's sections into every run)."""
    task_name = _task_name(raw)
    family = family_of(task_name) if isinstance(task_name, str) else None
    if family is None:
        return raw
    out = {k: v for k, v in raw.items() if k in SECTIONS + family.sections}
    model = out.get("model")
    if isinstance(model, dict) and model.get("name") is not None:
        known = get_entry(model["name"]).config_cls.__dataclass_fields__
        out["model"] = {k: v for k, v in model.items() if k == "name" or k in known}
    classes = {
        "task": family.task_config(task_name),
        "data": family.data_config(task_name),
        "trainer": TrainerConfig,
        **{k: family.section_config(k) for k in family.sections},
    }
    for key, cls in classes.items():
        if isinstance(out.get(key), dict):
            out[key] = prune_unknown(out[key], cls)
    return out


def run_recipe(run_dir: str | Path, overrides: list[str] | dict[str, Any] = ()) -> Recipe:
    """The recipe stored in a run directory (its resolved ``config.yaml``), with ``overrides`` applied."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a run directory (no config.yaml); expected the --out of deepkit train")
    return validate(apply_overrides(prune_stored(read_recipe_file(path)), overrides))

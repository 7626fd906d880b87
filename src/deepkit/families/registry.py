"""Where families are found: the built-in ones, installed plugins and ``DEEPKIT_FAMILIES``; task name -> family.

A family module defines ``FAMILY = MyFamily()``. Built-in modules are listed in :data:`BUILTIN`; a package can add
its own through the ``deepkit.families`` entry-point group (``[project.entry-points."deepkit.families"]
mine = "mypkg.family"``), and ``DEEPKIT_FAMILIES=mod1,mod2`` names modules to import for one session. Python code
can also call :func:`register_family` directly.
"""

from __future__ import annotations

import importlib
import os

from deepkit.errors import ConfigError, suggest
from deepkit.families.base import Family

BUILTIN = (
    "deepkit.families.supervised",
    "deepkit.families.generative",
    "deepkit.families.text",
    "deepkit.families.seq2seq",
    "deepkit.families.series",
    "deepkit.families.word2vec",
    "deepkit.families.detection",
    "deepkit.families.segmentation",
    "deepkit.families.recommenders",
    "deepkit.families.speech",
    "deepkit.families.tts",
    "deepkit.families.asr",
)
DEFAULT_TASK = "classification"  # a recipe without task.name

_FAMILIES: dict[str, Family] = {}
_TASKS: dict[str, Family] = {}
_loaded: set[str] = set()


def register_family(family: Family) -> Family:
    """Add a family; its task names must be new. Returns it.

    Example:
        >>> register_family(MyFamily())   # doctest: +SKIP
    """
    if not family.name or not family.tasks:
        raise ConfigError(f"family {type(family).__name__} needs a name and at least one task")
    old = _FAMILIES.get(family.name)
    if old is not None and type(old) is type(family):
        return old  # the same module imported twice
    for task in family.tasks:
        owner = _TASKS.get(task)
        if owner is not None and owner.name != family.name:
            raise ConfigError(f"task '{task}' of family '{family.name}' already belongs to family '{owner.name}'")
    if old is not None:
        for task in old.tasks:
            _TASKS.pop(task, None)
    _FAMILIES[family.name] = family
    for task in family.tasks:
        _TASKS[task] = family
    return family


def _import(module: str) -> None:
    if module in _loaded:
        return
    _loaded.add(module)
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise ConfigError(f"cannot import family module '{module}': {e}") from None
    family = getattr(mod, "FAMILY", None)
    if family is not None:
        register_family(family)


def _load() -> None:
    for module in BUILTIN:
        _import(module)
    for module in filter(None, (m.strip() for m in os.environ.get("DEEPKIT_FAMILIES", "").split(","))):
        _import(module)
    if "entry-points" not in _loaded:
        _loaded.add("entry-points")
        from importlib.metadata import entry_points

        for ep in entry_points(group="deepkit.families"):
            _import(ep.value.split(":")[0])


def families() -> list[Family]:
    """Every known family, built-in ones first."""
    _load()
    return list(_FAMILIES.values())


def tasks() -> dict[str, Family]:
    """Task name -> its family, over every family."""
    _load()
    return dict(_TASKS)


def family_of(task: str) -> Family:
    """The family that owns task ``task``; an unknown name suggests the nearest across all families."""
    _load()
    family = _TASKS.get(task)
    if family is None:
        raise ConfigError(f"unknown task '{task}'{suggest(str(task), _TASKS)}")
    return family

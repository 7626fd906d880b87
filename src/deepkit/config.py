"""Typed configs: build a dataclass from a plain mapping with key checking and type coercion.

Recipes, model configs and trainer settings are all dataclasses; this module turns YAML/CLI values into them
and reports mistakes as ``ConfigError`` naming the key, the value received and the type expected.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, Union

from deepkit.errors import ConfigError, suggest

T = TypeVar("T")


def field_types(cls: type) -> dict[str, Any]:
    """Resolved type hints of a dataclass's fields (works with ``from __future__ import annotations``)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        if not typing.get_args(tp):
            return "a list"
        inner = _type_name(typing.get_args(tp)[0])
        plural = {"an integer": "integers", "a number": "numbers", "a string": "strings", "true/false": "true/false"}
        return f"a list of {plural.get(inner, inner)}"
    if tp is type(None):
        return "null"
    return {int: "an integer", float: "a number", bool: "true/false", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert ``value`` to type ``tp`` or raise ``ConfigError`` naming ``where`` (e.g. ``trainer.epochs``)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        present = [a for a in args if a is not type(None)]
        if len(present) == 1:  # X | None: X's own error (e.g. an unknown nested key) is the useful one
            return coerce(value, present[0], where)
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{where}: expected one of {', '.join(map(repr, allowed))}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            hint = f"; a list is written in brackets, e.g. [{value}]" if isinstance(value, int | float | str) else ""
            raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}{hint}")
        (inner,) = typing.get_args(tp)[:1] or (Any,)
        return [coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        if value is None:
            raise ConfigError(f"{where}: expected a mapping, got null")
        return from_dict(tp, value, where)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp in (int, float) and isinstance(value, str):  # YAML reads "1e-3" as a string
        try:
            value = float(value) if tp is float or not value.strip().lstrip("+-").isdigit() else int(value)
        except ValueError:
            raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}") from None
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def from_dict(cls: type[T], data: Mapping[str, Any] | T | None, where: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys are an error that suggests the nearest valid key."""
    if isinstance(data, cls):
        return data
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {data!r}")
    types_ = field_types(cls)
    kwargs = {}
    for key, value in data.items():
        name = f"{where}.{key}" if where else str(key)
        if key not in types_:
            raise ConfigError(f"unknown key '{name}'{suggest(str(key), types_)}")
        kwargs[key] = coerce(value, types_[key], name)
    try:
        return cls(**kwargs)
    except TypeError as e:  # a required field is missing
        raise ConfigError(f"{where or cls.__name__}: {e}") from None


def to_dict(obj: Any) -> Any:
    """Dataclass → plain dict (recursively), suitable for YAML/JSON."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def _dataclass_in(tp: Any) -> type | None:
    """The dataclass in ``tp`` (``X`` or ``X | None``), if any."""
    if dataclasses.is_dataclass(tp):
        return tp
    if typing.get_origin(tp) in (Union, types.UnionType):
        found = [a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)]
        return found[0] if len(found) == 1 else None
    return None


def prune_unknown(data: Mapping[str, Any], cls: type) -> dict[str, Any]:
    """Only the keys dataclass ``cls`` knows, recursively: how a config written by an older release (whose sections
    held more keys) is read. A nested section stored as null where ``cls`` wants a mapping takes its defaults."""
    types_ = field_types(cls)
    out = {}
    for key, value in data.items():
        if key not in types_:
            continue
        inner = _dataclass_in(types_[key])
        if inner is not None and isinstance(value, Mapping):
            value = prune_unknown(value, inner)
        elif inner is not None and value is None and inner is types_[key]:
            continue
        out[key] = value
    return out

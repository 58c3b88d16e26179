"""Typed, validated configuration read from YAML.

Config sections are frozen dataclasses. :func:`from_data` builds one from
plain data and rejects, with the key path and the closest valid key, anything
unknown or of the wrong type; :func:`apply_overrides` applies ``--set
dotted.key=value`` edits to the raw data before validation, so overrides are
checked the same way. YAML is only ever read with the safe loader.

Example:
    >>> import dataclasses
    >>> @dataclasses.dataclass(frozen=True)
    ... class Train:
    ...     epochs: int = 5
    ...     learning_rate: float = 0.1
    >>> from_data(Train, {"epochs": 2}, "train")
    Train(epochs=2, learning_rate=0.1)
    >>> from_data(Train, {"learnin_rate": 2}, "train")
    Traceback (most recent call last):
    ...
    nas.config.ConfigError: train.learnin_rate: unknown key (did you mean 'learning_rate'?)
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from typing import Any, Literal, Sequence, Union

import re

import yaml


class _Loader(yaml.SafeLoader):
    """The safe loader, reading ``1e-4`` as a number (YAML 1.1 wants ``1.0e-4``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                  |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                  |\.[0-9_]+(?:[eE][-+][0-9]+)?
                  |[-+]?\.(?:inf|Inf|INF)
                  |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def load_yaml(text: str) -> Any:
    """Parse YAML text with the safe loader (numbers like ``1e-4`` included)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader


class ConfigError(ValueError):
    """A configuration value that is missing, unknown or of the wrong type; names the key path."""


def closest(key: str, valid) -> str:
    """`` (did you mean ...?)`` for the nearest valid key, or an empty string."""
    match = difflib.get_close_matches(str(key), list(valid), n=1, cutoff=0.5)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _type_name(hint) -> str:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(hint))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(hint))
    if hint is type(None):
        return "null"
    if origin in (list, tuple, Sequence):
        args = typing.get_args(hint)
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict or hint is dict:
        return "mapping"
    return getattr(hint, "__name__", str(hint))


def _coerce(hint, value: Any, where: str):
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return from_data(hint, value, where)
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, choices))}"
                              f"{closest(value, [str(c) for c in choices])}")
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in typing.get_args(hint):
            return None  # null switches an optional section off; it is not an empty section
        errors = []
        for option in typing.get_args(hint):
            try:
                return _coerce(option, value, where)
            except ConfigError as err:
                errors.append(err)
        # A mistake inside a nested section is more useful than "expected X or null".
        nested = [e for e in errors if not str(e).startswith(f"{where}: expected")]
        if nested:
            raise nested[0]
        raise ConfigError(f"{where}: expected {_type_name(hint)}, got {value!r}")
    if hint is type(None):
        if value is not None:
            raise ConfigError(f"{where}: expected null, got {value!r}")
        return None
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if origin in (list, tuple) or hint in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected {_type_name(hint)}, got {value!r}")
        args = typing.get_args(hint)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
            return tuple(_coerce(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        return tuple(_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    raise TypeError(f"unsupported config type {hint!r} at {where}")  # a bug in a schema, not user input


def from_data(cls, data: Any, where: str):
    """Build the dataclass ``cls`` from plain data, validating every key on the way."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and not f.metadata.get("internal")}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in fields:
            raise ConfigError(f"{path}: unknown key{closest(key, fields)}")
        kwargs[key] = _coerce(hints[key], value, path)
    missing = [name for name, f in fields.items()
               if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{where or 'config'}: missing required key(s) {missing}")
    try:
        return cls(**kwargs)
    except ConfigError as err:
        if where and not str(err).startswith(where):
            raise ConfigError(f"{where}.{err}") from None
        raise


def to_data(config) -> Any:
    """Plain data (lists, dicts, scalars) of a config dataclass, for YAML/JSON output."""
    if dataclasses.is_dataclass(config):
        return {f.name: to_data(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, (list, tuple)):
        return [to_data(v) for v in config]
    if isinstance(config, dict):
        return {k: to_data(v) for k, v in config.items()}
    return config


def read_yaml(path: str | os.PathLike) -> Any:
    """Parse a YAML file with the safe loader; errors name the file and line."""
    try:
        with open(path, encoding="utf-8") as handle:
            return load_yaml(handle.read())
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror})") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start}); expected a YAML file") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: malformed YAML: {' '.join(str(err).split())}") from None


def apply_overrides(data: dict, overrides: Sequence[str]) -> dict:
    """Apply ``dotted.key=value`` edits (values parsed as YAML) to a copy of ``data``."""
    import copy

    data = copy.deepcopy(data) if data else {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected dotted.key=value")
        try:
            value = load_yaml(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        node = data
        parts = key.strip().split(".")
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {key}: {'.'.join(parts[:depth + 1])} is not a section")
            node = child
        node[parts[-1]] = value
    return data

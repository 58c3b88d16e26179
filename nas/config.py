"""Typed, validated configuration read from YAML.

Config sections are frozen dataclasses. :func:`from_data` builds one from
plain data and rejects, with the key path and the closest valid key, anything
unknown or of the wrong type; :func:`apply_overrides` applies ``--set
dotted.key=value`` edits to the raw data before validation, so overrides are
checked the same way. YAML is only ever read with the safe loader.

Examples:
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
import re
from typing import Annotated, Any, Callable, Literal, Sequence, Union

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


# A document whose aliases expand past this many nodes is refused: a few lines of nested
# aliases can stand for billions of values, and every later copy or message would expand them.
MAX_EXPANDED_NODES = 100_000


def _expanded_size(node, memo: dict) -> int:
    key = id(node)
    if key not in memo:
        memo[key] = 1  # a recursive alias counts once instead of looping
        if isinstance(node, yaml.SequenceNode):
            memo[key] = 1 + sum(_expanded_size(child, memo) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            memo[key] = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    return memo[key]


def _compose_checked(loader) -> Any:
    node = yaml.SafeLoader.compose_document(loader)
    if node is not None and _expanded_size(node, {}) > MAX_EXPANDED_NODES:
        raise yaml.YAMLError(f"the document's aliases expand to more than {MAX_EXPANDED_NODES:,} values; "
                             "refusing to read it")
    return node


def _mapping_without_duplicates(loader, node, deep=False):
    seen = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, (str, int, float, bool)) or key is None:
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice (lines {seen[key] + 1} and "
                    f"{key_node.start_mark.line + 1}); YAML would silently keep only the last", key_node.start_mark)
            seen[key] = key_node.start_mark.line
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_Loader.compose_document = _compose_checked
_Loader.add_constructor("tag:yaml.org,2002:map", _mapping_without_duplicates)


def load_yaml(text: str) -> Any:
    """Parse YAML text with the safe loader (numbers like ``1e-4`` included).

    Duplicate keys and alias bombs are refused, naming the line.
    """
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader


def _shown(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, so a huge value never floods a message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ConfigError(ValueError):
    """A configuration value that is missing, unknown or of the wrong type; names the key path."""


def closest(key: str, valid, cutoff: float = 0.5) -> str:
    """`` (did you mean ...?)`` for the nearest valid key (similarity at least ``cutoff``), or an empty string."""
    match = difflib.get_close_matches(str(key), list(valid), n=1, cutoff=cutoff)
    return f" (did you mean {match[0]!r}?)" if match else ""


@dataclasses.dataclass(frozen=True)
class Tagged:
    """Marks a section whose schema is chosen by one of its keys: ``Annotated[object, Tagged(...)]``.

    ``lookup(value)`` returns the dataclass for the value of ``key`` (``default``
    when the key is absent) or raises :class:`ConfigError`; the task section
    uses it to pick the registered task's schema from ``task.name``.
    """

    key: str
    default: str
    lookup: Callable[[str], type]


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
    if origin is Annotated:
        tagged = next((m for m in hint.__metadata__ if isinstance(m, Tagged)), None)
        if tagged is None:
            return _coerce(typing.get_args(hint)[0], value, where)
        if dataclasses.is_dataclass(value):
            return value
        if value is not None and not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {_shown(value)}")
        tag = (value or {}).get(tagged.key, tagged.default)
        try:
            cls = tagged.lookup(tag)
        except ConfigError as err:
            raise ConfigError(f"{where}.{tagged.key}: {err}") from None
        return from_data(cls, value, where)
    if dataclasses.is_dataclass(hint):
        return from_data(hint, value, where)
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise ConfigError(f"{where}: {_shown(value)} is not one of {', '.join(map(repr, choices))}"
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
        raise ConfigError(f"{where}: expected {_type_name(hint)}, got {_shown(value)}")
    if hint is type(None):
        if value is not None:
            raise ConfigError(f"{where}: expected null, got {_shown(value)}")
        return None
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {_shown(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {_shown(value)}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {_shown(value)}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {_shown(value)}")
        return value
    if origin in (list, tuple) or hint in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected {_type_name(hint)}, got {_shown(value)}")
        args = typing.get_args(hint)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
            return tuple(_coerce(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        return tuple(_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {_shown(value)}")
        return dict(value)
    raise TypeError(f"unsupported config type {hint!r} at {where}")  # a bug in a schema, not user input


def from_data(cls, data: Any, where: str):
    """Build the dataclass ``cls`` from plain data, validating every key on the way."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {_shown(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and not f.metadata.get("internal")}
    hints = typing.get_type_hints(cls, include_extras=True)
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


def read_text(path: str | os.PathLike, error: Callable[[str], Exception] = ConfigError, what: str = "",
              hint: str = "save it as UTF-8") -> str:
    """The UTF-8 text of a file; a missing, unreadable or undecodable file raises ``error`` naming it.

    ``what`` names the kind of file in the message (``cannot read genome file
    (...)``); ``hint`` follows the offset of a byte that is not UTF-8.

    Examples:
        >>> read_text("no/such.yaml", what="genome file")
        Traceback (most recent call last):
        ...
        nas.config.ConfigError: no/such.yaml: cannot read genome file (No such file or directory)
    """
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except UnicodeDecodeError as err:
        raise error(f"{path}: not UTF-8 text (byte {err.start}); {hint}") from None
    except OSError as err:
        raise error(f"{path}: cannot read {what + ' ' if what else ''}({err.strerror})") from None


def read_yaml(path: str | os.PathLike) -> Any:
    """Parse a YAML file with the safe loader; errors name the file and line."""
    text = read_text(path)
    try:
        return load_yaml(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: malformed YAML: {' '.join(str(err).split())}") from None


def require(ok: bool, key: str, rule: str, value: Any) -> None:
    """Raise :class:`ConfigError` ``"KEY: must be RULE, got VALUE"`` unless ``ok``: a section's range checks.

    Examples:
        >>> require(3 >= 1, "epochs", "positive", 3)
        >>> require(0 >= 1, "epochs", "positive", 0)
        Traceback (most recent call last):
        ...
        nas.config.ConfigError: epochs: must be positive, got 0
    """
    if not ok:
        raise ConfigError(f"{key}: must be {rule}, got {value}")


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

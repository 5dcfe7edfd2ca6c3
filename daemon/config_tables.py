"""TOML tables into the config's frozen dataclasses: every key checked against the
dataclass's fields and the type of its default, with an error that says what to write."""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from typing import Any, get_args, get_origin, get_type_hints

from daemon.errors import ConfigError


def _table_item_type(cls: type, key: str) -> type | None:
    """The dataclass X when field `key` of `cls` is declared `tuple[X, ...]`, else None."""
    hint = get_type_hints(cls).get(key)
    if get_origin(hint) is tuple:
        args = get_args(hint)
        if args and isinstance(args[0], type) and is_dataclass(args[0]):
            return args[0]
    return None


def _is_str_list_map(cls: type, key: str) -> bool:
    """True when field `key` of `cls` is declared `dict[str, tuple[str, ...]]`."""
    hint = get_type_hints(cls).get(key)
    return get_origin(hint) is dict and get_origin(get_args(hint)[1]) is tuple


def build_dataclass(cls: type, table: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        if key not in known or key == "source":
            raise ConfigError(
                f"unknown key {where}{key!r} in the config; known keys: "
                f"{', '.join(sorted(k for k in known if k != 'source'))}"
            )
        default = getattr(cls(), key)
        item = _table_item_type(cls, key)
        if item is not None:  # an array of tables: [[sync.targets]]
            if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                raise ConfigError(f"{where}{key} must be an array of tables ([[{where}{key}]])")
            kwargs[key] = tuple(build_dataclass(item, v, f"{where}{key}[{i}].")
                                for i, v in enumerate(value))
        elif _is_str_list_map(cls, key):  # a table of lists: {compaction = ["a", "b"]}
            if not isinstance(value, dict) or not all(
                    isinstance(v, list) and all(isinstance(x, str) for x in v)
                    for v in value.values()):
                raise ConfigError(f"[{where}{key}] must map names to lists of strings")
            kwargs[key] = {k: tuple(v) for k, v in value.items()}
        elif is_dataclass(default):
            if not isinstance(value, dict):
                raise ConfigError(f"[{where}{key}] must be a table")
            kwargs[key] = build_dataclass(type(default), value, f"{where}{key}.")
        elif isinstance(default, tuple):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{where}{key} must be a list of strings, got {value!r}")
            kwargs[key] = tuple(value)
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"{where}{key} must be true or false, got {value!r}")
            kwargs[key] = value
        elif isinstance(default, (int, float)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{where}{key} must be a number, got {value!r}")
            if isinstance(default, int) and not isinstance(value, int):
                raise ConfigError(f"{where}{key} must be a whole number, got {value!r}")
            kwargs[key] = type(default)(value)
        else:
            if not isinstance(value, str):
                raise ConfigError(f"{where}{key} must be a string, got {value!r}")
            kwargs[key] = value
    return cls(**kwargs)

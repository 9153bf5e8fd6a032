"""Field-by-field check of a value against the snapshot's TypedDicts (apps/metrics/snapshot.py).

The TypedDicts spell the contract of docs/metrics.md ("The snapshot"); a
snapshot, the docs' own example, or a test's hand-made one is checked
against them: exactly the declared keys at every level, each value of its
declared type (``int | None`` allows ``null``, ``float`` allows an int as
JSON does).
"""

from __future__ import annotations

import types
import typing
from typing import Any, get_args, get_origin, get_type_hints


def is_typeddict(shape: Any) -> bool:
    return isinstance(shape, type) and issubclass(shape, dict) and hasattr(shape, "__annotations__")


def contract_errors(value: Any, shape: Any, path: str = "snapshot") -> list[str]:
    """Every way ``value`` departs from ``shape``, as ``path: what`` lines; [] when it conforms."""
    if shape is Any:
        return []
    if is_typeddict(shape):
        return _dict_errors(value, shape, path)
    origin = get_origin(shape)
    if origin in (typing.Union, types.UnionType):
        options = [contract_errors(value, option, path) for option in get_args(shape)]
        return [] if any(not errors for errors in options) else min(options, key=len)
    if origin is list:
        if not isinstance(value, list):
            return [f"{path}: {type(value).__name__} where a list belongs"]
        (item,) = get_args(shape)
        return [e for index, element in enumerate(value) for e in contract_errors(element, item, f"{path}[{index}]")]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{path}: {type(value).__name__} where an object belongs"]
        key_type, item = get_args(shape)
        return [e for key, element in value.items()
                for e in contract_errors(key, key_type, f"{path} key {key!r}")
                + contract_errors(element, item, f"{path}[{key!r}]")]
    return _scalar_errors(value, shape, path)


def _dict_errors(value: Any, shape: type, path: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"{path}: {type(value).__name__} where {shape.__name__} belongs"]
    hints = get_type_hints(shape)
    errors = [f"{path}.{name}: missing" for name in hints if name not in value]
    errors += [f"{path}.{name}: not in {shape.__name__}" for name in value if name not in hints]
    for name, hint in hints.items():
        if name in value:
            errors += contract_errors(value[name], hint, f"{path}.{name}")
    return errors


def _scalar_errors(value: Any, shape: Any, path: str) -> list[str]:
    if shape is type(None):
        ok = value is None
    elif shape is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif shape is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, shape)
    return [] if ok else [f"{path}: {value!r} is not {getattr(shape, '__name__', shape)}"]

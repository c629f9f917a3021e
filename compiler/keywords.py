"""Keyword arguments onto frozen settings records: how a notebook's `model.build("arm-a7", precision="int8", tune=8)`
becomes the records tcc's functions take, every keyword checked against the records' fields.

    settings = with_keywords(BuildSettings("host"), {"precision": "int8", "tune": 8}, "build")

A keyword names a field of the record, or a field of a record it holds one level down (where no field of its own has
that name); a field that holds a record takes a record, or a mapping of that record's fields. Any other keyword is a
TypeError naming the nearest field, as Python's own is for a misspelt keyword.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields, is_dataclass, replace
from typing import Any, TypeVar

from .errors import suggest

R = TypeVar("R")


def with_keywords(record: R, keywords: Mapping[str, Any], what: str) -> R:
    """`record` with the fields `keywords` name replaced (see the module's docstring); `what` names the call in a
    TypeError ("build", "calibrate", ...)."""
    own = _field_names(record)
    changes: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for key, value in keywords.items():
        if key in own:
            current = getattr(record, key)
            changes[key] = (
                with_keywords(current, value, what) if is_dataclass(current) and isinstance(value, Mapping) else value
            )
        else:
            nested.setdefault(_holder(record, key, what), {})[key] = value
    for holder, values in nested.items():
        changes[holder] = with_keywords(changes.get(holder, getattr(record, holder)), values, what)
    return replace(record, **changes)  # type: ignore[type-var]


def keyword_names(record: object) -> list[str]:
    """Every keyword `with_keywords` takes for `record`: its fields, then those of the records it holds."""
    own = _field_names(record)
    return own + [n for f in own for n in _field_names(getattr(record, f)) if n not in own]


def _field_names(record: object) -> list[str]:
    return [f.name for f in fields(record)] if is_dataclass(record) and not isinstance(record, type) else []


def _holder(record: object, key: str, what: str) -> str:
    """The one field of `record` holding a record with a field `key`."""
    holders = [f for f in _field_names(record) if key in _field_names(getattr(record, f))]
    if len(holders) == 1:
        return holders[0]
    if holders:
        raise TypeError(f"{what}() keyword argument {key!r} is ambiguous: a field of {' and '.join(holders)}")
    raise TypeError(f"{what}() got an unexpected keyword argument {key!r}{suggest(key, keyword_names(record))}")

"""Command-line values: ``key=value`` assignments (YAML scalars) and comma-separated lists."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import CmadapterError


def parse_value(text: str) -> Any:
    """A ``key=value`` value: YAML scalars (ints, floats, bools, lists) or the plain string."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_assignments(items: Sequence[str], what: str) -> dict[str, Any]:
    values = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CmadapterError(f"{what} must look like key=value, got {item!r}")
        values[key.strip()] = parse_value(value)
    return values


def csv_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]

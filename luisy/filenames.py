"""File-name rules compatible with luisy 1.4.7 (so existing working dirs are recognised)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def string_repr(value: Any) -> str:
    """Text of a parameter value as it appears in an auto filename.

    Iterables (lists, tuples, dicts' keys, ...) are joined with ``_``, recursively;
    spaces and slashes become ``_``.
    """
    if isinstance(value, str):
        return value.replace(" ", "_").replace("/", "_")
    if isinstance(value, Iterable) or hasattr(value, "__iter__"):
        return "_".join(string_repr(item) for item in value)
    return str(value).replace(" ", "_").replace("/", "_")


def auto_file_name(
    family: str,
    params: Iterable[tuple[str, Any]],
    excl_params: Iterable[str] = (),
    excl_none: bool = False,
) -> str:
    """``Family_a=1_b=x`` from the task family and its parameters, sorted by name.

    ``working_dir`` and names in ``excl_params`` are left out; with ``excl_none``,
    parameters whose value is ``None`` are too.
    """
    excluded = set(excl_params) | {"working_dir"}
    parts = [family]
    for name, value in sorted(params, key=lambda item: item[0]):
        if name in excluded or (excl_none and value is None):
            continue
        parts.append(f"{name}={string_repr(value)}")
    return "_".join(parts)


def strip_ending(file_name: str, ending: str) -> str:
    """Drop a trailing ``.<ending>`` the user may have added to a custom file name."""
    suffix = "." + ending if ending else ""
    if suffix and file_name.endswith(suffix):
        return file_name[: -len(suffix)]
    return file_name


def with_ending(file_name: str, ending: str) -> str:
    """``name.<ending>``, or ``name`` for directory outputs (empty ending)."""
    base = strip_ending(file_name, ending)
    return f"{base}.{ending}" if ending else base

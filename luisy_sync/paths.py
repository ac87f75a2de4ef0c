"""Validation of relative object names: nothing may escape its root."""

from __future__ import annotations

import os

from luisy_sync.errors import UnsafePathError


def safe_relpath(name: str) -> str:
    """Return ``name`` if it is a safe POSIX relative path, else raise UnsafePathError.

    Refused: empty names, absolute paths, drive letters, backslashes, NUL bytes, and
    ``.``/``..``/empty segments.
    """
    if not name:
        raise UnsafePathError("refusing an empty object name")
    if "\\" in name or "\x00" in name:
        raise UnsafePathError(f"refusing object name {name!r}: backslashes and NUL bytes are not allowed")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UnsafePathError(f"refusing object name {name!r}: absolute paths are not allowed")
    for part in name.split("/"):
        if part in ("", ".", ".."):
            raise UnsafePathError(f"refusing object name {name!r}: '..', '.' and empty path segments are not allowed")
    return name


def join_under(root: str | os.PathLike[str], name: str) -> str:
    """``root/name`` for a safe ``name``, guaranteed to stay below ``root``."""
    rel = safe_relpath(name)
    base = os.path.abspath(os.fspath(root))
    full = os.path.abspath(os.path.join(base, *rel.split("/")))
    if os.path.commonpath([base, full]) != base:
        raise UnsafePathError(f"refusing object name {name!r}: it resolves outside {base}")
    return full

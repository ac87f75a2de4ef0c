"""Validation of relative object names: nothing may escape its root."""

from __future__ import annotations

import functools
import ntpath
import os

from luisy_sync.errors import UnsafePathError


def safe_relpath(name: str) -> str:
    """Return ``name`` if it is a safe POSIX relative path, else raise UnsafePathError.

    Refused: empty names, absolute paths, backslashes, NUL bytes, names that are not
    valid UTF-8 (undecodable bytes in a file name), ``.``/``..``/empty segments, and on
    Windows names starting with a drive (``C:``). A colon is an ordinary character
    elsewhere (``a:b`` is a relative name on POSIX).
    """
    if not name:
        raise UnsafePathError("refusing an empty object name")
    if (name.isascii() and name[0] not in "/." and name[-1] != "/" and "/." not in name
            and "//" not in name and "\\" not in name and "\x00" not in name
            and (os.name != "nt" or ":" not in name)):
        return name  # the common case, settled without splitting (a plan checks every name)
    if "\\" in name or "\x00" in name:
        raise UnsafePathError(f"refusing object name {name!r}: backslashes and NUL bytes are not allowed")
    if not name.isascii() and not is_utf8(name):
        raise UnsafePathError(f"refusing object name {name!r}: it is not valid UTF-8, which object "
                              "names must be; rename the file")
    if name.startswith("/") or (os.name == "nt" and ntpath.splitdrive(name)[0]):
        raise UnsafePathError(f"refusing object name {name!r}: absolute paths are not allowed")
    for part in name.split("/"):
        if part in ("", ".", ".."):
            raise UnsafePathError(f"refusing object name {name!r}: '..', '.' and empty path "
                                  "segments are not allowed")
    return name


def is_utf8(name: str) -> bool:
    """Whether ``name`` encodes as UTF-8 (a file name of undecodable bytes holds surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@functools.lru_cache(maxsize=256)
def _normalized(root: str) -> str:
    """An absolute root, normalized (cached: absolute paths do not depend on the cwd)."""
    return os.path.normpath(root)


def join_under(root: str | os.PathLike[str], name: str) -> str:
    """``root/name`` for a safe ``name``, guaranteed to stay below ``root``."""
    rel = safe_relpath(name)
    root = os.fspath(root)
    if os.name != "nt" and isinstance(root, str) and root.startswith("/"):
        # POSIX: a name safe_relpath accepts (no "", ".", ".." segment, no leading "/")
        # joined to a normalized absolute root is normalized and below it as it is.
        return os.path.join(_normalized(root), rel)
    base = os.path.abspath(root)
    full = os.path.abspath(os.path.join(base, *rel.split("/")))
    if os.path.commonpath([base, full]) != base:
        raise UnsafePathError(f"refusing object name {name!r}: it resolves outside {base}")
    return full

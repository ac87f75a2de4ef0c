"""Where a LocalStore's objects live: names to paths below the root, symlinks refused.

An object ``a/b.txt`` is the file ``<root>/a/b.txt``. Names below ``.luisy-store/``
(the bookkeeping) and names that look like temp files are refused, and so is every
symlink inside the root, on every path: a write, read, delete or listing through a
linked directory or of a linked file raises UnsafePathError.
"""

from __future__ import annotations

import os
import stat as stat_mod

from luisy_sync.conventions import STORE_DIR, TEMP_NAME, is_temp_name
from luisy_sync.errors import UnsafePathError
from luisy_sync.paths import join_under, safe_relpath


def link_error(root: str, name: str, link: str) -> UnsafePathError:
    """The one-line error for a symlink ``link`` met while handling object ``name``."""
    rel = os.path.relpath(link, root).replace(os.sep, "/")
    return UnsafePathError(f"refusing {name!r} in local store {root}: {rel!r} is a symlink; "
                           "symlinks inside a store are refused, replace it with a real file or directory")


def object_path(root: str, name: str, checked: set[str] | None = None) -> str:
    """The content path of a valid, non-reserved object name whose existing parent
    directories are no symlinks (``checked``: directories already found fine)."""
    safe_relpath(name)
    parts = name.split("/")
    if parts[0] == STORE_DIR:
        raise UnsafePathError(f"refusing object name {name!r}: {STORE_DIR}/ is reserved")
    if TEMP_NAME.match(parts[-1]):
        raise UnsafePathError(f"refusing object name {name!r}: it looks like a temp file")
    path = join_under(root, name)
    directory = root
    for part in parts[:-1]:
        directory = os.path.join(directory, part)
        if checked is not None and directory in checked:
            continue
        try:
            st = os.lstat(directory)
        except (FileNotFoundError, NotADirectoryError):
            break
        if stat_mod.S_ISLNK(st.st_mode):
            raise link_error(root, name, directory)
        if checked is not None:
            checked.add(directory)
    return path


def lstat_object(root: str, name: str, path: str) -> os.stat_result | None:
    """The stat of an object's file; None when missing; refuses a symlink."""
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    if stat_mod.S_ISLNK(st.st_mode):
        raise link_error(root, name, path)
    return st


def walk(root: str, prefix: str) -> list[tuple[str, os.stat_result]]:
    """``(name, stat)`` of every object file whose name starts with ``prefix`` (unsorted),
    visiting only the directories that can hold such names; refuses a symlink among them."""
    base = prefix.rpartition("/")[0]
    if base:
        object_path(root, base + "/x")  # refuse a symlink among the directories listed
    start = join_under(root, base) if base else root
    found: list[tuple[str, os.stat_result]] = []
    stack = [(start, base + "/" if base else "")]
    while stack:
        directory, rel = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            name = rel + entry.name
            if not rel and entry.name == STORE_DIR:
                continue
            if entry.is_file(follow_symlinks=False):  # the common case first: a regular file
                if not name.startswith(prefix) or is_temp_name(entry.name):
                    continue
                try:
                    found.append((name, entry.stat(follow_symlinks=False)))
                except FileNotFoundError:
                    continue
            elif entry.is_symlink():
                if name.startswith(prefix) or prefix.startswith(name + "/"):
                    raise link_error(root, name, entry.path)
            elif entry.is_dir(follow_symlinks=False):
                if name.startswith(prefix) or prefix.startswith(name + "/"):
                    stack.append((entry.path, name + "/"))
    return found

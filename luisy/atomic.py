"""Atomic file and directory publication: write under a temporary name, then rename."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator

from luisy_sync.conventions import temp_path


def _temp_sibling(path: str) -> str:
    """A hidden, unique name next to ``path`` that keeps its extension (luisy_sync's
    temp-name scheme, so a push never mistakes it for data)."""
    return temp_path(os.path.abspath(path), keep_ext=True)


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yield a temporary file path; on success it replaces ``path`` in one step.

    On error the temporary file is removed and ``path`` is left untouched.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = _temp_sibling(path)
    try:
        yield tmp
        if not os.path.exists(tmp):
            raise OSError(f"nothing was written for {path}")
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def atomic_dir(path: str) -> Iterator[str]:
    """Yield a fresh temporary directory; on success it takes the place of ``path``.

    An existing directory at ``path`` is replaced. On error the temporary directory is
    removed and ``path`` is left as it was.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = _temp_sibling(path)
    os.makedirs(tmp)
    try:
        yield tmp
        if os.path.isdir(path):
            old = _temp_sibling(path)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def write_bytes_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (fsync before the rename)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


def remove_path(path: str) -> bool:
    """Delete a file or a directory tree; returns whether something was there."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
        return True
    if os.path.lexists(path):
        os.remove(path)
        return True
    return False

"""Atomic publication of files and directories: the one implementation both packages use.

Content is written to a hidden temp file (named by :mod:`luisy_sync.conventions`) beside
its final name and renamed into place only when complete. A reader sees the old file or
the complete new one, never a part; a failed write leaves no temp file behind. Used by
LocalStore writes, downloads, the sync record, and luisy's outputs and ``.luisy.hash``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from collections.abc import Iterable, Iterator
from typing import Protocol

from luisy_sync.blockio import BytesLike, write_all
from luisy_sync.conventions import temp_path

__all__ = ["atomic_dir", "atomic_path", "fill", "open_in_made_dir", "publish", "remove_path",
           "remove_quietly", "write_atomic",
           "write_temp"]


class _Hasher(Protocol):
    def update(self, data: BytesLike, /) -> object: ...


def remove_quietly(path: str) -> None:
    """Unlink ``path``; a file that is already gone is fine."""
    try:
        os.unlink(path)
    except OSError:
        pass


def remove_path(path: str) -> bool:
    """Delete a file or a directory tree; returns whether something was there."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
        return True
    if os.path.lexists(path):
        os.remove(path)
        return True
    return False


def write_temp(final: str, chunks: Iterable[BytesLike], *, fsync: bool = False, mode: int = 0o644,
               hasher: _Hasher | None = None) -> tuple[str, os.stat_result]:
    """Write ``chunks`` to a fresh temp file beside ``final`` (its directory is made),
    created with permission bits ``mode`` (less the umask); ``hasher`` sees every chunk.

    Returns ``(temp path, its stat)``; the caller publishes it or removes it. On failure
    nothing is left behind.
    """
    tmp = temp_path(final)
    fd = open_in_made_dir(tmp, os.path.dirname(final), os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            st = fill(fd, chunks, fsync=fsync, hasher=hasher)
        finally:
            os.close(fd)
    except BaseException:
        remove_quietly(tmp)
        raise
    return tmp, st


def open_in_made_dir(path: str, directory: str, flags: int, mode: int) -> int:
    """``os.open(path, flags, mode)``, making ``directory`` (where ``path`` lives, or
    ``path`` itself for an unnamed file) when it is missing; a concurrent delete may prune
    the directory just made, so that is tried three times."""
    for attempt in range(3):
        try:
            return os.open(path, flags, mode)
        except FileNotFoundError:
            if attempt == 2:
                raise
            os.makedirs(directory, exist_ok=True)
    raise AssertionError("unreachable")


def fill(fd: int, chunks: Iterable[BytesLike], *, fsync: bool = False,
         hasher: _Hasher | None = None) -> os.stat_result:
    """Write ``chunks`` to the new file ``fd`` (``hasher`` sees every chunk), fsync it when
    asked, and return its stat."""
    for chunk in chunks:
        write_all(fd, chunk)
        if hasher is not None:
            hasher.update(chunk)
    if fsync:
        os.fsync(fd)
    return os.fstat(fd)


def publish(tmp: str, final: str, *, keep_mode: bool = False) -> None:
    """Rename the complete temp file ``tmp`` onto ``final`` (removed on failure).
    ``keep_mode``: it takes the permission bits of the file it replaces."""
    try:
        if keep_mode:
            with contextlib.suppress(FileNotFoundError):
                os.chmod(tmp, stat.S_IMODE(os.stat(final).st_mode))
        os.replace(tmp, final)
    except BaseException:
        remove_quietly(tmp)
        raise


def write_atomic(final: str, chunks: Iterable[BytesLike], *, fsync: bool = False, mode: int = 0o644,
                 keep_mode: bool = False) -> None:
    """Write ``chunks`` to a temp file beside ``final`` (permission bits ``mode``, or with
    ``keep_mode`` those of the file it replaces) and rename it into place."""
    tmp, _ = write_temp(final, chunks, fsync=fsync, mode=mode)
    publish(tmp, final, keep_mode=keep_mode)


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yield a temp file path (with ``path``'s extension, for writers that pick a format
    by it); on success it replaces ``path`` in one step. On error the temp file is removed
    and ``path`` is left untouched."""
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = temp_path(path, keep_ext=True)
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
    """Yield a fresh temp directory; on success it takes the place of ``path`` (an existing
    directory there is replaced). On error the temp directory is removed and ``path`` is
    left as it was."""
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = temp_path(path, keep_ext=True)
    os.makedirs(tmp)
    try:
        yield tmp
        if os.path.isdir(path):
            old = temp_path(path, keep_ext=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)

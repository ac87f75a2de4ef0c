"""Atomic file writes for LocalStore: a hidden temp file beside the target, then rename.

A reader sees either the old file or the complete new one, and a failed write leaves
no temp file behind.
"""

from __future__ import annotations

import os
from typing import Iterable

import xxhash

from luisy_sync.conventions import TEMP_NAME, temp_path

__all__ = ["TEMP_NAME", "content_etag", "remove_quietly", "write_atomic", "write_temp"]


def content_etag(data: bytes) -> str:
    """The deterministic ETag of ``data`` in a LocalStore: quoted xxh3-64 hex."""
    return f'"{xxhash.xxh3_64_hexdigest(data)}"'


def remove_quietly(path: str) -> None:
    """Unlink ``path``; a file that is already gone is fine."""
    try:
        os.unlink(path)
    except OSError:
        pass


def write_temp(final: str, chunks: Iterable[bytes], *, fsync: bool = False, mode: int = 0o644
               ) -> tuple[str, os.stat_result, str]:
    """Write ``chunks`` to a fresh temp file beside ``final`` (its directory is made),
    created with permission bits ``mode`` (less the umask).

    Returns ``(temp path, its stat, content ETag as in content_etag)``; the caller
    renames it into place or removes it. On failure nothing is left behind.
    """
    directory = os.path.dirname(final)
    tmp = temp_path(final)
    for attempt in range(3):  # a concurrent delete may prune the directory just made
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            break
        except FileNotFoundError:
            if attempt == 2:
                raise
            os.makedirs(directory, exist_ok=True)
    try:
        try:
            hasher = xxhash.xxh3_64()
            for chunk in chunks:
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
                hasher.update(chunk)
            if fsync:
                os.fsync(fd)
            st = os.fstat(fd)
        finally:
            os.close(fd)
    except BaseException:
        remove_quietly(tmp)
        raise
    return tmp, st, f'"{hasher.hexdigest()}"'


def write_atomic(final: str, chunks: Iterable[bytes], *, fsync: bool = False,
                 mode: int = 0o644) -> None:
    """Write ``chunks`` to a temp file beside ``final`` (permission bits ``mode``) and
    rename it into place."""
    tmp, _, _ = write_temp(final, chunks, fsync=fsync, mode=mode)
    try:
        os.replace(tmp, final)
    except BaseException:
        remove_quietly(tmp)
        raise

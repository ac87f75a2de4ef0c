"""Atomic file writes for LocalStore: a hidden temp file beside the target, then rename.

A reader sees either the old file or the complete new one, and a failed write leaves
no temp file behind.
"""

from __future__ import annotations

import os
from typing import Callable, Iterable

import xxhash

from luisy_sync.tempnames import TEMP_NAME, temp_path

__all__ = ["TEMP_NAME", "content_etag", "write_atomic"]  # TEMP_NAME: for LocalStore


def content_etag(data: bytes) -> str:
    """The deterministic ETag of ``data`` in a LocalStore: quoted xxh3-64 hex."""
    return f'"{xxhash.xxh3_64_hexdigest(data)}"'


def write_atomic(final: str, chunks: Iterable[bytes], *, fsync: bool = False,
                 before_replace: Callable[[os.stat_result, str], None] | None = None) -> None:
    """Write ``chunks`` to a temp file beside ``final`` and rename it into place.

    ``before_replace(stat, etag)`` runs once the data is written (``etag`` as in
    ``content_etag``), just before the rename; if it raises, nothing is renamed.
    """
    directory = os.path.dirname(final)
    tmp = temp_path(final)
    for attempt in range(3):  # a concurrent delete may prune the directory just made
        os.makedirs(directory, exist_ok=True)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            break
        except FileNotFoundError:
            if attempt == 2:
                raise
    try:
        hasher = xxhash.xxh3_64()
        with os.fdopen(fd, "wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
                hasher.update(chunk)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
            st = os.fstat(fh.fileno())
        if before_replace is not None:
            before_replace(st, f'"{hasher.hexdigest()}"')
        os.replace(tmp, final)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise

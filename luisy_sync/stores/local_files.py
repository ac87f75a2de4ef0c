"""A LocalStore's object files: writing one with its content ETag, linking (or copying)
one to a temp name beside another, and describing one (ETag, ObjectInfo) from its row in
the object index (no row: a file put there by hand, described by its stat)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat as stat_mod
from collections.abc import Iterable

import xxhash

from luisy_sync.atomic import remove_quietly, write_temp
from luisy_sync.conventions import temp_path
from luisy_sync.stores.base import DIGEST_KEY, ObjectInfo
from luisy_sync.stores.local_index import Row

NO_HARD_LINK = frozenset({errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EOPNOTSUPP,
                           getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)})
"""Errors of ``os.link`` that mean "no hard link here" (copy the bytes instead)."""


def content_etag(data: bytes) -> str:
    """The ETag this store gives content it wrote: quoted xxh3-64 hex."""
    return f'"{xxhash.xxh3_64_hexdigest(data)}"'


def write_content(path: str, chunks: Iterable[bytes], fsync: bool) -> tuple[str, os.stat_result, str]:
    """A temp file beside ``path`` holding ``chunks``: (temp path, its stat, content ETag)."""
    hasher = xxhash.xxh3_64()
    tmp, st = write_temp(path, chunks, fsync=fsync, hasher=hasher)
    return tmp, st, f'"{hasher.hexdigest()}"'


def same_file(a: os.stat_result, b: os.stat_result) -> bool:
    """Whether two stats describe one regular file, unchanged (what an index row checks)."""
    return (stat_mod.S_ISREG(a.st_mode) and a.st_ino == b.st_ino and a.st_dev == b.st_dev
            and a.st_size == b.st_size and a.st_mtime_ns == b.st_mtime_ns)


def stat_etag(st: os.stat_result) -> str:
    """The ETag of a file the index has no valid row for (put there by hand)."""
    return f'"s{st.st_size:x}-{st.st_mtime_ns:x}-{st.st_ino:x}"'


def etag_of(st: os.stat_result, row: Row | None) -> str:
    """The ETag of a file, from its index row (None: a file put there by hand)."""
    return stat_etag(st) if row is None else row[3]


def info_of(name: str, st: os.stat_result, row: Row | None) -> ObjectInfo:
    """The ObjectInfo of a file, from its index row (None: a file put there by hand)."""
    if row is None:
        return ObjectInfo(name, st.st_size, stat_etag(st), {}, st.st_mtime)
    meta: dict[str, str] = json.loads(row[5]) if row[5] else {}
    if row[4] is not None:
        meta[DIGEST_KEY] = row[4]
    return ObjectInfo(name, st.st_size, row[3], meta, st.st_mtime)


def clone_file(src_path: str, path: str, fsync: bool) -> tuple[str, bool]:
    """A temp name beside ``path`` for the file at ``src_path``: a hard link when the
    filesystem allows one (True), else a copy of the bytes (False). Raises
    FileNotFoundError when the source is gone."""
    tmp = temp_path(path)
    for attempt in range(3):  # a concurrent delete may prune the directory just made
        try:
            os.link(src_path, tmp, follow_symlinks=False)
            return tmp, True
        except FileNotFoundError:
            if not os.path.lexists(src_path):
                raise FileNotFoundError(errno.ENOENT, "the source is gone", src_path) from None
            if attempt == 2:
                raise
            os.makedirs(os.path.dirname(path), exist_ok=True)
        except OSError as exc:
            if exc.errno not in NO_HARD_LINK:
                raise
            break
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        shutil.copyfile(src_path, tmp, follow_symlinks=False)  # copy_file_range / sendfile
        if fsync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    except BaseException as exc:
        remove_quietly(tmp)
        if isinstance(exc, FileNotFoundError) and not os.path.lexists(src_path):
            raise FileNotFoundError(errno.ENOENT, "the source is gone", src_path) from None
        raise
    return tmp, False

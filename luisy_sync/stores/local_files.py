"""A LocalStore's object files: writing one with its content ETag (to a temp name beside
its final name, or, for a name nothing holds yet, to an unnamed file that is linked into
place), linking (or copying) one to a temp name beside another, and describing one (ETag,
ObjectInfo) from its row in the object index (no row: a file put there by hand, described
by its stat).

Unnamed files (Linux ``O_TMPFILE``): the content is written to an inode that has no
directory entry, and ``linkat`` gives it its final name in one step, so a reader sees no
file or the complete one, exactly as with a temp file and a rename. A new object then
costs one directory entry instead of three directory updates (temp name added, final
name added, temp name removed): in directories of a thousand entries that is most of the
kernel time of a write. A crash leaves nothing behind (the kernel frees the inode), and a
name that appears meanwhile is replaced by a rename as before. Where the filesystem or
the platform has no ``O_TMPFILE`` (or ``/proc`` is missing), writes use temp names.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat as stat_mod
import threading
from collections.abc import Iterable

import xxhash

from luisy_sync.atomic import fill, open_in_made_dir, remove_quietly, write_temp
from luisy_sync.conventions import temp_path
from luisy_sync.stores.base import DIGEST_KEY, BytesLike, ObjectInfo
from luisy_sync.stores.local_index import Row

NO_HARD_LINK = frozenset({errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EOPNOTSUPP,
                           getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)})
"""Errors of ``os.link`` that mean "no hard link here" (copy the bytes instead)."""


def content_etag(data: bytes) -> str:
    """The ETag this store gives content it wrote: quoted xxh3-64 hex."""
    return f'"{xxhash.xxh3_64_hexdigest(data)}"'


def write_content(path: str, chunks: Iterable[BytesLike], fsync: bool) -> tuple[str, os.stat_result, str]:
    """A temp file beside ``path`` holding ``chunks``: (temp path, its stat, content ETag)."""
    hasher = xxhash.xxh3_64()
    tmp, st = write_temp(path, chunks, fsync=fsync, hasher=hasher)
    return tmp, st, f'"{hasher.hexdigest()}"'


_O_TMPFILE = getattr(os, "O_TMPFILE", 0)
NO_TMPFILE = frozenset({errno.EOPNOTSUPP, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP), errno.EISDIR,
                        errno.EINVAL})
"""Errors of ``open(dir, O_TMPFILE)`` that mean "no unnamed files here" (use temp names)."""

_proc_lock = threading.Lock()
_proc: tuple[int, int] | None = None  # (pid, fd of /proc/self/fd) of this process


def _proc_fd() -> int | None:
    """A directory fd of ``/proc/self/fd`` of this process (None without /proc): unnamed
    files get their name through it (``linkat`` of ``N`` relative to it, following the link)."""
    global _proc
    pid = os.getpid()
    with _proc_lock:
        if _proc is None or _proc[0] != pid:  # never use a parent's fd after a fork
            try:
                _proc = (pid, os.open(f"/proc/{pid}/fd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
            except OSError:
                return None
        return _proc[1]


def tmpfile_supported() -> bool:
    """Whether this platform can link unnamed files into place (O_TMPFILE and /proc)."""
    return (bool(_O_TMPFILE) and os.link in os.supports_dir_fd
            and os.link in os.supports_follow_symlinks and _proc_fd() is not None)


def write_unnamed(path: str, chunks: Iterable[BytesLike], fsync: bool) -> tuple[int, os.stat_result, str] | None:
    """An unnamed file in the directory of ``path`` (made when missing) holding
    ``chunks``: (its open fd, its stat, content ETag). None when the filesystem has no
    unnamed files (then write a temp file). The caller links it with ``link_unnamed`` or
    closes it (which frees it)."""
    directory = os.path.dirname(path)
    try:
        fd = open_in_made_dir(directory, directory, os.O_WRONLY | _O_TMPFILE | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        if exc.errno in NO_TMPFILE:
            return None
        raise
    hasher = xxhash.xxh3_64()
    try:
        st = fill(fd, chunks, fsync=fsync, hasher=hasher)
    except BaseException:
        os.close(fd)
        raise
    return fd, st, f'"{hasher.hexdigest()}"'


def link_unnamed(fd: int, path: str) -> None:
    """Give the unnamed file ``fd`` the name ``path`` in one step; a file that appeared
    at ``path`` meanwhile is replaced (link to a temp name, then rename). The caller
    closes ``fd``."""
    proc = _proc_fd()
    if proc is None:
        raise FileNotFoundError(errno.ENOENT, "/proc is not mounted", path)
    target = path
    for attempt in range(4):
        try:
            os.link(str(fd), target, src_dir_fd=proc, follow_symlinks=True)
            break
        except FileNotFoundError:  # a concurrent delete pruned the (empty) directory
            if attempt >= 2:
                raise
            os.makedirs(os.path.dirname(path), exist_ok=True)
        except FileExistsError:
            if target != path:
                raise
            target = temp_path(path)
    if target != path:
        try:
            os.replace(target, path)
        except BaseException:
            remove_quietly(target)
            raise


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


Listed = tuple[str, int, str, str | None, str | None, float]
"""An object as plain values: (name, size, ETag, digest, other metadata as JSON, mtime)."""


def listed_of(name: str, st: os.stat_result, row: Row | None) -> Listed:
    """The plain values of a file's ObjectInfo, from its index row (None: a file put
    there by hand)."""
    if row is None:
        return (name, st.st_size, stat_etag(st), None, None, st.st_mtime)
    return (name, st.st_size, row[3], row[4], row[5], st.st_mtime)


def info_of_listed(item: Listed) -> ObjectInfo:
    """The ObjectInfo of an object's plain values."""
    name, size, etag, digest, extra, mtime = item
    meta: dict[str, str] = json.loads(extra) if extra else {}
    if digest is not None:
        meta[DIGEST_KEY] = digest
    return ObjectInfo(name, size, etag, meta, mtime)


def info_of(name: str, st: os.stat_result, row: Row | None) -> ObjectInfo:
    """The ObjectInfo of a file, from its index row (None: a file put there by hand)."""
    return info_of_listed(listed_of(name, st, row))


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

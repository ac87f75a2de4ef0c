"""LocalStore: a plain directory used as a remote (the embedded default remote).

Objects are ordinary files at ``root/<name>``, so a person browsing the directory sees
the tree. Bookkeeping lives in ``root/.luisy-store/``:

- ``meta/<name>.json``: the object's metadata (digest) and ETag together with the
  (size, mtime_ns, inode) of the content file it describes. A sidecar whose recorded
  stat does not match the file is ignored, so metadata never describes content that
  is not there (e.g. after someone replaced the file by hand).
- ``blocks/``: staged blocks until their commit (see ``local_blocks``), which consumes
  only its own blocks, so concurrent uploaders of one name coexist.
- ``locks/<hash of name>.lock``: inter-process locks for conditional small writes.

Every write goes to a hidden temp file in the target directory and is renamed into
place. Blocking filesystem calls run in worker threads under a limiter of their own.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, TypeVar

import anyio
import anyio.to_thread
import filelock

from luisy_sync.errors import (ContainerNotFound, NotFoundError, PreconditionFailed,
                               StoreError, TransientError, UnsafePathError)
from luisy_sync.paths import join_under, safe_relpath
from luisy_sync.stores import local_blocks
from luisy_sync.stores.atomic import TEMP_NAME, content_etag, write_atomic
from luisy_sync.stores.base import ObjectInfo
from luisy_sync.stores.local_blocks import hash_name

T = TypeVar("T")

BOOKKEEPING_DIR = ".luisy-store"
_LOCK_TIMEOUT = 60.0
_OBJECT_LOCK_STRIPES = 64


def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ino]


class LocalStore:
    """A Store backed by a directory on the local filesystem.

    ``create``: make the root directory on the first write (and let ``list`` of a
    missing root return nothing); when False a missing root raises ContainerNotFound.
    ``fsync``: flush file contents to disk before renaming them into place.
    """

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True, fsync: bool = False,
                 max_threads: int = 16):
        self.root = os.path.abspath(os.path.expanduser(os.fspath(path)))
        self.url = Path(self.root).as_uri()
        self._create = create
        self._fsync = fsync
        self._max_threads = max_threads
        self._limiters: dict[int, anyio.CapacityLimiter] = {}
        self._book = os.path.join(self.root, BOOKKEEPING_DIR)
        self._blocks = os.path.join(self._book, "blocks")

    def __repr__(self) -> str:
        return f"LocalStore({self.root!r})"

    # -- plumbing --------------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking function in a worker thread under this store's limiter."""
        loop = id(asyncio.get_running_loop())
        limiter = self._limiters.get(loop)
        if limiter is None:
            limiter = self._limiters[loop] = anyio.CapacityLimiter(self._max_threads)
        return await anyio.to_thread.run_sync(fn, *args, limiter=limiter)

    def _path(self, name: str) -> str:
        """The content path of a valid, non-reserved object name."""
        safe_relpath(name)
        parts = name.split("/")
        if parts[0] == BOOKKEEPING_DIR:
            raise UnsafePathError(f"refusing object name {name!r}: {BOOKKEEPING_DIR}/ is reserved")
        if TEMP_NAME.match(parts[-1]):
            raise UnsafePathError(f"refusing object name {name!r}: it looks like a temp file")
        return join_under(self.root, name)

    def _meta_path(self, name: str) -> str:
        return os.path.join(self._book, "meta", *name.split("/")) + ".json"

    def _root_missing(self) -> bool:
        if os.path.isdir(self.root):
            return False
        if self._create:
            return True
        raise ContainerNotFound(f"local store {self.root} does not exist: create it or use create=True")

    def _oserror(self, op: str, name: str, exc: OSError) -> StoreError:
        where = f"{op} {name!r} in local store {self.root}"
        if isinstance(exc, (NotADirectoryError, FileExistsError, IsADirectoryError)):
            return StoreError(f"{where}: a file and a directory with the same name conflict; "
                              "rename one of them")
        if isinstance(exc, PermissionError):
            return StoreError(f"{where}: permission denied; check the directory permissions")
        return StoreError(f"{where} failed: {exc.strerror or exc}")

    def _write_object(self, name: str, chunks: Iterator[bytes] | list[bytes],
                      metadata: Mapping[str, str] | None) -> ObjectInfo:
        """Write content and its sidecar; returns the new ObjectInfo."""
        path = self._path(name)
        self._root_missing()
        meta = dict(metadata or {})
        info: list[ObjectInfo] = []
        # Sidecar write + rename under a (striped) lock: concurrent writers of one name
        # must not leave one writer's content with the other's sidecar.
        lock_dir = os.path.join(self._book, "locks")
        os.makedirs(lock_dir, exist_ok=True)
        stripe = int(hash_name(name)[:8], 16) % _OBJECT_LOCK_STRIPES
        lock = filelock.FileLock(os.path.join(lock_dir, f"objects-{stripe:02d}.lock"))

        def record(st: os.stat_result, etag: str) -> None:
            try:
                lock.acquire(timeout=_LOCK_TIMEOUT)
            except filelock.Timeout:
                raise TransientError(f"timed out waiting for the lock on {name!r} in local store "
                                     f"{self.root}; another process holds it") from None
            doc = {"stat": _stat_key(st), "etag": etag, "metadata": meta}
            side = self._meta_path(name)
            write_atomic(side, [json.dumps(doc).encode("utf-8")], fsync=self._fsync)
            info.append(ObjectInfo(name, st.st_size, etag, meta))

        try:
            write_atomic(path, chunks, fsync=self._fsync, before_replace=record)
        finally:
            if lock.is_locked:
                lock.release()
        return info[0]

    def _read_meta(self, name: str, st: os.stat_result) -> tuple[str, dict[str, str]]:
        """(etag, metadata) from the sidecar if it describes this exact file."""
        try:
            with open(self._meta_path(name), "rb") as fh:
                doc = json.loads(fh.read())
            if doc["stat"] == _stat_key(st):
                return str(doc["etag"]), dict(doc["metadata"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return f'"s{st.st_size:x}-{st.st_mtime_ns:x}-{st.st_ino:x}"', {}

    def _stat_object(self, name: str) -> tuple[str, os.stat_result]:
        path = self._path(name)
        if self._root_missing():
            raise NotFoundError(f"{name!r} not found in local store {self.root}", status=404)
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            st = None
        if st is None or not os.path.isfile(path):
            raise NotFoundError(f"{name!r} not found in local store {self.root}", status=404)
        return path, st

    def _prune_dirs(self, path: str, stop: str) -> None:
        """Remove empty parent directories of ``path`` up to (excluding) ``stop``."""
        directory = os.path.dirname(path)
        while len(directory) > len(stop) and directory.startswith(stop):
            try:
                os.rmdir(directory)
            except OSError:
                return
            directory = os.path.dirname(directory)

    # -- sync implementations (run in threads) --------------------------------------

    def _list(self, prefix: str) -> list[ObjectInfo]:
        if self._root_missing():
            return []
        base = prefix.rpartition("/")[0]
        start = join_under(self.root, base) if base else self.root
        out: list[ObjectInfo] = []
        stack = [(start, base + "/" if base else "")]
        while stack:
            directory, rel = stack.pop()
            try:
                entries = list(os.scandir(directory))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for entry in entries:
                name = rel + entry.name
                if not rel and entry.name == BOOKKEEPING_DIR:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    if name.startswith(prefix) or prefix.startswith(name + "/"):
                        stack.append((entry.path, name + "/"))
                    continue
                if (not name.startswith(prefix) or not entry.is_file(follow_symlinks=False)
                        or TEMP_NAME.match(entry.name)):
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                etag, meta = self._read_meta(name, st)
                out.append(ObjectInfo(name, st.st_size, etag, meta))
        out.sort(key=lambda i: i.name)
        return out

    def _head(self, name: str) -> ObjectInfo:
        _, st = self._stat_object(name)
        etag, meta = self._read_meta(name, st)
        return ObjectInfo(name, st.st_size, etag, meta)

    def _get_range(self, name: str, start: int, length: int | None) -> bytes:
        if start < 0 or (length is not None and length < 0):
            raise StoreError(f"invalid range start={start} length={length} for {name!r}")
        path, _ = self._stat_object(name)
        try:
            with open(path, "rb") as fh:
                fh.seek(start)
                return fh.read() if length is None else fh.read(length)
        except FileNotFoundError:
            raise NotFoundError(f"{name!r} not found in local store {self.root}", status=404) from None

    def _put_block(self, name: str, block_id: str, data: bytes) -> None:
        self._path(name)
        self._root_missing()
        local_blocks.stage(self._blocks, name, block_id, data, fsync=self._fsync)

    def _commit(self, name: str, block_ids: list[str], metadata: Mapping[str, str] | None) -> ObjectInfo:
        self._path(name)
        self._root_missing()
        content = local_blocks.staged_content(self._blocks, name, block_ids)
        info = self._write_object(name, content, metadata)
        local_blocks.consume(self._blocks, name, block_ids)
        return info

    def _delete(self, name: str) -> None:
        path = self._path(name)
        if not os.path.isdir(self.root):
            return
        for target, stop in ((path, self.root), (self._meta_path(name), os.path.join(self._book, "meta"))):
            try:
                os.unlink(target)
            except (FileNotFoundError, NotADirectoryError):
                continue
            except IsADirectoryError:
                return  # a "directory" is not an object
            self._prune_dirs(target, stop)

    def _read_small(self, name: str) -> tuple[bytes, str]:
        data = self._get_range(name, 0, None)
        return data, content_etag(data)

    def _write_small(self, name: str, data: bytes, if_match: str | None, if_none_match: bool) -> str:
        self._path(name)
        self._root_missing()
        lock_dir = os.path.join(self._book, "locks")
        os.makedirs(lock_dir, exist_ok=True)
        lock = filelock.FileLock(os.path.join(lock_dir, hash_name(name) + ".lock"))
        try:
            with lock.acquire(timeout=_LOCK_TIMEOUT):
                current: str | None
                try:
                    current = self._read_small(name)[1]
                except NotFoundError:
                    current = None
                if if_none_match and current is not None:
                    raise PreconditionFailed(f"{name!r} already exists in local store {self.root}",
                                             status=412)
                if if_match is not None and current != if_match:
                    raise PreconditionFailed(f"{name!r} changed since it was read "
                                             f"(local store {self.root})", status=412)
                etag = self._write_object(name, [data], None).etag
                assert etag is not None
                return etag
        except filelock.Timeout:
            raise TransientError(f"timed out waiting for the lock on {name!r} in local store "
                                 f"{self.root}; another process holds it") from None

    def _ensure(self, create: bool) -> None:
        if not os.path.isdir(self.root):
            if os.path.exists(self.root):
                raise ContainerNotFound(f"local store {self.root} is not a directory: choose another path")
            if not create:
                raise ContainerNotFound(f"local store {self.root} does not exist: create it or use create=True")
            os.makedirs(self.root, exist_ok=True)
        local_blocks.drop_stale(self._blocks)

    async def _call(self, op: str, name: str, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await self._run(fn, *args)
        except OSError as exc:
            raise self._oserror(op, name, exc) from None

    # -- Store protocol --------------------------------------------------------------

    async def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Every object whose name starts with ``prefix``, sorted by name."""
        return await self._call("list", prefix, self._list, prefix)

    async def head(self, name: str) -> ObjectInfo:
        """Info for one object; raises NotFoundError."""
        return await self._call("head", name, self._head, name)

    async def get_range(self, name: str, start: int = 0, length: int | None = None) -> bytes:
        """Up to ``length`` bytes from ``start`` (to the end when None)."""
        return await self._call("read", name, self._get_range, name, start, length)

    async def put(self, name: str, data: bytes, *,
                  metadata: Mapping[str, str] | None = None) -> ObjectInfo:
        """Write a whole object atomically (overwrite)."""
        return await self._call("write", name, self._write_object, name, [bytes(data)], metadata)

    async def put_block(self, name: str, block_id: str, data: bytes) -> None:
        """Stage one block under the bookkeeping directory."""
        await self._call("stage a block of", name, self._put_block, name, block_id, bytes(data))

    async def commit_blocks(self, name: str, block_ids: list[str], *,
                            metadata: Mapping[str, str] | None = None) -> ObjectInfo:
        """Concatenate staged blocks into the object (streaming), then drop the staging."""
        return await self._call("commit", name, self._commit, name, list(block_ids), metadata)

    async def delete(self, name: str) -> None:
        """Remove an object and its metadata; missing is fine."""
        await self._call("delete", name, self._delete, name)

    async def read_small(self, name: str) -> tuple[bytes, str]:
        """Bytes and content-based ETag of an object."""
        return await self._call("read", name, self._read_small, name)

    async def write_small(self, name: str, data: bytes, *, if_match: str | None = None,
                          if_none_match: bool = False) -> str:
        """Conditional write, safe across processes (file lock around compare-and-replace)."""
        return await self._call("write", name, self._write_small, name, bytes(data),
                                if_match, if_none_match)

    async def ensure_container(self, create: bool = True) -> None:
        """Create the root directory, or raise ContainerNotFound when it is missing."""
        await self._call("open", "", self._ensure, create)

    async def close(self) -> None:
        """Nothing to release."""

    async def __aenter__(self) -> "LocalStore":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

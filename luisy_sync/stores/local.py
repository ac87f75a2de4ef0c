"""LocalStore: a plain directory used as a remote (the embedded default remote).

Objects are ordinary files at ``root/<name>``, so a person browsing the directory sees
the tree. Bookkeeping lives in ``root/.luisy-store/``:

- ``index.db``: one sqlite database (see ``local_index``) with every object's metadata (digest) and ETag,
  keyed to the stat of the content file it describes (see ``local_index``): no
  sidecar file per object, no lock files.
- ``blocks/``: staged blocks until their commit (see ``local_blocks``), which consumes
  only its own blocks, so concurrent uploaders of one name coexist.

Every write goes to a file of its own (a hidden temp file in the target directory, or
for a name that holds no file yet an unnamed file there); its index row is committed
before the rename (or link) puts it into place (``local_writes``, the write side of
this class). A ``copy`` is a hard link to the source's file (a plain file copy where
links are impossible), published the same way; since writes replace files by rename, a
later write of either name never changes the other (a file edited in place by hand
changes both names, which then read as files put there by hand). An object's
``modified`` is its file's mtime, so a linked copy reports when its content was
written, not when it was copied. Symlinks inside the root are refused on every
path: reads, writes, copies, listings and deletes (see ``local_paths``). Blocking
filesystem calls run in worker threads under a limiter of their own; ``put_many`` /
``get_many`` move many small objects per thread call.
"""

from __future__ import annotations

import asyncio
import builtins
import os
import stat as stat_mod
from functools import partial
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TypeVar

import anyio
import anyio.to_thread

from luisy_sync.conventions import STORE_DIR
from luisy_sync.errors import (ContainerNotFound, NotFoundError, PreconditionFailed,
                               StoreError)
import luisy_sync.stores.local_blocks as local_blocks
from luisy_sync.stores.base import BytesLike, GetResult, ObjectInfo, PutMode, check_range
from luisy_sync.stores.local_files import etag_of, info_of, tmpfile_supported
from luisy_sync.stores.local_index import Change, Lookup, ObjectIndex
from luisy_sync.stores.local_listing import list_large_in_helper, list_objects
from luisy_sync.stores.local_paths import link_error, lstat_object, object_path
from luisy_sync.stores.local_writes import LocalWrites, PutItem

T = TypeVar("T")

_O_READ = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)


class LocalStore(LocalWrites):
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
        self._book = os.path.join(self.root, STORE_DIR)
        self._blocks = os.path.join(self._book, "blocks")
        self._index = ObjectIndex(self._book, fsync=fsync)
        self._unnamed = tmpfile_supported()

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

    def _root_missing(self) -> bool:
        if os.path.isdir(self.root):
            return False
        if self._create:
            return True
        raise ContainerNotFound(f"local store {self.root} does not exist: create it or use create=True")

    def _not_found(self, name: str) -> NotFoundError:
        return NotFoundError(f"{name!r} not found in local store {self.root}", status=404)

    def _oserror(self, op: str, name: str, exc: OSError) -> StoreError:
        where = f"{op} {name!r} in local store {self.root}"
        if isinstance(exc, (NotADirectoryError, FileExistsError, IsADirectoryError)):
            return StoreError(f"{where}: a file and a directory with the same name conflict; "
                              "rename one of them")
        if isinstance(exc, PermissionError):
            return StoreError(f"{where}: permission denied; check the directory permissions")
        return StoreError(f"{where} failed: {exc.strerror or exc}")

    # -- sync implementations (run in threads) --------------------------------------

    def _list(self, prefix: str) -> list[ObjectInfo]:
        if self._root_missing():
            return []
        return list_objects(self.root, self._index, prefix)

    def _head(self, name: str) -> ObjectInfo:
        path = object_path(self.root, name)
        st = None if self._root_missing() else lstat_object(self.root, name, path)
        if st is None or not stat_mod.S_ISREG(st.st_mode):
            raise self._not_found(name)
        return info_of(name, st, self._index.get(name, st))

    def _open(self, name: str) -> int:
        path = object_path(self.root, name)
        if self._root_missing():
            raise self._not_found(name)
        try:
            fd = os.open(path, _O_READ)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise self._not_found(name) from None
        except OSError:
            if os.path.islink(path):
                raise link_error(self.root, name, path) from None
            raise
        if not stat_mod.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise self._not_found(name)
        return fd

    def _read(self, name: str, start: int, length: int | None) -> tuple[bytes, os.stat_result]:
        """Bytes of an object's file and the stat of the file they came from."""
        check_range(name, start, length)
        fd = self._open(name)
        try:
            st = os.fstat(fd)
            if length is None:
                length = max(0, st.st_size - start)
            return os.pread(fd, length, start), st
        finally:
            os.close(fd)

    def _get(self, name: str, start: int, length: int | None) -> GetResult:
        data, st = self._read(name, start, length)
        return GetResult(data, etag_of(st, self._index.get(name, st)))

    def _get_many(self, names: Sequence[str]) -> builtins.list[GetResult | Exception]:
        read: list[tuple[bytes, os.stat_result] | Exception] = []
        for name in names:
            try:
                read.append(self._read(name, 0, None))
            except OSError as exc:
                read.append(self._oserror("read", name, exc))
            except Exception as exc:  # not found, unsafe
                read.append(exc)
        found = [(name, got[1]) for name, got in zip(names, read) if not isinstance(got, Exception)]
        rows = iter(self._index.get_many(found))
        return [got if isinstance(got, Exception) else GetResult(got[0], etag_of(got[1], next(rows)))
                for name, got in zip(names, read)]

    def _put_block(self, name: str, block_id: str, data: bytes) -> None:
        object_path(self.root, name)
        self._root_missing()
        local_blocks.stage(self._blocks, name, block_id, data, fsync=self._fsync)

    def _commit(self, name: str, block_ids: Sequence[str], metadata: Mapping[str, str] | None) -> ObjectInfo:
        object_path(self.root, name)
        self._root_missing()
        content = local_blocks.staged_content(self._blocks, name, block_ids)
        info = self._write_one(name, content, metadata, "commit")
        local_blocks.consume(self._blocks, name, block_ids)
        return info

    def _delete(self, name: str, etag: str | None = None) -> None:
        path = object_path(self.root, name)
        if not os.path.isdir(self.root):
            return
        st = lstat_object(self.root, name, path)
        if st is None or stat_mod.S_ISDIR(st.st_mode):
            return  # missing, or a "directory", which is not an object
        if etag is None:
            if not self._unlink(path):
                return
            change = Change(name, drop=st.st_ino)
            self._index.apply([change])
            if change.error is not None:
                raise change.error
        elif not self._index.exclusive(partial(self._delete_version, name, path, etag)):
            return
        directory = os.path.dirname(path)
        while len(directory) > len(self.root):  # prune emptied parents
            try:
                os.rmdir(directory)
            except OSError:
                break
            directory = os.path.dirname(directory)

    def _delete_version(self, name: str, path: str, etag: str, lookup: Lookup,
                        record: Callable[[Change], None]) -> bool:
        """Inside an index transaction: remove ``name`` if it is version ``etag``."""
        current = lstat_object(self.root, name, path)
        if current is None or stat_mod.S_ISDIR(current.st_mode):
            return False
        if info_of(name, current, lookup(name, current)).etag != etag:
            raise PreconditionFailed(f"{name!r} changed since it was read (local store {self.root})",
                                     status=412)
        record(Change(name, drop=current.st_ino))
        return self._unlink(path)

    @staticmethod
    def _unlink(path: str) -> bool:
        try:
            os.unlink(path)
        except FileNotFoundError:
            return False
        return True

    def _ensure(self, create: bool) -> None:
        if not os.path.isdir(self.root):
            if create:
                try:
                    os.makedirs(self.root, exist_ok=True)  # a concurrent creator is fine
                except FileExistsError:
                    pass  # a file is in the way: said below
            if not os.path.isdir(self.root):  # looked at again: another writer may have made it meanwhile
                if os.path.exists(self.root):
                    raise ContainerNotFound(f"local store {self.root} is not a directory: choose another path")
                raise ContainerNotFound(f"local store {self.root} does not exist: create it or use create=True")
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

    async def list_apart(self, prefix: str = "") -> builtins.list[ObjectInfo] | None:
        """``list(prefix)`` computed in a helper process, for a caller with CPU work of its
        own to do meanwhile (``local_listing``); None when the store holds too few objects
        below ``prefix`` for that to pay, or the helper failed: then call ``list``."""
        return await self._run(list_large_in_helper, self.root, self._index, prefix)

    async def head(self, name: str) -> ObjectInfo:
        """Info for one object; raises NotFoundError."""
        return await self._call("head", name, self._head, name)

    async def get(self, name: str, start: int = 0, length: int | None = None) -> GetResult:
        """Up to ``length`` bytes from ``start`` (to the end when None), with the ETag
        ``head`` and ``list`` report for that file."""
        return await self._call("read", name, self._get, name, start, length)

    async def get_many(self, names: Sequence[str]) -> builtins.list[GetResult | Exception]:
        """Whole contents of many (small) objects in one thread call; per-name errors."""
        return await self._call("read", names[0] if names else "", self._get_many, list(names))

    async def put(self, name: str, data: BytesLike, *, metadata: Mapping[str, str] | None = None,
                  mode: PutMode = PutMode.OVERWRITE) -> ObjectInfo:
        """Write a whole object atomically; a conditional ``mode`` is checked atomically
        across processes (inside the index transaction)."""
        if mode.kind == "overwrite":
            return await self._call("write", name, self._write_one, name, [data], metadata)
        return await self._call("write", name, self._write_if, name, bytes(data), metadata, mode)

    async def put_many(self, items: Sequence[PutItem]) -> builtins.list[ObjectInfo | Exception]:
        """Write many whole objects in one thread call (``(name, data, metadata[, mode])``
        each, like ``put``); overwrites share one index commit; per-item errors."""
        return await self._call("write", items[0][0] if items else "", self._put_many, list(items))

    async def put_block(self, name: str, block_id: str, data: BytesLike) -> None:
        """Stage one block under the bookkeeping directory."""
        await self._call("stage a block of", name, self._put_block, name, block_id, data)

    async def commit_blocks(self, name: str, block_ids: Sequence[str], *,
                            metadata: Mapping[str, str] | None = None) -> ObjectInfo:
        """Concatenate staged blocks into the object (streaming), then drop the staging."""
        return await self._call("commit", name, self._commit, name, list(block_ids), metadata)

    async def copy(self, src: str, dst: str) -> ObjectInfo:
        """Hard-link ``src``'s file to ``dst`` (a file copy where links are impossible),
        recorded in the index like a write, with ``src``'s metadata and ETag."""
        return await self._call(f"copy {src!r} to", dst, self._copy, src, dst)

    async def delete(self, name: str, *, etag: str | None = None) -> None:
        """Remove an object and its index row (with ``etag``: only that version, checked
        and removed inside one index transaction); missing is fine."""
        await self._call("delete", name, self._delete, name, etag)

    async def ensure_container(self, create: bool = True) -> None:
        """Create the root directory, or raise ContainerNotFound when it is missing."""
        await self._call("open", "", self._ensure, create)

    async def close(self) -> None:
        """Close the index connections of this process."""
        self._index.close()

    async def __aenter__(self) -> "LocalStore":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

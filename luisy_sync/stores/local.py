"""LocalStore: a plain directory used as a remote (the embedded default remote).

Objects are ordinary files at ``root/<name>``, so a person browsing the directory sees
the tree. Bookkeeping lives in ``root/.luisy-store/``:

- ``index.db``: one sqlite database (see ``local_index``) with every object's metadata (digest) and ETag,
  keyed to the stat of the content file it describes (see ``local_index``): no
  sidecar file per object, no lock files.
- ``blocks/``: staged blocks until their commit (see ``local_blocks``), which consumes
  only its own blocks, so concurrent uploaders of one name coexist.

Every write goes to a hidden temp file in the target directory (for a name that holds
no file yet, an unnamed file there, see ``local_files``); its index row is committed
(one transaction for all writes that are ready at the same moment) before the rename
(or link) puts it into place. A ``copy`` is a hard link to the source's file (a plain
file copy where links are impossible), published the same way; since writes replace
files by rename, a later write of either name never changes the other (a file edited
in place by hand changes both names, which then read as files put there by hand). An
object's ``modified`` is its file's mtime, so a linked copy reports when its content
was written, not when it was copied. Symlinks inside the root are refused on every
path: reads, writes, copies, listings and deletes (see ``local_paths``). Blocking
filesystem calls run in worker threads under a limiter of their own; ``put_many`` /
``get_many`` move many small objects per thread call.
"""

from __future__ import annotations

import asyncio
import builtins
import os
import stat as stat_mod
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence, TypeVar

import anyio
import anyio.to_thread

from luisy_sync.atomic import publish, remove_quietly
from luisy_sync.conventions import STORE_DIR
from luisy_sync.errors import (ContainerNotFound, NotFoundError, PreconditionFailed,
                               StoreError, TransientError)
import luisy_sync.stores.local_blocks as local_blocks
from luisy_sync.stores.base import DIGEST_KEY, BytesLike, GetResult, ObjectInfo, PutMode, check_range
from luisy_sync.stores.local_files import (NO_HARD_LINK, clone_file, etag_of, info_of, link_unnamed,
                                           same_file, stat_etag, tmpfile_supported, write_content,
                                           write_unnamed)
from luisy_sync.stores.local_index import STALE_ROW_NS, Change, Lookup, ObjectIndex, row_for
from luisy_sync.stores.local_paths import link_error, lstat_object, object_path, walk

T = TypeVar("T")

PutItem = (tuple[str, BytesLike, Mapping[str, str] | None]
           | tuple[str, BytesLike, Mapping[str, str] | None, PutMode])
"""One item of ``put_many``: ``(name, data, metadata)``, optionally with a PutMode."""

_O_READ = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
_OPEN_FILES = 256
"""Most unnamed files one thread holds open while their index rows are committed."""


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

    # -- writes ----------------------------------------------------------------------

    def _current(self, name: str, path: str) -> os.stat_result | None:
        """The stat of the file a write will replace (None: none); refuses a directory."""
        st = lstat_object(self.root, name, path)
        if st is not None and stat_mod.S_ISDIR(st.st_mode):
            raise IsADirectoryError(path)
        return st

    def _write_many(self, items: Sequence[tuple[str, Iterable[BytesLike], Mapping[str, str] | None]],
                    op: str = "write") -> builtins.list[ObjectInfo | Exception]:
        """Write objects: their content files (unnamed, or temp files), one index commit
        for all their rows, then their publication (link or rename) into place."""
        out: list[ObjectInfo | Exception] = []
        for start in range(0, len(items), _OPEN_FILES):  # bounds the unnamed files held open
            out += self._write_chunk(items[start:start + _OPEN_FILES], op)
        return out

    def _write_chunk(self, items: Sequence[tuple[str, Iterable[BytesLike], Mapping[str, str] | None]],
                     op: str) -> builtins.list[ObjectInfo | Exception]:
        out: list[ObjectInfo | Exception] = []
        ready: list[tuple[int, Change, str | int, str]] = []  # temp path or unnamed fd
        checked: set[str] = set()
        root_checked = False
        published = 0
        content: str | int  # a temp file's path, or an unnamed file's fd
        try:
            for name, chunks, metadata in items:
                try:
                    path = object_path(self.root, name, checked)
                    if not root_checked:
                        self._root_missing()
                        root_checked = True
                    current = self._current(name, path)
                    unnamed = None
                    if current is None and self._unnamed:  # a new name: no temp name needed
                        unnamed = write_unnamed(path, chunks, self._fsync)
                        if unnamed is None:
                            self._unnamed = False
                    if unnamed is not None:
                        content, st, etag = unnamed
                    else:
                        content, st, etag = write_content(path, chunks, self._fsync)
                except OSError as exc:
                    out.append(self._oserror(op, name, exc))
                    continue
                except Exception as exc:  # unsafe name, missing root, a staged block gone
                    out.append(exc)
                    continue
                extra = dict(metadata or {})
                digest = extra.pop(DIGEST_KEY, None)
                change = Change(name, row=row_for(st, etag, digest, extra),
                                keep=None if current is None else current.st_ino)
                ready.append((len(out), change, content, path))
                out.append(ObjectInfo(name, st.st_size, etag, dict(metadata or {}), st.st_mtime))
            self._index.apply([c for _, c, _, _ in ready])
            for position, change, content, path in ready:
                published += 1
                try:
                    if change.error is not None:
                        raise change.error
                    if isinstance(content, int):
                        self._link(content, path, change.name)
                    else:
                        os.replace(content, path)
                except BaseException as exc:
                    if not isinstance(content, int):
                        remove_quietly(content)
                    if not isinstance(exc, Exception):
                        raise
                    out[position] = self._oserror(op, change.name, exc) if isinstance(exc, OSError) else exc
                finally:
                    if isinstance(content, int):
                        os.close(content)
        finally:
            for _, _, content, _ in ready[published:]:  # interrupted: free what was not published
                if isinstance(content, int):
                    os.close(content)
                else:
                    remove_quietly(content)
        return out

    def _link(self, fd: int, path: str, name: str) -> None:
        """Name an unnamed file; where links fail, later writes use temp names (this one
        is retried)."""
        try:
            link_unnamed(fd, path)
        except OSError as exc:
            if exc.errno not in NO_HARD_LINK:
                raise
            self._unnamed = False
            raise TransientError(f"write {name!r} in local store {self.root}: the file could not be "
                                 f"linked into place ({exc.strerror or exc}); retry") from None

    def _write_one(self, name: str, chunks: Iterable[BytesLike], metadata: Mapping[str, str] | None,
                   op: str = "write") -> ObjectInfo:
        [result] = self._write_many([(name, chunks, metadata)], op)
        if isinstance(result, Exception):
            raise result
        return result

    # -- sync implementations (run in threads) --------------------------------------

    def _list(self, prefix: str) -> list[ObjectInfo]:
        if self._root_missing():
            return []
        found = walk(self.root, prefix)
        base = prefix.rpartition("/")[0]
        rows = self._index.rows(base + "/" if base else "")
        lookup = self._index.lookup
        out = [info_of(name, st, lookup(rows, name, st)) for name, st in found]
        out.sort(key=lambda i: i.name)
        return out

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

    def _copy(self, src: str, dst: str) -> ObjectInfo:
        """Link (or copy) ``src``'s file to a temp name beside ``dst``, commit its index row
        (the source's metadata and ETag), then rename it into place: like a write."""
        src_path = object_path(self.root, src)
        path = object_path(self.root, dst)
        if self._root_missing():
            raise self._not_found(src)
        if src == dst:
            return self._head(src)
        for _ in range(3):  # the source replaced between its stat and the link: again
            st_src = lstat_object(self.root, src, src_path)
            if st_src is None or not stat_mod.S_ISREG(st_src.st_mode):
                raise self._not_found(src)
            src_row = self._index.get(src, st_src)
            current = self._current(dst, path)
            try:
                tmp, linked = clone_file(src_path, path, self._fsync)
            except FileNotFoundError:
                if not os.path.lexists(src_path):
                    raise self._not_found(src) from None
                raise
            st = os.lstat(tmp)
            if linked:
                unchanged = same_file(st, st_src)
            else:
                after = lstat_object(self.root, src, src_path)
                unchanged = stat_mod.S_ISREG(st.st_mode) and after is not None and same_file(after, st_src)
            if unchanged:
                break
            remove_quietly(tmp)
        else:
            raise TransientError(f"copy {src!r} to {dst!r} in local store {self.root}: the source "
                                 "kept changing; the copy can be retried")
        source = info_of(src, st_src, src_row)
        # the source's ETag names its content (a link is the very file; a file copy has the
        # content of a row's file); a file put there by hand gets the stat ETag of the copy
        etag = source.etag if linked or src_row is not None else stat_etag(st)
        assert etag is not None
        extra = dict(source.metadata)
        digest = extra.pop(DIGEST_KEY, None)
        row = row_for(st, etag, digest, extra)
        change = Change(dst, row=row, keep=None if current is None else current.st_ino)
        self._index.apply([change])
        if change.error is not None:
            remove_quietly(tmp)
            raise change.error
        publish(tmp, path)
        remove_quietly(tmp)  # a rename onto another link of the same file leaves its source
        if st.st_mtime_ns < time.time_ns() - STALE_ROW_NS // 2 and self._index.get(dst, st) is None:
            # a link keeps the source's mtime, so its row may look stale to a concurrent
            # write of dst (which prunes such rows): record it again if dst is still ours
            now = lstat_object(self.root, dst, path)
            if now is not None and same_file(now, st):
                self._index.apply([Change(dst, row=row, keep=st.st_ino)])
        return ObjectInfo(dst, st.st_size, etag, dict(source.metadata), st.st_mtime)

    def _write_if(self, name: str, data: bytes, metadata: Mapping[str, str] | None,
                  mode: PutMode) -> ObjectInfo:
        """A conditional write: the ETag check and the rename happen inside one index
        transaction, so a compare-and-replace is atomic across processes."""
        path = object_path(self.root, name)
        self._root_missing()
        self._current(name, path)
        tmp, st, etag = write_content(path, [data], self._fsync)
        extra = dict(metadata or {})
        digest = extra.pop(DIGEST_KEY, None)

        def compare_and_replace(lookup: Lookup, record: Callable[[Change], None]) -> None:
            current = self._current(name, path)
            found = None if current is None else info_of(name, current, lookup(name, current)).etag
            if mode.kind == "create" and found is not None:
                raise PreconditionFailed(f"{name!r} already exists in local store {self.root}", status=412)
            if mode.kind == "update" and found != mode.etag:
                raise PreconditionFailed(f"{name!r} changed since it was read (local store {self.root})",
                                         status=412)
            record(Change(name, row=row_for(st, etag, digest, extra),
                          keep=None if current is None else current.st_ino))
            os.replace(tmp, path)

        try:
            self._index.exclusive(compare_and_replace)
        except BaseException:
            remove_quietly(tmp)
            raise
        return ObjectInfo(name, st.st_size, etag, dict(metadata or {}), st.st_mtime)

    def _put_many(self, items: Sequence[PutItem]) -> builtins.list[ObjectInfo | Exception]:
        """Overwrites share one index commit; conditional writes go one by one."""
        out: list[ObjectInfo | Exception] = []
        plain: list[tuple[int, tuple[str, Iterable[BytesLike], Mapping[str, str] | None]]] = []
        for item in items:
            name, data, metadata = item[0], item[1], item[2]
            mode = item[3] if len(item) > 3 else PutMode.OVERWRITE
            if mode.kind == "overwrite":
                plain.append((len(out), (name, [data], metadata)))
                out.append(ObjectInfo(name, 0))  # replaced below
                continue
            try:
                out.append(self._write_if(name, bytes(data), metadata, mode))
            except OSError as exc:
                out.append(self._oserror("write", name, exc))
            except Exception as exc:  # unsafe name, missing root, condition failed
                out.append(exc)
        for (i, _), result in zip(plain, self._write_many([batch for _, batch in plain])):
            out[i] = result
        return out

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

"""The write side of ``LocalStore``: how an object gets into place.

Every write puts its content into a file of its own first (an unnamed file for a name
that holds no file yet, else a hidden temp file beside the name, see ``local_files``),
commits the object's index row (one transaction for all the writes that are ready at
the same moment), and only then publishes the file by a link or a rename: no object is
ever visible without its row, even after a crash. A conditional write compares the ETag
and replaces inside one index transaction, so it is atomic across processes;
``put_many`` gives its overwrites one index commit; a copy links (or clones) the
source's file and is published like a write.

``LocalWrites`` is a mixin of ``LocalStore`` (``luisy_sync.stores.local``), which holds
the root, the index and the checks these methods use.
"""

from __future__ import annotations

import builtins
import os
import stat as stat_mod
import time
from typing import TYPE_CHECKING, Callable, Iterable, Mapping, Sequence

from luisy_sync.atomic import publish, remove_quietly
from luisy_sync.errors import PreconditionFailed, TransientError
from luisy_sync.stores.base import DIGEST_KEY, BytesLike, ObjectInfo, PutMode
from luisy_sync.stores.local_files import (NO_HARD_LINK, clone_file, info_of, link_unnamed, same_file,
                                           stat_etag, write_content, write_unnamed)
from luisy_sync.stores.local_index import STALE_ROW_NS, Change, Lookup, ObjectIndex, row_for
from luisy_sync.stores.local_paths import lstat_object, object_path

if TYPE_CHECKING:
    from luisy_sync.errors import NotFoundError, StoreError

__all__ = ["LocalWrites", "PutItem"]

PutItem = (tuple[str, BytesLike, Mapping[str, str] | None]
           | tuple[str, BytesLike, Mapping[str, str] | None, PutMode])
"""One item of ``put_many``: ``(name, data, metadata)``, optionally with a PutMode."""

_OPEN_FILES = 256
"""Most unnamed files one thread holds open while their index rows are committed."""


class LocalWrites:
    """Writes, conditional writes and copies of a ``LocalStore`` (run in worker threads)."""

    root: str
    _fsync: bool
    _unnamed: bool
    _index: ObjectIndex

    if TYPE_CHECKING:  # provided by LocalStore
        def _root_missing(self) -> bool: ...

        def _not_found(self, name: str) -> NotFoundError: ...

        def _oserror(self, op: str, name: str, exc: OSError) -> StoreError: ...

        def _head(self, name: str) -> ObjectInfo: ...

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

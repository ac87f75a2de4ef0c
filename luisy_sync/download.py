"""Downloading one file: into a temp file beside its final name, verified, then renamed.

Small objects come in one ranged GET; large ones in parallel ``block_size`` ranges
written at their offsets and hashed in order as they arrive (no second read of the file). The content must match the expected size and digest before
``os.replace`` gives it its final name. On any failure or cancellation the temp file
(named by ``luisy_sync.conventions``) is removed, so nothing half-written is ever visible.
A replaced file keeps its permission bits.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from functools import partial
from typing import TYPE_CHECKING, Iterable

import anyio

from luisy_sync.atomic import publish, remove_quietly, write_atomic
from luisy_sync.blockio import read_into, write_at
from luisy_sync.conventions import TEMP_NAME, temp_path, writer_alive
from luisy_sync.errors import IntegrityError, NotFoundError, ShortReadError, SyncError
from luisy_sync.hashing import hash_bytes, new_hasher
from luisy_sync.paths import join_under
from luisy_sync.retry import is_retryable
from luisy_sync.stores.base import GetResult, ObjectInfo, Store
from luisy_sync.tree import FileEntry

if TYPE_CHECKING:
    from luisy_sync.transfer import Transfer

WHOLE_FILE_ATTEMPTS = 2
"""Whole-file tries on a digest mismatch (the second read tells corruption in flight from at rest)."""
FOREIGN_TEMP_AGE = 24 * 3600.0
"""Temp files written from another host (whose process cannot be checked) are removed
only when they have not changed for this long."""


def remove_stale_temps(dest: str, paths: Iterable[str], older_than: float) -> int:
    """Remove temp files an interrupted pull left beside the final names of ``paths``.

    A temp file goes when the process writing it is gone; one written on another host
    when it is older than ``FOREIGN_TEMP_AGE``, and one of the old pid-less form when
    its mtime is before ``older_than`` (a wall-clock time). A live pull's temp files are
    never touched. Returns how many were removed.
    """
    wanted: dict[str, set[str]] = {}
    for path in paths:
        directory, base = os.path.split(join_under(dest, path))
        wanted.setdefault(directory, set()).add(base)
    removed = 0
    for directory, bases in wanted.items():
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            match = TEMP_NAME.match(entry.name)
            if match is None or not any(b.startswith(match.group("base")) for b in bases):
                continue
            alive = writer_alive(entry.name)
            if alive:
                continue
            if alive is False:
                cutoff = float("inf")
            elif match.group("pid") is None:
                cutoff = older_than
            else:
                cutoff = older_than - FOREIGN_TEMP_AGE
            with contextlib.suppress(OSError):
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISREG(st.st_mode) and st.st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
    return removed


def _mismatch(path: str, name: str, expected: str, got: str) -> IntegrityError:
    return IntegrityError(f"{path}: stored object {name} does not match its digest "
                          f"(expected {expected}, got {got}); it was not written; "
                          f"push the file again to repair the store")


def _check_size(path: str, name: str, data: bytes, expected: int, ranged: bool) -> bytes:
    if len(data) < expected:
        raise ShortReadError(f"{path}: read {len(data)} of {expected} bytes from {name}")
    if len(data) > expected:
        what = "range" if ranged else "object"
        raise IntegrityError(f"{path}: {what} of {name} is {len(data)} bytes, expected {expected}; "
                             f"it changed since it was listed, pull again")
    return data


def _write_whole(final: str, path: str, name: str, data: bytes, digest: str | None, fsync: bool) -> None:
    if digest is not None:
        got = hash_bytes(data)
        if got != digest:
            raise _mismatch(path, name, digest, got)
    # a new file gets the umask's permission bits, a replaced one keeps its own
    write_atomic(final, [data], fsync=fsync, mode=0o666, keep_mode=True)


def _write_many(dest: str, batch: list[tuple[str, FileEntry, str]], datas: list[bytes | BaseException],
                fsync: bool) -> list[BaseException | None]:
    """Check and write every fetched file of a batch in one thread call (per-file errors)."""
    out: list[BaseException | None] = []
    for (path, entry, name), data in zip(batch, datas):
        if isinstance(data, BaseException):
            out.append(data)
            continue
        try:
            _check_size(path, name, data, entry.size, ranged=False)
            _write_whole(join_under(dest, path), path, name, data, entry.digest, fsync)
        except Exception as exc:
            out.append(exc)
        else:
            out.append(None)
    return out


async def download_batch(transfer: "Transfer", store: Store, dest: str,
                         batch: list[tuple[str, FileEntry, str]]) -> list[BaseException | None]:
    """Download many small objects (``(path, entry, name)``): one ``get_many`` call (stores
    that have it) or one get per object, concurrently, then one thread call checks and
    writes them all. A file whose bytes did not verify, or whose read failed with a
    retryable error, is fetched again on its own (``download_file``). Returns one error
    (or None) per file."""
    datas: list[bytes | BaseException] = [b""] * len(batch)
    async with transfer.budget.hold(sum(entry.size for _, entry, _ in batch)):
        get_many = getattr(store, "get_many", None)
        if get_many is not None:
            async with transfer.limiter:
                datas = [got.data if isinstance(got, GetResult) else got
                         for got in await get_many([name for _, _, name in batch])]
        else:
            async def get_one(i: int) -> None:
                path, _, name = batch[i]
                try:
                    datas[i] = (await transfer.request(path, store.get, name, describe=f"get {name}")).data
                except Exception as exc:
                    datas[i] = exc

            async with anyio.create_task_group() as tg:
                for i in range(len(batch)):
                    tg.start_soon(get_one, i)
        errors = await transfer.in_thread(_write_many, dest, batch, datas, transfer.fsync)
    for i, error in enumerate(errors):
        path, entry, name = batch[i]
        if error is None:
            transfer.tracker.advanced(path, entry.size)
        elif isinstance(error, IntegrityError) or (get_many is not None and is_retryable(error)):
            transfer.tracker.retried(path, 1, str(error).splitlines()[0], restart=True)
            try:
                await download_file(transfer, store, dest, path, entry, name)
                errors[i] = None
            except Exception as exc:
                errors[i] = exc
    return errors


def _open_sized(tmp: str, size: int) -> int:
    os.makedirs(os.path.dirname(tmp), exist_ok=True)
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o644)
    try:
        os.ftruncate(fd, size)
    except BaseException:
        os.close(fd)
        raise
    return fd


async def download_file(transfer: "Transfer", store: Store, dest: str, path: str, entry: FileEntry,
                        name: str) -> None:
    """Download object ``name`` to ``dest/path``, verified against ``entry``."""
    final = join_under(dest, path)
    for attempt in range(1, WHOLE_FILE_ATTEMPTS + 1):
        try:
            if entry.size <= transfer.block_size:
                await _download_small(transfer, store, final, path, entry, name)
            else:
                await _download_ranges(transfer, store, final, path, entry, name)
            return
        except IntegrityError as exc:
            if isinstance(exc, ShortReadError) or attempt == WHOLE_FILE_ATTEMPTS:
                raise await _replaced_meanwhile(transfer, store, path, entry, name) or exc
            transfer.tracker.retried(path, attempt, str(exc).splitlines()[0], restart=True)


async def _replaced_meanwhile(transfer: "Transfer", store: Store, path: str, entry: FileEntry,
                              name: str) -> IntegrityError | None:
    """The error to report when object ``name`` no longer is what was listed (a push
    replaced or deleted it during the download), None when it still claims ``entry`` or
    no digest at all (then the stored content itself is damaged)."""
    async def head() -> ObjectInfo | None:
        try:
            return await store.head(name)
        except NotFoundError:
            return None

    try:
        info = await transfer.request(path, head, describe=f"head {name}")
    except SyncError:
        return None
    if info is not None and (info.digest is None or (info.size, info.digest) == (entry.size, entry.digest)):
        return None  # it still claims what was listed (or nothing): the content is damaged
    what = "deleted" if info is None else "replaced"
    return IntegrityError(f"{path}: {name} was {what} in the store while it was downloaded "
                          f"(another writer changed it); nothing was written, pull again")


async def _download_small(transfer: "Transfer", store: Store, final: str, path: str, entry: FileEntry,
                          name: str) -> None:
    async def get() -> bytes:
        return _check_size(path, name, (await store.get(name)).data, entry.size, ranged=False)

    async with transfer.budget.hold(entry.size):  # the request slot is free while writing
        async with transfer.limiter:
            data = await transfer.retry(path, get, describe=f"get {name}")
        transfer.tracker.advanced(path, len(data))
        await transfer.in_thread(_write_whole, final, path, name, data, entry.digest, transfer.fsync)


class _OrderedHasher:
    """Hashes a file's ranges in offset order as they are written (in worker threads).

    A range that arrives in turn is hashed from memory. One that arrives early is kept
    in memory until its turn while the kept ranges stay within ``keep_limit`` bytes (the
    caller then must not reuse its buffer until ``write`` reports it freed); beyond that
    it is re-read from the file when its turn comes (into one reused buffer). Either way
    the file is never read twice whole.
    """

    def __init__(self, fd: int, keep_limit: int = 0):
        self._fd = fd
        self._hasher = new_hasher()
        self._next = 0
        self._early: dict[int, tuple[int, bytes | None]] = {}  # offset -> (length, the bytes if kept)
        self._kept = 0
        self._keep_limit = keep_limit
        self._lock = threading.Lock()
        self._reread = bytearray()

    def write(self, data: bytes, offset: int) -> tuple[bool, list[int]]:
        """Write ``data`` at ``offset`` and hash what is now contiguous. Returns whether
        ``data`` is kept for later hashing, and the offsets of earlier kept ranges that
        were hashed now (their buffers are free again)."""
        write_at(self._fd, data, offset)
        freed: list[int] = []
        with self._lock:
            if offset != self._next:
                keep = self._kept + len(data) <= self._keep_limit
                self._early[offset] = (len(data), data if keep else None)
                self._kept += len(data) if keep else 0
                return keep, freed
            self._hasher.update(data)
            self._next += len(data)
            while self._next in self._early:
                length, kept = self._early.pop(self._next)
                if kept is not None:
                    self._hasher.update(kept)
                    self._kept -= length
                    freed.append(self._next)
                else:
                    self._hash_from_file(length)
                self._next += length
        return False, freed

    def _hash_from_file(self, length: int) -> None:
        if len(self._reread) < length:
            self._reread = bytearray(length)
        view = memoryview(self._reread)[:length]
        if read_into(self._fd, view, self._next) != length:
            raise ShortReadError(f"re-reading {length} bytes at {self._next} of a download: "
                                 "the temp file is shorter than what was written")
        self._hasher.update(view)

    def hexdigest(self, size: int) -> str:
        """The digest of the first ``size`` bytes (all ranges must have been written)."""
        if self._next != size:
            raise RuntimeError(f"hashed {self._next} of {size} bytes: a range was not written")
        return self._hasher.hexdigest()


async def _download_ranges(transfer: "Transfer", store: Store, final: str, path: str, entry: FileEntry,
                           name: str) -> None:
    block = transfer.block_size_for(entry.size)
    tmp = temp_path(final)
    fd: int | None = None
    budget = transfer.budget

    get_into = getattr(store, "get_into", None)
    parked: dict[int, tuple[int, bytearray | None]] = {}  # early ranges kept for the hasher
    freed_early: set[int] = set()  # hashed before their own fetch could park them

    def release(held: int, buf: bytearray | None) -> None:
        budget.release(held)
        if buf is not None:
            transfer.buffers.give(buf)

    async def fetch(held: int, hasher: _OrderedHasher, offset: int, length: int) -> None:
        buf = transfer.buffers.take(block) if get_into is not None else None
        kept = False

        async def get() -> bytes:
            if buf is not None and get_into is not None:
                got = await get_into(name, offset, memoryview(buf)[:length])
            else:
                got = await store.get(name, offset, length)
            return _check_size(path, name, got.data, length, ranged=True)

        try:
            async with transfer.limiter:
                data = await transfer.retry(path, get, describe=f"get {name} bytes {offset}+{length}")
            kept, freed = await transfer.in_thread(hasher.write, data, offset)
            del data
            for done in freed:
                if done in parked:
                    release(*parked.pop(done))
                else:
                    freed_early.add(done)
            if kept and offset in freed_early:
                freed_early.discard(offset)
                kept = False
        finally:
            if kept:
                parked[offset] = (held, buf)
            else:
                release(held, buf)
        transfer.tracker.advanced(path, length)

    try:
        fd = await transfer.in_thread(_open_sized, tmp, entry.size)
        hasher = _OrderedHasher(fd, keep_limit=budget.limit // 2)
        async with anyio.create_task_group() as tg:
            for offset in range(0, entry.size, block):  # ranges start in order, memory permitting
                length = min(block, entry.size - offset)
                held = await budget.acquire(length)
                tg.start_soon(fetch, held, hasher, offset, length)
        if entry.digest is not None:
            got = hasher.hexdigest(entry.size)
            if got != entry.digest:
                raise _mismatch(path, name, entry.digest, got)
        if transfer.fsync:
            await transfer.in_thread(os.fsync, fd)
        os.close(fd)
        fd = None
        await transfer.in_thread(partial(publish, tmp, final, keep_mode=True))
    except BaseException:
        if fd is not None:
            os.close(fd)
        remove_quietly(tmp)
        raise
    finally:
        for held_buf in parked.values():  # a failed download's early ranges
            release(*held_buf)

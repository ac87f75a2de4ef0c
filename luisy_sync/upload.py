"""Uploading one file: a single put for small files, staged blocks for large ones.

Bytes are hashed as they are read, and that digest of exactly the bytes sent goes into
the object's metadata and is returned. An entry with a digest (a scanned Tree) must
match it, so a file that changed since it was scanned fails (IntegrityError) instead of
storing content under a digest it does not have. An entry without one (a push that did
not hash the file first) takes the digest of what was read, which the transfer's stat
cache records; such a file whose stat (size, times, inode) moved during the read fails
instead. A file whose size differs from its entry's fails either way. Staged blocks stay
invisible until the commit, so a failed or cancelled large upload never leaves a partial
object behind. ``BlockUpload`` is one attempt at a block upload; a push may begin one
before its plan (``luisy_sync.early_creates``).
"""

from __future__ import annotations

import os
import random
import uuid
from functools import partial
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskGroup

from luisy_sync.blockio import read_expected, read_into
from luisy_sync.errors import BlocksNotStaged, IntegrityError
from luisy_sync.hashing import hash_bytes, new_hasher
from luisy_sync.paths import join_under
from luisy_sync.retry import is_retryable
from luisy_sync.statcache import stat_key
from luisy_sync.stores.base import DIGEST_KEY, Store
from luisy_sync.tree import FileEntry

if TYPE_CHECKING:
    from luisy_sync.transfer import Transfer

_READ_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)

BLOCK_UPLOAD_ATTEMPTS = 3
"""Whole-file tries of a block upload whose staged blocks a concurrent commit dropped."""


def _changed(path: str, what: str) -> IntegrityError:
    return IntegrityError(f"{path} changed while it was uploaded ({what}); "
                          f"nothing was stored under its name, scan and push again")


def _checked(transfer: "Transfer", full: str, path: str, entry: FileEntry, digest: str,
             before: os.stat_result | None, after: os.stat_result | None) -> None:
    """Check the digest of the bytes read against ``entry``'s. Without one (then ``before``
    and ``after`` are the file's stat at the start and the end of the read), the file's
    stat must not have moved during the read (else the bytes may be a mix of two versions),
    and the digest is recorded in the transfer's stat cache."""
    if entry.digest is not None:
        if digest != entry.digest:
            raise _changed(path, "digest differs from the scan")
        return
    assert before is not None and after is not None
    key = stat_key(after)
    if stat_key(before) != key:
        raise _changed(path, "modified while it was read")
    transfer.stat_cache.put(full, key, digest)


def _read_whole(transfer: "Transfer", full: str, path: str, entry: FileEntry,
                into: memoryview | None = None) -> tuple[memoryview, str]:
    """The bytes of a small file and their digest (see ``_checked``), read into ``into``
    (room for ``entry.size + 1`` bytes, so that a file that grew shows) or a new buffer;
    the bytes returned are a view of it."""
    view = memoryview(bytearray(entry.size + 1)) if into is None else into[:entry.size + 1]
    before = after = None
    fd = os.open(full, _READ_FLAGS)  # no file object: 4 fewer system calls per small file
    try:
        if entry.digest is None:
            before = os.fstat(fd)
        got = read_expected(fd, view, entry.size)
        if entry.digest is None:
            after = os.fstat(fd)
    finally:
        os.close(fd)
    if got != entry.size:
        raise _changed(path, f"size {got if got <= entry.size else 'larger'}, expected {entry.size}")
    data = view[:got]
    digest = hash_bytes(data)
    _checked(transfer, full, path, entry, digest, before, after)
    return data, digest


def _read_many(transfer: "Transfer", root: str, batch: list[tuple[str, FileEntry, str]],
               buffer: bytearray | None = None) -> list[tuple[memoryview, str] | Exception]:
    """``_read_whole`` of every file of a batch in one call (per-file errors), into
    consecutive parts of ``buffer`` (``_batch_room`` bytes) when given."""
    out: list[tuple[memoryview, str] | Exception] = []
    view, at = (None, 0) if buffer is None else (memoryview(buffer), 0)
    for path, entry, _ in batch:
        into = None if view is None else view[at:at + entry.size + 1]
        at += entry.size + 1
        try:
            out.append(_read_whole(transfer, join_under(root, path), path, entry, into))
        except Exception as exc:
            out.append(exc)
    return out


def _batch_room(batch: list[tuple[str, FileEntry, str]]) -> int:
    """The bytes a buffer needs to read every file of ``batch`` (one more per file)."""
    return sum(entry.size + 1 for _, entry, _ in batch)


async def read_small_files(transfer: "Transfer", root: str, batch: list[tuple[str, FileEntry, str]]
                           ) -> list[tuple[memoryview, str] | Exception]:
    """The bytes and digest of each small file of ``batch`` (``(path, entry, name)``), read in
    one call (``Transfer.read``) and checked as an upload checks them; per file, or the
    error of its read."""
    return await transfer.read(_read_many, transfer, root, batch, nbytes=_batch_room(batch))


async def upload_batch(transfer: "Transfer", store: Store, root: str,
                       batch: list[tuple[str, FileEntry, str]]) -> list[BaseException | str]:
    """Upload many small files (``(path, entry, name)``): one call reads them all
    into one buffer of the transfer's (reused batch after batch: fresh memory costs a
    page fault per 4 KiB), then one ``put_many`` call (stores that have it) or one put
    per file, concurrently. Returns per file its error or the digest of the bytes
    stored; a retryable error of ``put_many`` is retried file by file under the retry
    policy."""
    outcomes: list[BaseException | str] = [""] * len(batch)
    async with transfer.budget.hold(sum(entry.size for _, entry, _ in batch)):
        with transfer.read_buffer(_batch_room(batch)) as buffer:
            read = await transfer.read(_read_many, transfer, root, batch, buffer, nbytes=_batch_room(batch))
            await _store_batch(transfer, store, batch, read, outcomes)
    return outcomes


async def _store_batch(transfer: "Transfer", store: Store, batch: list[tuple[str, FileEntry, str]],
                       read: list[tuple[memoryview, str] | Exception], outcomes: list[BaseException | str]
                       ) -> None:
    """The puts of a batch that was read (``upload_batch``); fills in ``outcomes``."""
    todo = []
    for i, got in enumerate(read):
        if isinstance(got, Exception):
            outcomes[i] = got
        else:
            outcomes[i] = got[1]
            todo.append((i, got))
    put_many = getattr(store, "put_many", None)
    if put_many is not None and todo:
        items = [(batch[i][2], data, {DIGEST_KEY: digest}) for i, (data, digest) in todo]
        async with transfer.limiter:
            results = await put_many(items)
        retry = []
        for (i, got), res in zip(todo, results):
            if not isinstance(res, Exception):
                transfer.tracker.advanced(batch[i][0], len(got[0]))
            elif is_retryable(res):
                retry.append((i, got))
            else:
                outcomes[i] = res
        todo = retry

    async def put_one(i: int, data: memoryview, digest: str) -> None:
        path, _, name = batch[i]
        try:
            await transfer.request(path, partial(store.put, name, data, metadata={DIGEST_KEY: digest}),
                                   describe=f"put {name}")
        except Exception as exc:
            outcomes[i] = exc
        else:
            transfer.tracker.advanced(path, len(data))

    async with anyio.create_task_group() as tg:
        for i, (data, digest) in todo:
            tg.start_soon(put_one, i, data, digest)


class _BlocksLost(Exception):
    """The commit refused our block list: another writer's commit of the same name dropped it."""

    def __init__(self, error: BlocksNotStaged):
        super().__init__(str(error))
        self.error = error


async def upload_file(transfer: "Transfer", store: Store, root: str, path: str, entry: FileEntry,
                      name: str) -> str:
    """Upload ``root/path`` to object ``name`` with its digest in the metadata; returns that
    digest (of the bytes stored).

    A block upload whose staged blocks vanished before the commit (a concurrent push of
    the same name committed first, which discards other uncommitted blocks) starts over
    with fresh blocks, up to ``BLOCK_UPLOAD_ATTEMPTS`` times.
    """
    full = join_under(root, path)
    if not transfer.in_blocks(entry.size):
        return await _upload_small(transfer, store, full, path, entry, name)
    attempt = 1
    while True:
        try:
            return await BlockUpload(transfer, store, full, path, entry, name).finish()
        except _BlocksLost as lost:
            if attempt == BLOCK_UPLOAD_ATTEMPTS:
                raise lost.error from None
            transfer.tracker.retried(path, attempt, str(lost).splitlines()[0], restart=True)
            await anyio.sleep(random.uniform(0.0, 0.05 * attempt))
            attempt += 1


async def _upload_small(transfer: "Transfer", store: Store, full: str, path: str, entry: FileEntry,
                        name: str) -> str:
    async with transfer.budget.hold(entry.size), transfer.limiter:
        with transfer.read_buffer(entry.size + 1) as buffer:
            data, digest = await transfer.in_thread(_read_whole, transfer, full, path, entry,
                                                    memoryview(buffer))
            await transfer.retry(path, partial(store.put, name, data, metadata={DIGEST_KEY: digest}),
                                 describe=f"put {name}")
    transfer.tracker.advanced(path, entry.size)
    return digest


class BlockUpload:
    """One attempt at the block upload of a file: its blocks are read in order (hashed as
    they are read) and staged concurrently, then committed with the digest of them all.

    ``finish`` stages what is left and commits. A push may call ``stage_first`` before
    (``luisy_sync.early_creates``): it stages the first blocks while free memory and free
    request slots allow, in the push's task group, and does not count them in the
    progress until ``finish`` runs. ``discard`` gives up an upload that will not be
    finished: its staged blocks stay uncommitted, which belong to no version of the
    object and which the store drops (Azure after a week, or at the name's next commit).
    """

    def __init__(self, transfer: "Transfer", store: Store, full: str, path: str, entry: FileEntry,
                 name: str, *, counted: bool = True):
        self._transfer, self._store = transfer, store
        self.full, self.path, self.entry, self.name = full, path, entry, name
        self._block = transfer.block_size_for(entry.size)
        self._attempt_id = uuid.uuid4().hex[:16]  # fresh per attempt: never reuse another attempt's blocks
        self._hasher = new_hasher()
        self._block_ids: list[str] = []
        self._offset = 0
        self._fd: int | None = None
        self._before: os.stat_result | None = None
        self._counted = counted
        self._uncounted = 0
        """Bytes staged while not counted (before ``finish``)."""
        self._first: list[anyio.Event] = []
        """One per block staged by ``stage_first``: set when its put ended."""
        self._first_error: Exception | None = None

    async def stage_first(self, tasks: TaskGroup, stop: anyio.Event) -> None:
        """Read and stage blocks in ``tasks`` until ``stop`` is set, or until the next one
        would wait for memory or a request slot."""
        transfer = self._transfer
        await self._open()
        while self._offset < self.entry.size and not stop.is_set():
            held = transfer.budget.try_acquire(self._next_length())
            if held is None:
                return
            token = object()
            try:
                transfer.limiter.acquire_on_behalf_of_nowait(token)
            except anyio.WouldBlock:
                transfer.budget.release(held)
                return
            block_id, buf, length = await self._read_next(held, token)
            ended = anyio.Event()
            self._first.append(ended)
            tasks.start_soon(self._stage, token, held, block_id, buf, length, ended)

    async def finish(self) -> str:
        """Stage the blocks not staged yet, commit them all; returns the digest stored."""
        transfer = self._transfer
        limiter, budget = transfer.limiter, transfer.budget
        self._counted = True
        if self._uncounted:
            transfer.tracker.advanced(self.path, self._uncounted)
            self._uncounted = 0
        fd = await self._open()
        after = None
        try:
            async with anyio.create_task_group() as tg:
                while self._offset < self.entry.size and self._first_error is None:
                    held = await budget.acquire(self._next_length())  # bytes in memory, then a request slot
                    token = object()
                    try:
                        await limiter.acquire_on_behalf_of(token)
                    except BaseException:
                        budget.release(held)
                        raise
                    tg.start_soon(self._stage, token, held, *await self._read_next(held, token))
            for ended in self._first:
                await ended.wait()
            extra = await transfer.in_thread(os.pread, fd, 1, self.entry.size)
            if self.entry.digest is None:
                after = await transfer.in_thread(os.fstat, fd)
        finally:
            self.discard()
        if self._first_error is not None:
            raise self._first_error
        if extra:
            raise _changed(self.path, "size grew")
        digest = self._hasher.hexdigest()
        _checked(transfer, self.full, self.path, self.entry, digest, self._before, after)
        try:
            await transfer.request(self.path, partial(self._store.commit_blocks, self.name, self._block_ids,
                                                      metadata={DIGEST_KEY: digest}),
                                   describe=f"commit {len(self._block_ids)} blocks of {self.name}")
        except BlocksNotStaged as exc:
            raise _BlocksLost(exc) from None
        return digest

    def discard(self) -> None:
        """Close the file (blocks still being staged end on their own)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    async def _open(self) -> int:
        if self._fd is None:
            if self._offset:
                raise RuntimeError(f"the block upload of {self.path} was discarded")
            self._fd = await self._transfer.in_thread(os.open, self.full, _READ_FLAGS)
            if self.entry.digest is None:
                self._before = await self._transfer.in_thread(os.fstat, self._fd)
        return self._fd

    def _next_length(self) -> int:
        return min(self._block, self.entry.size - self._offset)

    def _read_block(self, fd: int, offset: int, view: memoryview) -> None:
        if read_into(fd, view, offset) != len(view):
            raise _changed(self.path, f"short read at offset {offset}: file is shorter than {self.entry.size}")
        self._hasher.update(view)  # blocks are read in order, one at a time

    async def _read_next(self, held: int, token: object) -> tuple[str, bytearray, int]:
        """Read the next block into a pool buffer (on failure ``held`` and ``token`` are
        given back); returns its id, the buffer and its length."""
        transfer = self._transfer
        length = self._next_length()
        buf = transfer.buffers.take(self._block)
        try:
            assert self._fd is not None
            await transfer.in_thread(self._read_block, self._fd, self._offset, memoryview(buf)[:length])
        except BaseException:
            transfer.limiter.release_on_behalf_of(token)
            transfer.budget.release(held)
            transfer.buffers.give(buf)
            raise
        block_id = f"{self._attempt_id}-{len(self._block_ids):06d}"
        self._block_ids.append(block_id)
        self._offset += length
        return block_id, buf, length

    async def _stage(self, token: object, held: int, block_id: str, buf: bytearray, length: int,
                     ended: anyio.Event | None = None) -> None:
        """Put one block. A block of ``stage_first`` (``ended`` given) keeps its error for
        ``finish`` instead of raising it into the push's task group."""
        transfer = self._transfer
        try:  # the store copies what it keeps (Store protocol), so the buffer is reused after
            await transfer.retry(self.path, self._store.put_block, self.name, block_id, memoryview(buf)[:length],
                                 describe=f"put block {block_id} of {self.name}")
        except Exception as exc:
            if ended is None:
                raise
            self._first_error = self._first_error or exc
            return
        finally:
            transfer.limiter.release_on_behalf_of(token)
            transfer.budget.release(held)
            transfer.buffers.give(buf)
            if ended is not None:
                ended.set()
        if self._counted:
            transfer.tracker.advanced(self.path, length)
        else:
            self._uncounted += length

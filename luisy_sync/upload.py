"""Uploading one file: a single put for small files, staged blocks for large ones.

Bytes are hashed as they are read, and that digest of exactly the bytes sent goes into
the object's metadata and is returned. An entry with a digest (a scanned Tree) must
match it, so a file that changed since it was scanned fails (IntegrityError) instead of
storing content under a digest it does not have. An entry without one (a push that did
not hash the file first) takes the digest of what was read, which the transfer's stat
cache records; such a file whose stat (size, times, inode) moved during the read fails
instead. A file whose size differs from its entry's fails either way. Staged blocks stay
invisible until the commit, so a failed or cancelled large upload never leaves a partial
object behind.
"""

from __future__ import annotations

import os
import random
import uuid
from functools import partial
from typing import TYPE_CHECKING

import anyio

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
    """``_read_whole`` of every file of a batch in one thread call (per-file errors), into
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
    one thread call and checked as an upload checks them; per file, or the error of its read."""
    return await transfer.in_thread(_read_many, transfer, root, batch)


async def upload_batch(transfer: "Transfer", store: Store, root: str,
                       batch: list[tuple[str, FileEntry, str]]) -> list[BaseException | str]:
    """Upload many small files (``(path, entry, name)``): one thread call reads them all
    into one buffer of the transfer's (reused batch after batch: fresh memory costs a
    page fault per 4 KiB), then one ``put_many`` call (stores that have it) or one put
    per file, concurrently. Returns per file its error or the digest of the bytes
    stored; a retryable error of ``put_many`` is retried file by file under the retry
    policy."""
    outcomes: list[BaseException | str] = [""] * len(batch)
    async with transfer.budget.hold(sum(entry.size for _, entry, _ in batch)):
        with transfer.read_buffer(_batch_room(batch)) as buffer:
            read = await transfer.in_thread(_read_many, transfer, root, batch, buffer)
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
    if entry.size <= transfer.block_size:
        return await _upload_small(transfer, store, full, path, entry, name)
    attempt = 1
    while True:
        try:
            return await _upload_blocks(transfer, store, full, path, entry, name)
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


async def _upload_blocks(transfer: "Transfer", store: Store, full: str, path: str, entry: FileEntry,
                         name: str) -> str:
    block = transfer.block_size_for(entry.size)
    attempt_id = uuid.uuid4().hex[:16]  # fresh per attempt: never reuse another attempt's blocks
    hasher = new_hasher()
    block_ids: list[str] = []
    limiter, budget, buffers = transfer.limiter, transfer.budget, transfer.buffers

    def read_block(fd: int, offset: int, view: memoryview) -> None:
        if read_into(fd, view, offset) != len(view):
            raise _changed(path, f"short read at offset {offset}: file is shorter than {entry.size}")
        hasher.update(view)  # blocks are read in order, one at a time

    async def stage(token: object, held: int, block_id: str, buf: bytearray, length: int) -> None:
        try:  # the store copies what it keeps (Store protocol), so the buffer is reused after
            await transfer.retry(path, store.put_block, name, block_id, memoryview(buf)[:length],
                                 describe=f"put block {block_id} of {name}")
        finally:
            limiter.release_on_behalf_of(token)
            budget.release(held)
            buffers.give(buf)
        transfer.tracker.advanced(path, length)

    fd = await transfer.in_thread(os.open, full, _READ_FLAGS)
    before = after = None
    try:
        if entry.digest is None:
            before = await transfer.in_thread(os.fstat, fd)
        async with anyio.create_task_group() as tg:
            for index, offset in enumerate(range(0, entry.size, block)):
                length = min(block, entry.size - offset)
                held = await budget.acquire(length)  # bytes in memory, then a request slot
                token = object()
                try:
                    await limiter.acquire_on_behalf_of(token)
                except BaseException:
                    budget.release(held)
                    raise
                buf = buffers.take(block)
                try:
                    await transfer.in_thread(read_block, fd, offset, memoryview(buf)[:length])
                except BaseException:
                    limiter.release_on_behalf_of(token)
                    budget.release(held)
                    buffers.give(buf)
                    raise
                block_id = f"{attempt_id}-{index:06d}"
                block_ids.append(block_id)
                tg.start_soon(stage, token, held, block_id, buf, length)
        extra = await transfer.in_thread(os.pread, fd, 1, entry.size)
        if entry.digest is None:
            after = await transfer.in_thread(os.fstat, fd)
    finally:
        os.close(fd)
    if extra:
        raise _changed(path, "size grew")
    digest = hasher.hexdigest()
    _checked(transfer, full, path, entry, digest, before, after)
    try:
        await transfer.request(path, partial(store.commit_blocks, name, block_ids, metadata={DIGEST_KEY: digest}),
                               describe=f"commit {len(block_ids)} blocks of {name}")
    except BlocksNotStaged as exc:
        raise _BlocksLost(exc) from None
    return digest

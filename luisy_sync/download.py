"""Downloading one file: into a temp file beside its final name, verified, then renamed.

Small objects come in one GET. Large ones come in parallel ranges, written at their
offsets and hashed in order by one writer per file (``luisy_sync.download_writer``; no
second read of the file): a store with ``get_stream`` streams a few long ranges through
a small pool of chunks, others fetch ``block_size`` ranges as the byte budget allows.
A whole object read from a store with ``get_stream`` lands in a buffer of the transfer's
pool (``luisy_sync.whole_body``), not in a fresh one per body.
The content must match the expected size and digest before
``os.replace`` gives it its final name. On any failure or cancellation the temp file
(named by ``luisy_sync.conventions``) is removed, so nothing half-written is ever visible.
A replaced file keeps its permission bits.
"""

from __future__ import annotations

import collections
import contextlib
import os
import stat
from functools import partial
from typing import TYPE_CHECKING, AsyncIterator, Awaitable, Callable, Iterable

import anyio

from luisy_sync.atomic import publish, remove_quietly, write_atomic
from luisy_sync.blockio import BytesLike
from luisy_sync.conventions import TEMP_NAME, temp_path, writer_alive
from luisy_sync.download_writer import ChunkPool, OrderedWriter, RangeSink
from luisy_sync.errors import IntegrityError, NotFoundError, ShortReadError, SyncError
from luisy_sync.hashing import hash_bytes
from luisy_sync.io_pace import IOPace
from luisy_sync.paths import join_under
from luisy_sync.retry import is_retryable
from luisy_sync.stores.base import GetResult, ObjectInfo, Store
from luisy_sync.tree import FileEntry
from luisy_sync.whole_body import WholeBody, check_size

if TYPE_CHECKING:
    from luisy_sync.transfer import Transfer

WHOLE_FILE_ATTEMPTS = 2
"""Whole-file tries on a digest mismatch (the second read tells corruption in flight from at rest)."""
STREAMS_PER_FILE = 4
"""Streamed range reads in flight for a large file pulled alone (rclone's multi-thread
streams: 4)."""
STREAMS_PER_FILE_AMONG_SEVERAL = 2
"""Streamed range reads in flight per large file when a pull moves several: the files run
side by side, and with fewer streams each, fewer bytes arrive before their turn and are
read back for the hash. W3 pulls (2 x 256 MiB) through the 20 ms proxy, 6 interleaved
benchmark runs of 4 jobs each (``--only W3``), 2 against 4 streams: client CPU (min of
each run's 4) median 0.45 against 0.53 s, lower in 4 of 6; time (min) median 0.98 against
1.04 s, lower in 4 of 6. On the slower machine before: CPU 0.579 against 0.603 s, time
1.077 against 1.068 s (8 interleaved pulls)."""
STREAM_RANGE_BLOCKS = 8
"""Blocks per streamed range read (whole blocks line up with how uploads stored them;
long reads leave fewer gaps of a round trip between reads)."""
STREAM_CHUNK = 256 * 1024
"""Size of the chunks a streamed read lands in (and of the writer's pieces). A chunk
the socket read fills is still in the core's cache (1 MiB of L2 here) when it is
written and hashed. Measured, W3 pulls to tmpfs through the 20 ms proxy, 8 interleaved
runs, client CPU median: 1 MiB 0.714-0.786 s (0.65-0.69 s of it in the kernel), 512 KiB
0.746 s, 256 KiB 0.594-0.690 s (0.47-0.55 s), 128 KiB 0.669 s, 64 KiB 0.733 s (smaller
chunks: more Python calls per MiB)."""
STREAM_MEMORY = 16 * 1024 * 1024
"""Bytes of the transfer's budget one streamed file download holds for its chunks
(measured with 1 MiB chunks, W3 through the 20 ms proxy: 8, 16 and 32 MiB gave the same
times; with 8 MiB reads paused ~500 times per 512 MiB, each pause and resume two epoll
calls, with 16 MiB ~70 times; more chunks touch more fresh pages. With 256 KiB chunks, 8
MiB took the same CPU within noise). It is a bound: chunks are made as they
are needed, and while the writer writes inline a file has few in flight (a W3 pull
touches ~4.5k fresh pages in all)."""
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


def _write_whole(final: str, path: str, name: str, data: BytesLike, digest: str | None, fsync: bool) -> None:
    if digest is not None:
        got = hash_bytes(data)
        if got != digest:
            raise _mismatch(path, name, digest, got)
    # a new file gets the umask's permission bits, a replaced one keeps its own
    write_atomic(final, [data], fsync=fsync, mode=0o666, keep_mode=True)


def write_many(dest: str, batch: list[tuple[str, FileEntry, str]], datas: list[BytesLike | BaseException],
                fsync: bool) -> list[BaseException | None]:
    """Check and write every fetched file of a batch in one call (per-file errors)."""
    out: list[BaseException | None] = []
    for (path, entry, name), data in zip(batch, datas):
        if isinstance(data, BaseException):
            out.append(data)
            continue
        try:
            check_size(path, name, data, entry.size, ranged=False)
            _write_whole(join_under(dest, path), path, name, data, entry.digest, fsync)
        except Exception as exc:
            out.append(exc)
        else:
            out.append(None)
    return out


async def download_batch(transfer: "Transfer", store: Store, dest: str,
                         batch: list[tuple[str, FileEntry, str]]) -> list[BaseException | None]:
    """Download many small objects (``(path, entry, name)``): one ``get_many`` call (stores
    that have it) or one get per object, concurrently, then one call checks and writes
    them all (``Transfer.write``; the bodies in buffers of the transfer's pool when the
    store streams).
    A file whose bytes did not verify, or whose read failed with a retryable error, is
    fetched again on its own (``download_file``). Returns one error (or None) per file."""
    datas: list[BytesLike | BaseException] = [b""] * len(batch)
    nbytes = sum(entry.size for _, entry, _ in batch)
    async with transfer.budget.hold(nbytes):
        get_many = getattr(store, "get_many", None)
        if get_many is not None:
            async with transfer.limiter:
                datas = [got.data if isinstance(got, GetResult) else got
                         for got in await get_many([name for _, _, name in batch])]
            errors = await transfer.write(write_many, dest, batch, datas, transfer.fsync, nbytes=nbytes)
        else:
            bodies = [WholeBody(transfer.buffers, entry.size, path, name) for path, entry, name in batch]

            async def get_one(i: int) -> None:
                try:
                    datas[i] = await transfer.request(batch[i][0], bodies[i].read, store,
                                                      describe=f"get {bodies[i].name}")
                except Exception as exc:
                    datas[i] = exc

            try:
                async with anyio.create_task_group() as tg:
                    for i in range(len(batch)):
                        tg.start_soon(get_one, i)
                errors = await transfer.write(write_many, dest, batch, datas, transfer.fsync, nbytes=nbytes)
            finally:
                for body in bodies:
                    body.release()
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
            if not transfer.in_blocks(entry.size):
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
    async with transfer.budget.hold(entry.size):  # the request slot is free while writing
        body = WholeBody(transfer.buffers, entry.size, path, name)
        try:
            async with transfer.limiter:
                data = await transfer.retry(path, body.read, store, describe=f"get {name}")
            transfer.tracker.advanced(path, len(data))
            await transfer.write(_write_whole, final, path, name, data, entry.digest, transfer.fsync,
                                 nbytes=len(data))
        finally:
            body.release()


async def _download_ranges(transfer: "Transfer", store: Store, final: str, path: str, entry: FileEntry,
                           name: str) -> None:
    tmp = temp_path(final)
    fd: int | None = None
    writer: OrderedWriter | None = None
    try:
        fd = await transfer.in_thread(_open_sized, tmp, entry.size)
        get_stream = getattr(store, "get_stream", None)
        if get_stream is not None:
            writer = await _stream_ranges(transfer, get_stream, fd, path, entry, name)
        else:
            writer = await _get_ranges(transfer, store, fd, path, entry, name)
        if writer.error is not None:
            raise writer.error
        if entry.digest is not None:
            got = writer.hexdigest(entry.size)
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


@contextlib.asynccontextmanager
async def _writing(fd: int, keep_limit: int, pace: IOPace) -> AsyncIterator[OrderedWriter]:
    """An OrderedWriter for ``fd`` whose thread, if it started one, has ended when the
    block is left (so the descriptor can be closed), however it is left."""
    writer = OrderedWriter(fd, keep_limit, pace)
    try:
        yield writer
    finally:
        with anyio.CancelScope(shield=True):
            await writer.close()


async def _stream_ranges(transfer: "Transfer", get_stream: Callable[..., Awaitable[object]], fd: int,
                         path: str, entry: FileEntry, name: str) -> OrderedWriter:
    """The ranges of a store through its ``get_stream``: ``STREAMS_PER_FILE`` reads at a time
    (``STREAMS_PER_FILE_AMONG_SEVERAL`` when the pull moves several large files), of
    ``STREAM_RANGE_BLOCKS`` blocks each, streamed through a pool of ``STREAM_CHUNK``
    chunks worth ``STREAM_MEMORY`` of the byte budget."""
    block = transfer.block_size_for(entry.size)
    streams = STREAMS_PER_FILE if transfer.ranged_files <= 1 else STREAMS_PER_FILE_AMONG_SEVERAL
    # whole blocks, and at least STREAMS_PER_FILE ranges where the file has that many blocks
    span = block * max(1, min(STREAM_RANGE_BLOCKS, -(-entry.size // (block * STREAMS_PER_FILE))))
    ranges = collections.deque((offset, min(span, entry.size - offset))
                               for offset in range(0, entry.size, span))
    held = await transfer.budget.acquire(min(STREAM_MEMORY, entry.size))
    chunk = min(STREAM_CHUNK, held)
    pool = ChunkPool(held // chunk, chunk, transfer.buffers)
    try:
        # nothing kept for the in-order hash: a chunk is free again once written, so the
        # few in flight stay in cache (early bytes are read back; see download_writer)
        async with _writing(fd, 0, transfer.write_pace) as writer:
            async def reader() -> None:
                while ranges and writer.error is None:
                    offset, length = ranges.popleft()
                    what = f"get {name} bytes {offset}+{length}"
                    sink = RangeSink(writer, pool, offset, length, f"{path}: {what}")

                    async def attempt() -> None:
                        sink.restart()
                        await get_stream(name, offset + sink.committed, length - sink.committed, sink)
                        sink.check_complete()

                    try:
                        await transfer.request(path, attempt, describe=what)
                    finally:
                        sink.restart()
                    transfer.tracker.advanced(path, length)

            async with anyio.create_task_group() as tg:
                for _ in range(min(streams, len(ranges))):
                    tg.start_soon(reader)
        return writer
    finally:  # the writer has ended: every chunk is back in the pool
        pool.close()
        transfer.budget.release(held)


async def _get_ranges(transfer: "Transfer", store: Store, fd: int, path: str, entry: FileEntry,
                      name: str) -> OrderedWriter:
    """The ranges of any other store: one ``block_size`` get each, started in order as
    the byte budget allows (a range's share is back once it was written and hashed)."""
    block = transfer.block_size_for(entry.size)
    budget = transfer.budget

    async with _writing(fd, budget.limit // 2, transfer.write_pace) as writer:
        async def fetch(held: int, offset: int, length: int) -> None:
            async def get() -> bytes:
                return check_size(path, name, (await store.get(name, offset, length)).data, length,
                                   ranged=True)

            try:
                async with transfer.limiter:
                    data = await transfer.retry(path, get, describe=f"get {name} bytes {offset}+{length}")
            except BaseException:
                budget.release(held)
                raise
            writer.submit(data, offset, partial(budget.release, held))
            transfer.tracker.advanced(path, length)

        async with anyio.create_task_group() as tg:
            for offset in range(0, entry.size, block):  # ranges start in order, memory permitting
                if writer.error is not None:
                    break
                length = min(block, entry.size - offset)
                held = await budget.acquire(length)
                tg.start_soon(fetch, held, offset, length)
    return writer

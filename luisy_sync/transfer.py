"""The transfer engine: moves given files through a Store; never decides *what* to move.

One ``Transfer`` holds the shared pieces of a session: a single
``anyio.CapacityLimiter`` over every store request (a multi-block file and many small
files draw from the same pool), a thread limiter for blocking file IO, the retry
policy and the progress tracker. ``luisy_sync.moves`` moves an exact list of files
through it; the per-file work lives in ``luisy_sync.upload`` and
``luisy_sync.download``. A file that fails for good is recorded with a one-line reason
and the other files continue; cancellation propagates and leaves nothing half-written.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence, TypeVar

import anyio

from luisy_sync.adaptive import AdaptiveLimiter, observed
from luisy_sync.batching import batched
from luisy_sync.budget import BufferPool, ByteBudget
from luisy_sync.errors import one_line
from luisy_sync.io_pace import IOPace
from luisy_sync.progress import FileTracker, ProgressCallback
from luisy_sync.retry import RetryPolicy, call_with_retry
from luisy_sync.statcache import NullStatCache, StatCache
from luisy_sync.tree import FileEntry

T = TypeVar("T")

DEFAULT_CONCURRENCY = 32
DEFAULT_BLOCK_SIZE = 8 * 2 ** 20
DEFAULT_IO_THREADS = 16
DEFAULT_MEMORY_LIMIT = 64 * 2 ** 20
"""Bytes of file content a transfer holds at once by default (at least 4 blocks)."""
MAX_BLOCKS = 50_000
"""Most blocks one object may have (Azure's limit); larger files get larger blocks."""
BATCH_FILE_MAX = 1 * 2 ** 20
"""Files up to this size move in batches: one call reads (or writes) many of them."""
BATCH_BYTES = 4 * 2 ** 20
BATCH_FILES = 64
BATCH_STORE_WORKERS = 1
"""Batches in flight at once for a store with batch calls (``put_many``/``get_many``, a
local store: file calls only, no network wait to overlap). Each further one only adds
threads contending for the GIL on the many small file calls: 10k x 4 KiB to a local
store took 0.56 s and 0.55 CPU s with one, 0.65 s and 0.85 CPU s with two, and at four
3x the context switches of two."""
BATCH_WORKERS_MAX = {"push": 8, "pull": 16}
"""The most batches in flight at once for a store without batch calls (one request per
file), by direction. A batch ends with its slowest file, so with too few the request slots
idle behind stragglers: pulling 200 x 1 MiB (4 files per batch) at 20 ms RTT ran 24-32
requests in flight with 8 batches and 32 with 16, and took 6% less time (medians of 5,
Azurite behind the proxy). A push gained 1-2% from 16 for 5% more client CPU (its batches
read their files ahead, in more fresh buffers), so it keeps 8."""

Item = tuple[str, FileEntry]
BatchMove = Callable[[list[Item]], Awaitable[Sequence[BaseException | str | None]]]
"""Moves a batch of files; per file its error, or the digest of the bytes moved (or None)."""


def first_error(error: BaseException) -> BaseException:
    """The first leaf of a (possibly nested) exception group."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


@dataclass
class TransferResult:
    """Files that moved, files that failed (with reasons), bytes moved and wall time;
    ``digests``: the digest of the bytes sent of each file uploaded."""

    done: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    bytes_transferred: int = 0
    seconds: float = 0.0
    digests: dict[str, str] = field(default_factory=dict)


class Transfer:
    """One transfer session: the request limiter, retry policy and progress tracker.

    ``limiter`` may be passed in to share one request budget across several sessions
    (for example luisy moving outputs of many tasks); otherwise an adaptive one is made
    (``luisy_sync.adaptive``: it grows while requests succeed with flat latency and
    shrinks on 429/503/timeouts) with ``concurrency`` as its cap, or with
    ``adaptive=False`` a fixed limiter of exactly ``concurrency``. The bytes of file content held in memory at once (blocks
    read but not yet sent, bodies received but not yet written) stay within
    ``memory_limit`` (default: the larger of 64 MiB and 4 blocks), whatever the
    concurrency. ``stat_cache``: where an upload of a file given without a digest records
    the digest it computed (when the file did not change while it was read).
    """

    def __init__(self, *, concurrency: int = DEFAULT_CONCURRENCY, block_size: int = DEFAULT_BLOCK_SIZE,
                 policy: RetryPolicy | None = None, progress: ProgressCallback | None = None,
                 limiter: anyio.CapacityLimiter | None = None, io_threads: int = DEFAULT_IO_THREADS,
                 fsync: bool = False, memory_limit: int | None = None, adaptive: bool = True,
                 stat_cache: StatCache | NullStatCache | None = None):
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        if block_size < 1:
            raise ValueError(f"block_size must be positive, got {block_size}")
        self.limiter: anyio.CapacityLimiter | AdaptiveLimiter = limiter or (
            AdaptiveLimiter(concurrency) if adaptive else anyio.CapacityLimiter(concurrency))
        self.io_limiter = anyio.CapacityLimiter(io_threads)
        self.block_size = block_size
        self.budget = ByteBudget(memory_limit or max(DEFAULT_MEMORY_LIMIT, 4 * block_size))
        self.buffers = BufferPool(self.budget.limit)
        self.policy = policy or RetryPolicy()
        self.tracker = FileTracker(progress)
        self.fsync = fsync
        self.read_pace = IOPace()
        """How quick this transfer's reads of small files to send are (``read``)."""
        self.write_pace = IOPace()
        """How quick this transfer's writes of received bytes are (``write``)."""
        self.stat_cache = stat_cache if stat_cache is not None else NullStatCache()
        self.workers = max(1, int(self.limiter.total_tokens))
        self.ranged_files = 0
        """How many files of the latest ``run_files`` move in blocks or ranges (``in_blocks``):
        a streamed download spreads its range reads by it
        (``luisy_sync.download``)."""

    @contextlib.contextmanager
    def read_buffer(self, size: int) -> Iterator[bytearray]:
        """A buffer of at least ``size`` bytes from the transfer's pool
        (``BufferPool.take_at_least``) for the block's duration."""
        buffer = self.buffers.take_at_least(size)
        try:
            yield buffer
        finally:
            self.buffers.give(buffer)

    def in_blocks(self, size: int) -> bool:
        """Whether a file of ``size`` bytes moves in blocks (push) or ranges (pull) rather
        than in one request."""
        return size > self.block_size

    def block_size_for(self, size: int) -> int:
        """The block size used for a file of ``size`` bytes (grown to stay under MAX_BLOCKS)."""
        return max(self.block_size, -(-size // MAX_BLOCKS))

    async def retry(self, path: str, fn: Callable[..., Awaitable[T]], *args: object,
                    describe: str = "") -> T:
        """``fn(*args)`` under the retry policy (the caller holds a request slot)."""
        return await self._retry(path, self._observed(fn), *args, describe=describe)

    async def _retry(self, path: str, fn: Callable[..., Awaitable[T]], *args: object,
                     describe: str = "") -> T:
        def on_retry(attempt: int, error: BaseException, sleep: float) -> None:
            self.tracker.retried(path, attempt, one_line(error))

        return await call_with_retry(fn, *args, policy=self.policy, describe=describe or path,
                                     on_retry=on_retry)

    def _observed(self, fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        """``fn`` reporting each attempt's latency and outcome to an adaptive limiter."""
        limiter = self.limiter
        if not observed(limiter):
            return fn

        async def attempt(*args: object) -> T:
            start = limiter.started()
            try:
                result = await fn(*args)
            except Exception as exc:
                limiter.observe(start, exc)
                raise
            limiter.observe(start, None)
            return result

        return attempt

    async def request(self, path: str, fn: Callable[..., Awaitable[T]], *args: object,
                      describe: str = "") -> T:
        """One store request (with its retries) holding one slot of the shared limiter.

        With an adaptive limiter the slot is held per attempt, so a request told to
        come back later (Retry-After) leaves its slot to others while it waits.
        """
        if not observed(self.limiter):
            async with self.limiter:
                return await self._retry(path, fn, *args, describe=describe)
        return await self._retry(path, self.once, fn, *args, describe=describe)

    async def once(self, fn: Callable[..., Awaitable[T]], *args: object) -> T:
        """One attempt of a store request holding one slot of the limiter, not retried
        (its outcome still feeds an adaptive limiter)."""
        async with self.limiter:
            return await self.attempt(fn, *args)

    async def attempt(self, fn: Callable[..., Awaitable[T]], *args: object) -> T:
        """``once`` for a caller that holds a slot of the limiter already."""
        return await self._observed(fn)(*args)

    @property
    def request_limit(self) -> int:
        """How many requests the limiter allows in flight now."""
        limiter = self.limiter
        return limiter.current if observed(limiter) else int(limiter.total_tokens)

    async def in_thread(self, fn: Callable[..., T], *args: object) -> T:
        """Run blocking file IO or hashing in a worker thread under the IO limiter."""
        return await anyio.to_thread.run_sync(fn, *args, limiter=self.io_limiter)

    async def read(self, fn: Callable[..., T], *args: object, nbytes: int) -> T:
        """Run ``fn(*args)``, a read of ``nbytes`` from local files to send: on the event
        loop while this transfer's reads are quick, else in a worker thread
        (``luisy_sync.io_pace``)."""
        return await self._paced(self.read_pace, fn, args, nbytes)

    async def write(self, fn: Callable[..., T], *args: object, nbytes: int) -> T:
        """Run ``fn(*args)``, a write of ``nbytes`` received bytes to local files: on the
        event loop while this transfer's writes are quick, else in a worker thread (always
        there with ``fsync``, which waits for the disk)."""
        return await self._paced(self.write_pace, fn, args, nbytes, inline=not self.fsync)

    async def _paced(self, pace: IOPace, fn: Callable[..., T], args: tuple[object, ...], nbytes: int,
                     inline: bool = True) -> T:
        if inline and pace.quick:
            return pace.timed(fn, *args, nbytes=nbytes)
        return await self.in_thread(partial(pace.timed, fn, *args, nbytes=nbytes))

    def batches(self, small: list[Item], batch_store: bool) -> list[list[Item]]:
        """Group small files: up to BATCH_FILES / BATCH_BYTES per batch; for stores
        without batch calls, at most half the request slots per batch so that several
        batches (reads, requests and writes) overlap."""
        cap = min(BATCH_BYTES, max(1, self.budget.limit // 4))
        return batched(small, lambda item: item[1].size, max_items=self._batch_files(batch_store),
                       max_bytes=cap)

    def _batch_files(self, batch_store: bool) -> int:
        """How many files one batch holds at most."""
        return BATCH_FILES if batch_store else max(1, min(BATCH_FILES, self.workers // 2))

    async def run_files(self, direction: str, items: Iterable[Item],
                        move: Callable[[str, FileEntry], Awaitable[str | None]],
                        move_batch: BatchMove | None = None, batch_store: bool = False,
                        started: Mapping[str, Callable[[], Awaitable[str | None]]] | None = None
                        ) -> TransferResult:
        """Apply ``move`` to every file, ``self.workers`` at a time, largest first.

        With ``move_batch``, files up to BATCH_FILE_MAX go in batches to it instead
        (it returns one error, or digest or None, per file), a few batches at a time. A
        digest ``move`` or ``move_batch`` returns for a file that moved is the digest of
        the bytes moved, kept in ``TransferResult.digests``. ``started``: files whose move
        the caller already started, each with the wait for its end, which returns the
        digest moved, or None when the file is still to move (then ``move`` moves it); the
        bytes of a file a wait moved that it did not count in the progress itself are
        counted at its end.
        """
        todo = sorted(items, key=_largest_first)
        result = TransferResult()
        if not todo:
            return result
        tracker = self.tracker
        callback = tracker.callback
        began_at = time.monotonic()
        before = tracker.bytes_done
        limit = -1 if move_batch is None else min(BATCH_FILE_MAX, self.block_size)
        begun = started or {}
        large = [item for item in todo if item[1].size > limit or item[0] in begun]
        small = [item for item in todo if item[1].size <= limit and item[0] not in begun]
        self.ranged_files = sum(1 for _, entry in large if self.in_blocks(entry.size))
        singles = iter(large)
        batches = self.batches(small, batch_store)
        groups = iter(batches)

        def outcome(path: str, got: BaseException | str | None) -> None:
            if isinstance(got, BaseException):  # one file failed for good: record it, go on
                reason = one_line(first_error(got))
                result.failed.append((path, reason))
                tracker.failed(path, reason)
            else:
                result.done.append(path)
                if got:
                    result.digests[path] = got
                tracker.finished(path)

        async def move_one(path: str, entry: FileEntry) -> str | None:
            wait = begun.get(path)
            if wait is not None:
                digest = await wait()
                if digest is not None:
                    uncounted = entry.size - tracker.counted(path)
                    if uncounted:
                        tracker.advanced(path, uncounted)
                    return digest
            return await move(path, entry)

        async def single_worker() -> None:
            for path, entry in singles:
                tracker.started(path, entry.size)
                try:
                    got = await move_one(path, entry)
                except Exception as exc:
                    outcome(path, exc)
                else:
                    outcome(path, got)

        async def batch_worker() -> None:
            assert move_batch is not None
            for group in groups:
                for path, entry in group:
                    tracker.started(path, entry.size)
                try:
                    outcomes = await move_batch(group)
                except Exception as exc:
                    outcomes = [exc] * len(group)
                for (path, _), got in zip(group, outcomes):
                    outcome(path, got)

        callback.begin(direction, len(todo), sum(e.size for _, e in todo))
        try:
            async with anyio.create_task_group() as tg:
                for _ in range(min(self.workers, len(large))):
                    tg.start_soon(single_worker)
                if small:
                    per_batch = len(small) / len(batches)  # files per batch (bytes cap some)
                    # A batch store: BATCH_STORE_WORKERS batches at once (see there). Otherwise
                    # enough batches for twice the request slots, plus one: a batch finishes
                    # with its slowest file (one told to retry after a second, say), and the
                    # others keep every slot busy meanwhile.
                    count = BATCH_STORE_WORKERS if batch_store else min(
                        BATCH_WORKERS_MAX[direction],
                        max(2, math.ceil(2 * self.workers / per_batch) + 1))
                    for _ in range(count):
                        tg.start_soon(batch_worker)
        finally:
            callback.end()
        result.done.sort()
        result.failed.sort()
        result.bytes_transferred = tracker.bytes_done - before
        result.seconds = time.monotonic() - began_at
        return result


def _largest_first(item: Item) -> tuple[int, str]:
    return -item[1].size, item[0]


"""The writing side of a ranged download: pieces of a file, in any order, into its temp file.

``OrderedWriter`` writes each piece of one file at its offset and hashes the file in
offset order: a piece that continues the hashed prefix is hashed at once; one that
arrives early is kept in memory while the kept pieces fit ``keep_limit`` (its buffer is
handed back only once it was hashed), and otherwise read back from the page cache when
its turn comes, through one small buffer. So the file is never read twice whole.

It writes on the event loop, in the call that hands it a piece, while the transfer's
writes are quick (``luisy_sync.io_pace``), and otherwise from a thread of its own,
which a file keeps once it started. Measured, W3 pulls (2 x 256 MiB) through the 20 ms
proxy, interleaved pairs, client CPU median: every write on a thread 0.765 s, inline
0.631 s; then streamed reads keep nothing (``keep_limit`` 0; ~3/4 of the bytes arrive
before their turn) and early pieces are read back, not mapped: 0.605 / 0.560 s (time
1.00 / 0.96 s; 4.5k page faults, not 14.6k). Kept chunks make the pool's whole 16 MiB a
file's working set, out of cache by the time a chunk is reused, and mapping and
unmapping the page cache cost more than copying it into a buffer in cache.

The price is time on the loop: when the read a file's hash waits for ends, the ranges
read meanwhile are read back and hashed in that call (~16 ms per 64 MiB range; in 3 W3
pulls, 380 MiB of 512 read back in 0.077 s, the longest call 17-89 ms).

``ChunkPool`` and ``RangeSink`` stream one ranged read into the writer (the
``BodySink`` of ``Store.get_stream``): the body lands in pool chunks straight from the
socket, each full chunk goes to the writer and comes back to the pool once written.
When the pool is empty, the read pauses (TCP holds the server back), so a download's
memory is its pool, whatever the number and size of its ranges.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import Callable

from luisy_sync.blockio import BytesLike, read_into, write_at
from luisy_sync.budget import BufferPool
from luisy_sync.errors import IntegrityError, ShortReadError
from luisy_sync.hashing import new_hasher
from luisy_sync.io_pace import IOPace

__all__ = ["ChunkPool", "OrderedWriter", "RangeSink"]

_Piece = tuple[BytesLike, int, Callable[[], None] | None, int]
_STOP = None

REREAD_BUFFER = 256 * 1024
"""Size of the buffer early pieces are read back into for the hash (stays in cache)."""


class OrderedWriter:
    """Writes pieces of one file at their offsets and hashes the file in offset order, on
    the event loop while ``pace`` says writes are quick, else from a thread of its own
    (see the module docstring). Use on one event loop; ``close`` must be awaited before
    the file descriptor is closed."""

    def __init__(self, fd: int, keep_limit: int = 0, pace: IOPace | None = None):
        self._fd = fd
        self._keep_limit = keep_limit
        self._loop = asyncio.get_running_loop()
        self._queue: queue.SimpleQueue[_Piece | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pace = pace or IOPace()
        self._hasher = new_hasher()
        self._next = 0
        self._early: dict[int, tuple[int, BytesLike | None, Callable[[], None] | None, int]] = {}
        self._kept = 0
        self._reread: memoryview | None = None
        self._ended: asyncio.Future[None] = self._loop.create_future()
        self.error: BaseException | None = None
        """The first error a write or a re-read met (later pieces are dropped, not written)."""

    @property
    def threaded(self) -> bool:
        """True once slow writes moved the file's pieces to a thread."""
        return self._thread is not None

    def submit(self, data: BytesLike, offset: int, done: Callable[[], None] | None = None,
               cost: int | None = None) -> None:
        """Write ``data`` at ``offset`` now, or queue it for the thread. The caller leaves
        ``data`` alone until ``done`` runs (soon after, on the event loop, once it was
        written, or once a kept piece was hashed). ``cost``: the memory keeping it would
        hold (default ``len(data)``; a chunk's size)."""
        piece = (data, offset, done, len(data) if cost is None else cost)
        if self._thread is None and not self._pace.quick:
            self._thread = threading.Thread(target=self._run, name="luisy-sync-writer", daemon=True)
            self._thread.start()
        if self._thread is not None:
            self._queue.put(piece)
            return
        finished: list[Callable[[], None]] = []
        self._handle(piece, finished)
        if finished:  # not from inside the caller: a buffer handed back may wake another read
            self._loop.call_soon(self._settle, finished, False)

    async def close(self) -> None:
        """Wait until every piece was handled (and the thread, if one started, ended)."""
        if self._ended.done():
            return
        if self._thread is None:  # after the hand-backs already scheduled
            finished: list[Callable[[], None]] = []
            self._drop_kept(finished)
            self._loop.call_soon(self._settle, finished, True)
        else:
            self._queue.put(_STOP)
        await asyncio.shield(self._ended)

    def hexdigest(self, size: int) -> str:
        """The digest of the first ``size`` bytes (all pieces written and ``close`` awaited)."""
        if self._next != size:
            raise RuntimeError(f"hashed {self._next} of {size} bytes: a piece was not written")
        return self._hasher.hexdigest()

    # -- the thread, and the writing and hashing it shares with the inline path --------

    def _run(self) -> None:
        stop = False
        while not stop:
            piece = self._queue.get()
            finished: list[Callable[[], None]] = []
            while True:  # every piece queued by now, then one call back to the loop
                if piece is _STOP:
                    stop = True
                else:
                    self._handle(piece, finished)
                if self._queue.empty():
                    break
                piece = self._queue.get()
            if stop:
                self._drop_kept(finished)
            self._call_back(finished, end=stop)

    def _handle(self, piece: _Piece, finished: list[Callable[[], None]]) -> None:
        """Write one piece (its time counted in the pace) and hash what is then contiguous."""
        data, offset, done, cost = piece
        if self.error is None:
            try:
                self._pace.timed(write_at, self._fd, data, offset, nbytes=len(data))
                keep = self._hash(data, offset, done, cost, finished)
            except BaseException as exc:  # noqa: BLE001 - reported through .error
                self.error = exc
                keep = False
            if keep:
                return
        if done is not None:
            finished.append(done)

    def _hash(self, data: BytesLike, offset: int, done: Callable[[], None] | None, cost: int,
              finished: list[Callable[[], None]]) -> bool:
        """Hash what is now contiguous; True when ``data`` is kept for later."""
        length = len(data)
        if offset != self._next:
            keep = self._kept + cost <= self._keep_limit
            self._early[offset] = (length, data, done, cost) if keep else (length, None, None, 0)
            self._kept += cost if keep else 0
            return keep
        self._hasher.update(data)
        self._next += length
        while self._next in self._early:
            length, kept, kept_done, kept_cost = self._early.pop(self._next)
            if kept is not None:
                self._hasher.update(kept)
                self._kept -= kept_cost
                if kept_done is not None:
                    finished.append(kept_done)
            else:
                self._hash_from_file(length)
            self._next += length
        return False

    def _hash_from_file(self, length: int) -> None:
        """Hash the ``length`` bytes at the hashed prefix's end, read back from the file."""
        if self._reread is None:
            self._reread = memoryview(bytearray(REREAD_BUFFER))
        offset, end = self._next, self._next + length
        while offset < end:
            view = self._reread[:min(len(self._reread), end - offset)]
            if read_into(self._fd, view, offset) < len(view):
                raise _short_reread(length, self._next)
            self._hasher.update(view)
            offset += len(view)

    def _drop_kept(self, finished: list[Callable[[], None]]) -> None:
        """At the end: hand back the buffers of early pieces whose turn never came."""
        for _, _, done, _ in self._early.values():
            if done is not None:
                finished.append(done)
        self._early.clear()
        self._kept = 0

    def _call_back(self, finished: list[Callable[[], None]], end: bool) -> None:
        if not finished and not end:
            return
        try:
            self._loop.call_soon_threadsafe(self._settle, finished, end)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass

    def _settle(self, finished: list[Callable[[], None]], end: bool) -> None:
        try:
            for done in finished:
                done()
        finally:
            if end and not self._ended.done():
                self._ended.set_result(None)


def _short_reread(length: int, offset: int) -> ShortReadError:
    return ShortReadError(f"re-reading {length} bytes at {offset} of a download: "
                          "the temp file is shorter than what was written")


class ChunkPool:
    """Up to ``count`` reusable buffers of ``size`` bytes, made as they are first needed
    (taken from ``source`` when given, so the files of a transfer share their chunks:
    a fresh buffer costs a page fault per 4 KiB, about 7 ms of CPU per 16 MiB)."""

    def __init__(self, count: int, size: int, source: BufferPool | None = None):
        self.size = size
        self._left = max(1, count)
        self._source = source
        self._free: list[bytearray] = []
        self._waiting: dict[Callable[[], None], None] = {}  # wake-ups in arrival order, once each

    def take(self, wake: Callable[[], None]) -> bytearray | None:
        """A free chunk, or None (then ``wake()`` is called once one was given back)."""
        if self._free:
            return self._free.pop()
        if self._left:
            self._left -= 1
            return bytearray(self.size) if self._source is None else self._source.take(self.size)
        self._waiting[wake] = None
        return None

    def close(self) -> None:
        """Hand the free chunks back to ``source`` (the pool is done with)."""
        free, self._free = self._free, []
        if self._source is not None:
            for chunk in free:
                self._source.give(chunk)

    def give(self, chunk: bytearray) -> None:
        """Hand a chunk back (and wake the reader that waited longest)."""
        self._free.append(chunk)
        if self._waiting:
            wake = next(iter(self._waiting))
            del self._waiting[wake]
            wake()


class RangeSink:
    """The ``BodySink`` of one range ``[offset, offset + length)`` of a download: bytes go
    into pool chunks, and each full chunk (or the range's last bytes) to the writer.
    ``committed`` bytes were handed to the writer; a read that failed midway is resumed
    from there after ``restart``."""

    def __init__(self, writer: OrderedWriter, pool: ChunkPool, offset: int, length: int, what: str):
        self._writer, self._pool = writer, pool
        self.offset, self.length, self._what = offset, length, what
        self.committed = 0
        self._chunk: bytearray | None = None
        self._fill = 0
        self._limit = 0

    def restart(self) -> None:
        """Drop bytes not yet handed to the writer (a read failed after them)."""
        if self._chunk is not None:
            self._pool.give(self._chunk)
            self._chunk = None

    def start(self, length: int) -> None:
        want = self.length - self.committed
        if length < want:
            raise ShortReadError(f"{self._what}: read {length} of {want} bytes")
        if length > want:
            raise IntegrityError(f"{self._what}: range is {length} bytes, expected {want}; "
                                 "it changed since it was listed, pull again")

    def buffer(self, wake: Callable[[], None]) -> memoryview | None:
        if self._chunk is None:
            chunk = self._pool.take(wake)
            if chunk is None:
                return None
            self._chunk, self._fill = chunk, 0
            self._limit = min(len(chunk), self.length - self.committed)
        return memoryview(self._chunk)[self._fill:self._limit]

    def received(self, nbytes: int) -> None:
        self._fill += nbytes
        chunk = self._chunk
        if chunk is None or self._fill < self._limit:
            return
        self._chunk = None
        pool = self._pool
        self._writer.submit(memoryview(chunk)[:self._fill], self.offset + self.committed,
                            lambda: pool.give(chunk), cost=len(chunk))
        self.committed += self._fill

    def check_complete(self) -> None:
        """Raise when the read ended before the whole range was handed on."""
        if self.committed != self.length:
            raise ShortReadError(f"{self._what}: read {self.committed} of {self.length} bytes")

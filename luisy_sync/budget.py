"""A byte budget: bounds the bytes a transfer holds in memory, independent of its request count.

``ByteBudget(limit)`` hands out byte amounts first come, first served: ``async with
budget.hold(n)`` waits until ``n`` more bytes fit below ``limit``. A single amount
larger than the limit is clipped to it (it then waits until nothing else is held),
so every request can proceed. Waiters are served in arrival order, so one large
block is never starved by a stream of small ones.

``BufferPool`` recycles the block buffers that budget pays for: a fresh multi-MiB
buffer costs the kernel a page fault and a zeroed page per 4 KiB (about as much CPU as
receiving the bytes), a recycled one nothing.
"""

from __future__ import annotations

import contextlib
from collections import deque
from typing import AsyncIterator

import anyio


class ByteBudget:
    """At most ``limit`` bytes held at once (see the module docstring)."""

    def __init__(self, limit: int):
        if limit < 1:
            raise ValueError(f"the byte budget must be positive, got {limit}")
        self.limit = limit
        self.held = 0
        self.peak = 0
        self._waiters: deque[tuple[int, anyio.Event]] = deque()

    async def acquire(self, nbytes: int) -> int:
        """Wait until ``nbytes`` (clipped to the limit) fit; returns the amount to release."""
        got = self.try_acquire(nbytes)
        if got is not None:
            return got
        amount = min(max(nbytes, 0), self.limit)
        waiter = (amount, anyio.Event())
        self._waiters.append(waiter)
        try:
            await waiter[1].wait()
        except BaseException:
            if waiter[1].is_set():  # granted just as we were cancelled: give it back
                self.release(amount)
            else:
                self._waiters.remove(waiter)
                self._wake()
            raise
        return amount

    def try_acquire(self, nbytes: int) -> int | None:
        """``acquire`` without the wait: the amount to release, or None when ``nbytes``
        do not fit now (or others wait before)."""
        amount = min(max(nbytes, 0), self.limit)
        if self._waiters or self.held + amount > self.limit:
            return None
        self._take(amount)
        return amount

    def release(self, amount: int) -> None:
        """Give back an amount returned by ``acquire``."""
        self.held -= amount
        self._wake()

    @contextlib.asynccontextmanager
    async def hold(self, nbytes: int) -> AsyncIterator[None]:
        """Hold ``nbytes`` of the budget for the body of the ``async with``."""
        amount = await self.acquire(nbytes)
        try:
            yield
        finally:
            self.release(amount)

    def _take(self, amount: int) -> None:
        self.held += amount
        if self.held > self.peak:
            self.peak = self.held

    def _wake(self) -> None:
        while self._waiters and self.held + self._waiters[0][0] <= self.limit:
            amount, event = self._waiters.popleft()
            self._take(amount)
            event.set()


BUFFER_UNIT = 2 ** 20
"""Buffers taken by a size above this come in whole multiples of it (``take_at_least``)."""
BUFFER_MIN = 4096
"""The smallest buffer ``take_at_least`` gives; up to ``BUFFER_UNIT`` they are powers of two."""


class BufferPool:
    """Reusable ``bytearray`` blocks: ``take(size)`` returns a kept one of exactly that size
    (or a new one), ``give(buf)`` keeps it for the next ``take`` while the kept ones stay
    within ``keep_bytes``. The caller owns a taken buffer until it gives it back."""

    def __init__(self, keep_bytes: int):
        self.keep_bytes = keep_bytes
        self._kept = 0
        self._free: dict[int, list[bytearray]] = {}

    def take(self, size: int) -> bytearray:
        free = self._free.get(size)
        if free:
            self._kept -= size
            return free.pop()
        return bytearray(size)

    def take_at_least(self, size: int) -> bytearray:
        """``take`` of ``size`` rounded up (to a power of two up to ``BUFFER_UNIT``, to
        whole units above), so that small files and bodies of similar sizes share a few
        buffers instead of touching fresh memory, a page fault per 4 KiB (200 x 1 MiB
        read into new bytes took 0.045-0.059 s of CPU, into reused buffers 0.03 s)."""
        if size <= BUFFER_UNIT:
            return self.take(max(BUFFER_MIN, 1 << (size - 1).bit_length()))
        return self.take(-(-size // BUFFER_UNIT) * BUFFER_UNIT)

    def give(self, buf: bytearray) -> None:
        if self._kept + len(buf) <= self.keep_bytes:
            self._free.setdefault(len(buf), []).append(buf)
            self._kept += len(buf)

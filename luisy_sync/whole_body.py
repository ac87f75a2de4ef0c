"""Receiving one whole object: its length checked against the listing, its bytes in a
pooled buffer.

``size_error`` / ``check_size`` tell a short read (retryable) from an object that grew
since it was listed; ``WholeBody`` is the ``BodySink`` a whole read from a store with
``get_stream`` lands in, so small downloads reuse the transfer's buffers instead of a
fresh, zero-filled body each.
"""

from __future__ import annotations

from typing import Callable, TypeVar

from luisy_sync.blockio import BytesLike
from luisy_sync.budget import BufferPool
from luisy_sync.errors import IntegrityError, ShortReadError
from luisy_sync.stores.base import Store

BytesT = TypeVar("BytesT", bound=BytesLike)


def size_error(path: str, name: str, got: int, expected: int, ranged: bool) -> IntegrityError | None:
    """The error for ``got`` bytes read of ``name`` (a range of it when ``ranged``) where
    ``expected`` were listed, or None when they agree."""
    if got < expected:
        return ShortReadError(f"{path}: read {got} of {expected} bytes from {name}")
    if got > expected:
        what = "range" if ranged else "object"
        return IntegrityError(f"{path}: {what} of {name} is {got} bytes, expected {expected}; "
                              f"it changed since it was listed, pull again")
    return None


def check_size(path: str, name: str, data: BytesT, expected: int, ranged: bool) -> BytesT:
    """``data`` itself when it is ``expected`` bytes long; else raises ``size_error``'s error."""
    error = size_error(path, name, len(data), expected, ranged)
    if error is not None:
        raise error
    return data


class WholeBody:
    """A ``BodySink`` for the whole object ``name`` of the listed ``size``, received into a
    buffer of ``pool`` taken when its head arrived (as a fresh body would be) and kept for
    the retries until ``release``; a body of another length is refused as ``check_size``
    would."""

    __slots__ = ("pool", "memory", "view", "got", "size", "path", "name")

    def __init__(self, pool: BufferPool, size: int, path: str, name: str):
        self.pool = pool
        self.memory: bytearray | None = None
        self.view = memoryview(b"")
        self.got, self.size = 0, size
        self.path, self.name = path, name

    def start(self, length: int) -> None:
        error = size_error(self.path, self.name, length, self.size, ranged=False)
        if error is not None:
            raise error
        if self.memory is None:
            self.memory = self.pool.take_at_least(self.size)
            self.view = memoryview(self.memory)[:self.size]
        self.got = 0

    def buffer(self, wake: Callable[[], None]) -> memoryview:
        return self.view[self.got:]

    def received(self, nbytes: int) -> None:
        self.got += nbytes

    async def read(self, store: Store) -> BytesLike:
        """One read of the object: streamed into the buffer by a store with
        ``get_stream``, else the bytes ``get`` returns."""
        get_stream = getattr(store, "get_stream", None)
        data: BytesLike
        if get_stream is None:
            data = (await store.get(self.name)).data
        else:
            await get_stream(self.name, 0, None, self)
            data = self.view[:self.got]
        return check_size(self.path, self.name, data, self.size, ranged=False)

    def release(self) -> None:
        """Give the buffer back (the bytes read are then gone)."""
        memory, self.memory, self.view = self.memory, None, memoryview(b"")
        if memory is not None:
            self.pool.give(memory)

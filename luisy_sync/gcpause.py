"""Fewer full garbage collections while a sync runs.

A push or pull of many files builds hundreds of thousands of long-lived container
objects (trees, listings, manifest entries) in a few seconds. CPython runs a full
(generation 2) collection each time the long-lived heap grew by a quarter, and every
one walks the whole heap, without freeing anything: on a no-op push of 100k files
those walks were about a fifth of the process's CPU. ``fewer_full_collections()``
raises the generation-2 threshold while at least one sync runs in the process and puts
the caller's thresholds back when the last one ends; the young generations are
collected as before, so short-lived reference cycles still go right away.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import threading
from typing import Awaitable, Callable, Iterator, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

FULL_COLLECTION_EVERY = 1000
"""Generation-1 collections between two full collections during a sync (CPython's default: 10)."""

_lock = threading.Lock()
_active = 0
_saved: tuple[int, int, int] | None = None
_ours: tuple[int, int, int] | None = None


@contextlib.contextmanager
def fewer_full_collections() -> Iterator[None]:
    """Raise the generation-2 GC threshold for the duration (reentrant, thread-safe)."""
    global _active, _saved, _ours
    with _lock:
        if _active == 0:
            _saved = gc.get_threshold()
            gen0, gen1, gen2 = _saved
            _ours = (gen0, gen1, max(gen2, FULL_COLLECTION_EVERY))
            gc.set_threshold(*_ours)
        _active += 1
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0:
                if _saved is not None and gc.get_threshold() == _ours:  # unless changed meanwhile
                    gc.set_threshold(*_saved)
                _saved = _ours = None


def with_fewer_full_collections(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Decorate an async function to run under ``fewer_full_collections()``."""
    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        with fewer_full_collections():
            return await fn(*args, **kwargs)

    return wrapper

"""IO pace: whether the local file reads or writes of a transfer are quick enough to make
on the event loop.

Bytes received on the loop are cheapest to write right there, in the call that received
them: they are still in the core's cache, the buffer goes back to the pool in cache to
take the next read, and no thread is woken. The same holds for small files read to be
sent. Measured through the 20 ms proxy (tmpfs, page cache), 6-10 interleaved pairs,
client CPU median (time median), in a thread against inline:

- pull W3, 2 x 256 MiB: 0.765 s (1.17 s) against 0.631 s (1.02 s);
- pull W2, 200 x 1 MiB, a batch's files written in one call: 0.356 s (0.79 s) against
  0.326 s (0.72 s); pull W1, 1000 x 64 KiB: 0.784 s (2.08 s) against 0.695 s (1.92 s);
- push W1, a batch's files read in one call: 0.664 s (2.42 s) against 0.611 s (2.34 s);
  push W2: 0.443 s (1.66 s) against 0.407 s (1.61 s).

(The blocks of large files are still read in threads: read inline, 8 MiB at a time,
a W3 push took 3.52 s against 3.13 s, for 3% less CPU.)

But a disk that throttles its writers, a cold disk or a slow network file system would
hold the loop, and every other request of the transfer with it. ``IOPace`` keeps a
running average of the calls' seconds per MiB (1/8 weight to the latest; a call on
less than 1 MiB counts as one MiB). While it stays under ``SLOW_IO`` calls run inline;
above, they go to threads, where their times still count, so IO comes back to the loop
once the disk is quick again.
"""

from __future__ import annotations

import time
from typing import Callable, TypeVar

__all__ = ["SLOW_IO", "IOPace"]

T = TypeVar("T")

SLOW_IO = 0.01
"""Seconds per MiB, on the running average, from which file IO leaves the loop: a disk
slower than ~100 MiB/s on end, or one call blocked for 80 ms or more. (A page cache
with room takes 1 MiB in ~0.5 ms; in 8 W3 pulls to tmpfs through the 20 ms proxy the
longest writes took 10-20 ms, one 73 ms, when the process was preempted or the kernel
reclaimed pages mid-write.)"""
_MIB = 1 << 20


class IOPace:
    """The running average of how long file IO calls took per MiB (see the module
    docstring). Safe to feed from threads (a lost update only skews the average a little)."""

    def __init__(self) -> None:
        self.per_mib = 0.0

    @property
    def quick(self) -> bool:
        """Whether the next call may run on the event loop."""
        return self.per_mib < SLOW_IO

    def record(self, seconds: float, nbytes: int) -> None:
        """Count a call on ``nbytes`` that took ``seconds``."""
        self.per_mib += (seconds * _MIB / max(nbytes, _MIB) - self.per_mib) / 8

    def timed(self, fn: Callable[..., T], *args: object, nbytes: int) -> T:
        """``fn(*args)``, a call on ``nbytes``, counted (also when it raises)."""
        started = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.record(time.perf_counter() - started, nbytes)

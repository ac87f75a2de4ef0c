"""IO pace (luisy_sync.io_pace): local file IO on the event loop while quick, in threads once slow."""

from __future__ import annotations

import threading

import pytest

from luisy_sync.io_pace import IOPace
from luisy_sync.transfer import Transfer


def test_io_pace_turns_slow_on_a_blocked_call_and_comes_back() -> None:
    pace = IOPace()
    for _ in range(20):
        pace.record(0.0005, 1 << 20)  # a page cache: 0.5 ms per MiB
    assert pace.quick
    pace.record(0.03, 64 * 1024)  # one small write preempted for 30 ms: still quick
    assert pace.quick
    pace.record(0.1, 1 << 20)  # blocked for 100 ms: slow
    assert not pace.quick
    for _ in range(20):  # quick again (the calls were timed in threads meanwhile)
        pace.record(0.0005, 1 << 20)
    assert pace.quick


@pytest.mark.parametrize("kind", ["read", "write"])
async def test_transfer_runs_file_io_on_the_loop_while_quick_and_in_a_thread_once_slow(kind: str) -> None:
    moving = Transfer()
    run, pace = getattr(moving, kind), getattr(moving, f"{kind}_pace")
    loop_thread = threading.get_ident()
    assert await run(threading.get_ident, nbytes=100) == loop_thread
    pace.record(1.0, 1 << 20)
    slow = pace.per_mib
    assert await run(threading.get_ident, nbytes=100) != loop_thread
    assert pace.per_mib < slow  # the call in the thread was counted too
    with pytest.raises(OSError, match="disk full"):  # a failed call raises where it was awaited
        await run(_fails, nbytes=100)
    other = "write" if kind == "read" else "read"
    assert getattr(moving, f"{other}_pace").per_mib < 0.001  # reads and writes are paced apart


def _fails() -> None:
    raise OSError("disk full")


async def test_writes_with_fsync_always_go_to_a_thread() -> None:
    moving = Transfer(fsync=True)
    assert await moving.write(threading.get_ident, nbytes=100) != threading.get_ident()
    assert await moving.read(threading.get_ident, nbytes=100) == threading.get_ident()

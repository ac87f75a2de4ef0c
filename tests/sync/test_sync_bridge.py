"""bridge: blocking callers running coroutines on a loop in a daemon thread."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading

import anyio
import pytest

from luisy_sync.bridge import SyncBridge, get_bridge, run_sync


async def add(x: int, y: int = 0) -> int:
    await anyio.sleep(0.001)
    return x + y


async def loop_thread_name() -> str:
    return threading.current_thread().name


class Boom(Exception):
    pass


async def explode() -> None:
    await anyio.sleep(0)
    raise Boom("kaboom")


@pytest.fixture
def bridge():
    b = SyncBridge(name="test-bridge")
    yield b
    b.close()


def bridge_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "test-bridge" and t.is_alive()]


def test_run_from_a_plain_thread(bridge) -> None:
    assert bridge.run(add, 2, y=3) == 5
    assert bridge.run(loop_thread_name) == "test-bridge"
    assert bridge.run(lambda: 7) == 7  # plain callables run on the loop thread too


def test_run_from_inside_a_running_asyncio_loop(bridge) -> None:
    async def main() -> int:
        return bridge.run(add, 1, y=1)

    assert asyncio.run(main()) == 2


def test_concurrent_callers_from_many_threads(bridge) -> None:
    results: dict[int, int] = {}
    barrier = threading.Barrier(8)

    def worker(i: int) -> None:
        barrier.wait()
        results[i] = sum(bridge.run(add, i, y=k) for k in range(20))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert results == {i: 20 * i + 190 for i in range(8)}
    assert len(bridge_threads()) == 1


def test_exceptions_propagate_with_their_type(bridge) -> None:
    with pytest.raises(Boom, match="kaboom"):
        bridge.run(explode)
    assert bridge.run(add, 1) == 1  # the loop survives


def test_calling_run_from_the_bridge_loop_is_refused(bridge) -> None:
    async def reenter() -> None:
        bridge.run(add, 1)

    with pytest.raises(RuntimeError, match="inside the bridge loop"):
        bridge.run(reenter)


def test_close_stops_the_loop_and_a_later_run_starts_a_new_one(bridge) -> None:
    bridge.run(add, 1)
    first = bridge.loop_generation
    assert bridge.running and len(bridge_threads()) == 1
    bridge.close()
    assert not bridge.running and bridge_threads() == []
    bridge.close()  # idempotent
    assert bridge.run(add, 2) == 2
    assert bridge.loop_generation != first


class Resource:
    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.closed = False

    async def close(self) -> None:
        self.closed = True


def test_resources_live_on_the_bridge_loop_per_generation(bridge) -> None:
    async def make() -> Resource:
        return Resource()

    res = bridge.resource("r", make)
    assert bridge.resource("r", make) is res
    assert bridge.run(asyncio.get_running_loop) is res.loop
    bridge.close()
    assert res.closed
    again = bridge.resource("r", make)
    assert again is not res and not again.closed


def test_get_bridge_is_process_wide_and_run_sync_uses_it() -> None:
    assert get_bridge() is get_bridge()
    assert run_sync(add, 4, y=4) == 8
    assert get_bridge().running


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_gets_a_fresh_loop() -> None:
    parent = get_bridge()
    parent.run(add, 1)
    parent_gen = parent.loop_generation
    pid = os.fork()
    if pid == 0:  # child: exit with a code, never return into pytest
        code = 1
        signal.alarm(20)  # a child stuck on the parent's loop dies instead of hanging
        try:
            child = get_bridge()
            ok = (child is not parent and not parent.running
                  and child.run(add, 20, y=22) == 42
                  and child.loop_generation not in (0, parent_gen))
            code = 0 if ok else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert parent.run(add, 5) == 5 and parent.loop_generation == parent_gen


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_an_old_reference_in_a_forked_child_restarts_its_own_loop(bridge) -> None:
    bridge.run(add, 1)
    pid = os.fork()
    if pid == 0:
        code = 1
        signal.alarm(20)
        try:
            code = 0 if bridge.run(add, 3) == 3 and len(bridge_threads()) == 1 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_process_exits_cleanly_with_a_live_bridge(tmp_path) -> None:
    code = ("import anyio\nfrom luisy_sync.bridge import run_sync\n"
            "async def f():\n    await anyio.sleep(0)\n    return 3\n"
            "assert run_sync(f) == 3\nprint('done')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout.strip() == "done", out.stderr

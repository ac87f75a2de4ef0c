"""luisy_sync.concurrently: side-by-side calls whose errors come out as they are, not in groups."""

from __future__ import annotations

import anyio
import pytest
from anyio.abc import TaskGroup

from luisy_sync.concurrently import both, with_tasks


async def test_both_returns_both_results_in_order() -> None:
    async def slow() -> str:
        await anyio.sleep(0.01)
        return "first"

    async def fast() -> int:
        return 2

    assert await both(slow, fast) == ("first", 2)


async def test_an_error_cancels_the_other_call_and_comes_out_ungrouped() -> None:
    cancelled: list[bool] = []

    async def fails() -> None:
        raise KeyError("broken")

    async def waits() -> None:
        try:
            await anyio.sleep(10)
        except anyio.get_cancelled_exc_class():
            cancelled.append(True)
            raise

    with anyio.fail_after(5), pytest.raises(KeyError, match="broken"):
        await both(waits, fails)
    assert cancelled == [True]


async def test_without_cancel_both_run_to_their_end_and_the_first_callers_error_wins() -> None:
    ended: list[str] = []

    async def first() -> None:
        await anyio.sleep(0.02)
        ended.append("first")
        raise ValueError("first failed")

    async def second() -> None:
        ended.append("second")
        raise KeyError("second failed")

    with pytest.raises(ValueError, match="first failed"):
        await both(first, second, cancel=False)
    assert ended == ["second", "first"]


async def test_with_tasks_waits_for_background_tasks_and_cancels_them_on_an_error() -> None:
    seen: list[str] = []

    async def background(label: str, delay: float) -> None:
        try:
            await anyio.sleep(delay)
            seen.append(label)
        except anyio.get_cancelled_exc_class():
            seen.append(f"{label} cancelled")
            raise

    async def body(tasks: TaskGroup) -> int:
        tasks.start_soon(background, "done", 0.01)
        return 7

    assert await with_tasks(body) == 7 and seen == ["done"]

    async def failing(tasks: TaskGroup) -> int:
        tasks.start_soon(background, "slow", 10)
        await anyio.sleep(0.01)
        raise OSError("body failed")

    seen.clear()
    with anyio.fail_after(5), pytest.raises(OSError, match="body failed"):
        await with_tasks(failing)
    assert seen == ["slow cancelled"]


async def test_without_overlap_the_calls_run_one_after_the_other_and_an_error_stops_there() -> None:
    seen: list[str] = []

    async def first() -> str:
        seen.append("first begins")
        await anyio.sleep(0.01)
        seen.append("first ends")
        return "one"

    async def second() -> str:
        seen.append("second begins")
        return "two"

    assert await both(first, second, overlap=False) == ("one", "two")
    assert seen == ["first begins", "first ends", "second begins"]

    async def fails() -> str:
        raise KeyError("broken")

    seen.clear()
    with pytest.raises(KeyError, match="broken"):
        await both(fails, second, overlap=False)
    assert seen == []

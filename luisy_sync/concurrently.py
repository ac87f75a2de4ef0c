"""Run coroutines side by side and raise their errors as they are, not in exception groups.

anyio wraps an error of a task-group child (and one of the host) in an ExceptionGroup;
push and pull report one clear error, so these helpers collect the children's errors
themselves and raise the first. ``both`` runs two calls at once; ``with_tasks`` runs one
body that starts background tasks beside it.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Sequence, TypeVar

import anyio
from anyio.abc import TaskGroup

__all__ = ["both", "with_tasks"]

A = TypeVar("A")
B = TypeVar("B")


async def _run_ungrouped(bodies: Sequence[Callable[[TaskGroup], Awaitable[Any]]], *,
                         cancel: bool = True) -> list[Any]:
    """``body(tasks)`` for each body at the same time, in one task group ``tasks`` (a body may
    start background tasks in it; they must not raise). An error of a body cancels the
    group (unless not ``cancel``: then every body runs to its end) and is raised as it is:
    the error of the first body in ``bodies`` that failed, so a failure reads the same
    however the bodies interleaved."""
    results: dict[int, Any] = {}
    errors: dict[int, Exception] = {}

    async def run(key: int, body: Callable[[TaskGroup], Awaitable[Any]], tasks: TaskGroup) -> None:
        try:
            results[key] = await body(tasks)
        except Exception as exc:
            errors[key] = exc
            if cancel:
                tasks.cancel_scope.cancel()

    async with anyio.create_task_group() as tasks:
        for key, body in enumerate(bodies):
            tasks.start_soon(run, key, body, tasks)
    if errors:
        raise errors[min(errors)]
    return [results[key] for key in range(len(bodies))]


async def both(first: Callable[[], Awaitable[A]], second: Callable[[], Awaitable[B]], *,
               cancel: bool = True, overlap: bool = True) -> tuple[A, B]:
    """Run ``first()`` and ``second()`` concurrently; an error of either cancels the other
    (unless not ``cancel``: then both run to their end) and is raised as it is (the first
    one's error when both fail). ``overlap=False``: ``first()``, then ``second()`` (its
    error raised as it is, ``second`` then not run): for two sides that each keep the
    interpreter busy, where overlapping them only hands its lock back and forth."""
    if not overlap:
        one = await first()
        return one, await second()
    one, two = await _run_ungrouped([lambda _: first(), lambda _: second()], cancel=cancel)
    return one, two


async def with_tasks(body: Callable[[TaskGroup], Awaitable[A]]) -> A:
    """``body(tasks)``, with a task group for background tasks it starts (they must not
    raise); an error of ``body`` cancels them and is raised as it is."""
    results: list[A] = await _run_ungrouped([body])
    return results[0]

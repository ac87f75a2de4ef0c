"""Helpers to test luisy pipelines end to end, with task outputs held in memory."""

from __future__ import annotations

import contextlib
import copy
import unittest
from collections.abc import Iterable, Iterator
from typing import Any

import luigi
from luigi.execution_summary import LuigiStatusCode, _summary_dict

__all__ = ["LuisyTestCase", "debug_run", "MemoryTarget", "memory_outputs"]

_SUCCEEDED = (LuigiStatusCode.SUCCESS, LuigiStatusCode.SUCCESS_WITH_RETRY)


def debug_run(tasks: luigi.Task | Iterable[luigi.Task], return_summary: bool = True) -> Any:
    """Run ``tasks`` in-process with luigi's local scheduler (no hashing, no CLI).

    Returns luigi's summary dict (``completed``, ``failed``, ``already_done``, ...)
    or, with ``return_summary=False``, the ``LuigiRunResult``.
    """
    task_list = [tasks] if isinstance(tasks, luigi.Task) else list(tasks)
    result = luigi.build(task_list, detailed_summary=True, local_scheduler=True)
    return _summary_dict(result.worker) if return_summary else result


class MemoryTarget:
    """A target whose content lives in a dict keyed by task."""

    def __init__(self, task: luigi.Task, store: dict[luigi.Task, Any]) -> None:
        self.task = task
        self.store = store
        self.path = f"memory://{task.task_id}"

    def exists(self) -> bool:
        return self.task in self.store

    def read(self) -> Any:
        return copy.deepcopy(self.store[self.task])

    def write(self, obj: Any) -> None:
        self.store[self.task] = obj

    def remove(self) -> None:
        self.store.pop(self.task, None)

    def make_dir(self, path: str) -> None:
        """Nothing to create in memory."""


@contextlib.contextmanager
def memory_outputs(root: luigi.Task, store: dict[luigi.Task, Any]) -> Iterator[None]:
    """Within the block, every task of ``root``'s graph reads and writes ``store``."""
    tasks = build_graph_tasks(root)
    patched = []
    try:
        for task in tasks:
            if isinstance(task, luigi.WrapperTask):
                continue
            target = MemoryTarget(task, store)
            task.output = lambda _t=target: _t  # instance attribute shadows the method
            patched.append(task)
        yield
    finally:
        for task in patched:
            del task.output


def build_graph_tasks(root: luigi.Task) -> list[luigi.Task]:
    """All tasks reachable from ``root`` (no working dir needed)."""
    seen: dict[luigi.Task, None] = {}
    stack = [root]
    while stack:
        task = stack.pop()
        if task in seen:
            continue
        seen[task] = None
        stack.extend(luigi.task.flatten(task.requires()))
    return list(seen)


class LuisyTestCase(unittest.TestCase):
    """Test case that runs pipelines against in-memory outputs.

    ``existing_outputs`` is a list of ``(task, object)`` pairs: those tasks count as
    complete and their ``read()`` returns the object.
    """

    def _run_pipeline(self, task: luigi.Task, existing_outputs: Any = None) -> tuple[Any, dict]:
        store = {t: obj for t, obj in (existing_outputs or [])}
        with memory_outputs(task, store):
            result = debug_run([task], return_summary=False)
        return result, store

    def run_pipeline(self, task: luigi.Task, existing_outputs: Any = None,
                     return_store: bool = False) -> Any:
        """Run ``task``; return its output (or, with ``return_store``, all outputs by task)."""
        result, store = self._run_pipeline(task, existing_outputs)
        if result.status not in _SUCCEEDED:
            self.fail(f"pipeline did not succeed: {_summary_dict(result.worker)}")
        return store if return_store else store[task]

    def get_execution_summary(self, task: luigi.Task, existing_outputs: Any = None) -> dict:
        """luigi's summary dict of the run (``completed``, ``failed``, ...)."""
        result, _ = self._run_pipeline(task, existing_outputs)
        return _summary_dict(result.worker)

    def assertSuccess(self, task: luigi.Task, existing_outputs: Any = None) -> None:
        """Run ``task`` in memory; fail the test unless the run succeeded."""
        result, _ = self._run_pipeline(task, existing_outputs)
        self.assertIn(result.status, _SUCCEEDED)

    def assertFail(self, task: luigi.Task, existing_outputs: Any = None) -> None:
        """Run ``task`` in memory; fail the test if the run succeeded."""
        result, _ = self._run_pipeline(task, existing_outputs)
        self.assertNotIn(result.status, _SUCCEEDED)

    def assertMissing(self, task: luigi.Task, existing_outputs: Any = None) -> None:
        """Run ``task`` in memory; fail the test unless an external input was missing."""
        result, _ = self._run_pipeline(task, existing_outputs)
        self.assertEqual(result.status, LuigiStatusCode.MISSING_EXT)

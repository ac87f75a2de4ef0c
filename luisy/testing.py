"""Helpers to test luisy pipelines end to end, with task outputs held in memory
(the luisy 1.4.7 ``luisy.testing`` API).

    class TestPipeline(LuisyTestCase):
        def setUp(self):
            create_testing_config(working_dir=self.tmpdir)
        def test_final(self):
            df = self.run_pipeline(FinalTask(a=1), existing_outputs=[(RawTask(a=1), df_raw)])
"""

from __future__ import annotations

import contextlib
import copy
import os
import pickle
import tempfile
import unittest
from collections.abc import Iterable, Iterator
from typing import Any, cast
from unittest.mock import Mock, patch

import luigi
from luigi.execution_summary import LuigiStatusCode, _summary_dict

from luisy.config import Config, get_default_params
from luisy.graph import walk

__all__ = [
    "LuisyTestCase", "create_testing_config", "debug_run", "get_all_dependencies",
    "mock_target", "create_file", "DFMock", "SparkMock", "MemoryTarget", "memory_outputs",
]

_SUCCEEDED = (LuigiStatusCode.SUCCESS, LuigiStatusCode.SUCCESS_WITH_RETRY)


def debug_run(tasks: luigi.Task | Iterable[luigi.Task], return_summary: bool = True) -> Any:
    """Run ``tasks`` in-process with luigi's local scheduler (no hashing, no CLI).

    Returns luigi's summary dict (``completed``, ``failed``, ``already_done``, ...)
    or, with ``return_summary=False``, the ``LuigiRunResult``.
    """
    task_list = [tasks] if isinstance(tasks, luigi.Task) else list(tasks)
    result = luigi.build(task_list, detailed_summary=True, local_scheduler=True)
    return _summary_dict(result.worker) if return_summary else result


def get_all_dependencies(task: luigi.Task) -> set[luigi.Task]:
    """``task`` and every task upstream of it."""
    return set(walk([task]))


def create_file(file: str, val: Any) -> None:
    """Pickle ``val`` into ``file`` (a pickle-output task's file)."""
    with open(file, "wb") as fh:
        pickle.dump(val, fh)


class MemoryTarget:
    """A target whose content lives in a dict keyed by task (reads return copies)."""

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


def mock_target(task: luigi.Task, output_store: dict[luigi.Task, Any]) -> Any:
    """A patch context under which ``task.output()`` keeps its content in
    ``output_store[task]`` (present there = complete)."""
    return patch.object(task, "output", return_value=MemoryTarget(task, output_store))


@contextlib.contextmanager
def memory_outputs(root: luigi.Task, store: dict[luigi.Task, Any]) -> Iterator[None]:
    """Within the block, every task of ``root``'s graph reads and writes ``store``."""
    with contextlib.ExitStack() as stack:
        for task in get_all_dependencies(root):
            if not isinstance(task, luigi.WrapperTask):
                stack.enter_context(mock_target(task, store))
        yield


@contextlib.contextmanager
def _some_working_dir() -> Iterator[None]:
    """A throw-away working dir while none is configured (tasks may call get_outdir())."""
    try:
        Config().working_dir
    except ValueError:
        with tempfile.TemporaryDirectory(prefix="luisy-test-") as tmp:
            Config().set_param("working_dir", tmp)
            try:
                yield
            finally:
                Config().unset_param("working_dir")
        return
    yield


class LuisyTestCase(unittest.TestCase):
    """Test case that runs pipelines against in-memory outputs.

    ``existing_outputs`` is a list of ``(task, object)`` pairs: those tasks count as
    complete and their ``read()`` returns the object.
    """

    def _run_pipeline(self, task: luigi.Task, existing_outputs: Any = None) -> tuple[Any, dict]:
        store = {t: obj for t, obj in (existing_outputs or [])}
        with _some_working_dir(), memory_outputs(task, store):
            result = debug_run([task], return_summary=False)
        return result, store

    def run_pipeline(self, task: luigi.Task, existing_outputs: Any = None,
                     return_store: bool = False) -> Any:
        """Run ``task``; return its output (a wrapper task: its inputs' contents) or, with
        ``return_store``, all outputs by task."""
        result, store = self._run_pipeline(task, existing_outputs)
        if result.status not in _SUCCEEDED:
            self.fail(f"pipeline did not succeed: {_summary_dict(result.worker)}")
        if return_store:
            return store
        if isinstance(task, luigi.WrapperTask) and task not in store:
            with memory_outputs(task, store):
                return cast(Any, task).read()  # luisy's WrapperTask reads its requirements
        return store[task]

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


def _analysis_exception() -> type[Exception]:
    """pyspark's AnalysisException when pyspark is installed, else a stand-in."""
    try:
        from pyspark.errors import AnalysisException
    except ImportError:
        return MockAnalysisException
    return AnalysisException


class MockAnalysisException(Exception):
    """Raised by :class:`SparkMock` for a missing table when pyspark is not installed."""


class DFMock(Mock):
    """A Spark DataFrame stand-in holding ``data`` (a dict of columns) for ``table_uri``;
    ``df.write[.mode(...)].saveAsTable(name)`` stores the data in ``Config().spark``."""

    def __init__(self, table_uri: str | None, data: Any) -> None:
        super().__init__()
        self.table_uri = table_uri
        self.data = data
        self.write = Mock()
        self.write.mode.return_value = self.write
        self.write.format.return_value = self.write

        def save_as_table(table_name: str) -> None:
            Config().spark.data[table_name] = self.data

        self.write.saveAsTable = save_as_table

    def toPandas(self) -> Any:
        """The data as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame(data=self.data)


class SparkMock(Mock):
    """A SparkSession stand-in: tables live in ``SparkMock.data`` (table uri -> columns).

    ``create_testing_config`` puts one into ``Config().spark`` unless ``mock_spark=False``.
    """

    data: dict[str, Any] = {}

    @property
    def tables(self) -> list[str]:
        """The known table uris."""
        return list(self.data.keys())

    def table(self, table_uri: str) -> DFMock:
        """The table as a :class:`DFMock`."""
        return DFMock(table_uri=table_uri, data=self.data[table_uri])

    def createDataFrame(self, df: Any) -> DFMock:
        """A :class:`DFMock` of a pandas DataFrame."""
        return DFMock(table_uri=None, data=df.to_dict(orient="list"))

    def sql(self, qry: str) -> Any:
        """``SELECT 1 from <table>`` succeeds for known tables, raises AnalysisException
        otherwise; ``DROP TABLE IF EXISTS <table>`` forgets the table."""
        if qry.startswith("SELECT 1 from"):
            if qry.split()[3] in self.data:
                return True
            raise _analysis_exception()("Table does not exist")
        if qry.startswith("DROP TABLE IF EXISTS"):
            self.data.pop(qry.split()[-1], None)
            return True
        raise NotImplementedError(f"SparkMock cannot run {qry!r}")


def create_testing_config(working_dir: str | os.PathLike[str], storage_key: str = "",
                          container_name: str = "", account_name: str = "",
                          mock_spark: bool = True, **kwargs: Any) -> None:
    """Reset luisy's global settings for a test: defaults, ``working_dir``, the Azure
    settings given (empty: none, so cloud sync uses the embedded local remote unless
    ``LUISY_REMOTE`` says otherwise), a :class:`SparkMock` as ``Config().spark`` (unless
    ``mock_spark=False``) and any other setting as keyword (``download=True``, ...)."""
    config = Config()
    config.reset()
    params = get_default_params(raw=False)
    params.update({
        "working_dir": os.fspath(working_dir),
        "azure_storage_key": storage_key,
        "azure_container_name": container_name,
        "azure_account_name": account_name,
        "spark": SparkMock() if mock_spark else None,
    })
    params.update(kwargs)
    config.update(params)

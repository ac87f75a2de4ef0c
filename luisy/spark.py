"""Spark/Delta outputs and inputs (``pip install 'luisy[spark]'``).

Decorating a class works without pyspark; using a Spark target or ``SparkTask.spark``
needs either pyspark or a session in ``Config().spark`` (``--spark``, or the
``SparkMock`` that ``luisy.testing.create_testing_config`` installs).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from luisy.tasks import Task, provide

T = TypeVar("T", bound="type[Any]")


SPARK_EXTRA_HINT = "pip install 'luisy[spark]'"


class SparkNotInstalled(ImportError):
    """pyspark is needed for a Spark feature and is not installed."""


def require_pyspark(feature: str) -> None:
    """Raise :class:`SparkNotInstalled` (one line naming the extra) without pyspark."""
    if importlib.util.find_spec("pyspark") is None:
        raise SparkNotInstalled(f"{feature} needs pyspark, which is not installed: {SPARK_EXTRA_HINT}")


def start_session() -> Any:
    """The active SparkSession (created if needed); needs pyspark."""
    require_pyspark("a Spark session")
    from pyspark.sql import SparkSession

    return SparkSession.builder.getOrCreate()


def _session() -> Any:
    """``Config().spark`` when set (``--spark``, a test mock), else the active session."""
    from luisy.config import Config

    spark = Config().spark
    return spark if spark is not None else start_session()


class DeltaTableTarget:
    """A Delta table ``catalog.schema.table``; ``path`` is only its hash-file identifier."""

    def __init__(self, outdir: str, catalog: str | None, schema: str | None,
                 table_name: str | None) -> None:
        self.table_uri = ".".join(p for p in (catalog, schema, table_name) if p)
        self.path = os.path.join(outdir, f"{self.table_uri}.DeltaTable")

    def exists(self) -> bool:
        """Whether the table can be queried."""
        spark = _session()  # no pyspark: one clear error, not "missing"
        try:
            spark.sql(f"SELECT 1 from {self.table_uri}")
            return True
        except Exception:  # pyspark raises AnalysisException subclasses here
            return False

    def read(self) -> Any:
        """The table as a Spark DataFrame."""
        return _session().table(self.table_uri)

    def write(self, df: Any) -> None:
        """Replace the table with ``df``."""
        df.write.mode("overwrite").saveAsTable(self.table_uri)

    def remove(self) -> None:
        """Drop the table if it exists."""
        _session().sql(f"DROP TABLE IF EXISTS {self.table_uri}")


class AzureBlobStorageTarget:
    """Spark data in a blob-storage directory (``endpoint/directory``)."""

    def __init__(self, outdir: str, endpoint: str, directory: str, file_format: str = "parquet",
                 inferschema: bool = False) -> None:
        self.blob_uri = f"{endpoint.rstrip('/')}/{directory.lstrip('/')}"
        self.path = os.path.join(outdir, endpoint, directory)
        self.file_format = file_format
        self.inferschema = inferschema

    def exists(self) -> bool:
        """Whether the directory can be read in ``file_format``."""
        spark = _session()
        try:
            spark.read.format(self.file_format).load(self.blob_uri).limit(1).count()
            return True
        except Exception:  # any read failure means "not there"
            return False

    def read(self) -> Any:
        """The directory as a Spark DataFrame."""
        return _session().read.format(self.file_format).load(
            self.blob_uri, inferschema=self.inferschema)

    def write(self, df: Any) -> None:
        """Overwrite the directory with ``df`` in ``file_format``."""
        df.write.format(self.file_format).mode("overwrite").save(self.blob_uri)

    def remove(self) -> None:
        """Blob data is overwritten on write, never deleted."""


class SparkTask(Task):
    """A task that computes with Spark; ``self.spark`` is the active session."""

    @property
    def spark(self) -> Any:
        """The Spark session: ``Config().spark`` when set, else the active SparkSession."""
        return _session()

    def write(self, df: Any) -> None:
        """Write ``df``; without a Spark target a Spark DataFrame is stored via pandas."""
        if not getattr(type(self), "spark_target", None) and hasattr(df, "toPandas"):
            df = df.toPandas()
        super().write(df)


provide("SparkTask", SparkTask)


def _set_on_class(attribute: str, make: Callable[[Any], Any]) -> Callable[[T], T]:
    """A class decorator setting ``cls.<attribute>`` to ``make`` (called with the task) and
    marking the class as using Spark; pyspark is needed only when the target is used."""

    def decorate(cls: T) -> T:
        setattr(cls, attribute, make)
        cls.uses_spark = True
        return cls

    return decorate


def deltatable_output(catalog: str | None = None, schema: str | None = None,
                      table_name: str | None = None) -> Callable[[T], T]:
    """Store a SparkTask's output in a Delta table."""
    return _set_on_class("spark_target", lambda task: DeltaTableTarget(
        task.get_outdir(), catalog, schema, table_name))


def deltatable_input(catalog: str | None = None, schema: str | None = None,
                     table_name: str | None = None) -> Callable[[T], T]:
    """Make ``self.input()`` a Delta table instead of a required task."""
    return _set_on_class("input", lambda task: DeltaTableTarget(
        task.get_outdir(), catalog, schema, table_name))


def azure_blob_storage_output(endpoint: str, directory: str, file_format: str = "parquet",
                              inferschema: bool = False) -> Callable[[T], T]:
    """Store a SparkTask's output in blob storage via Spark."""
    return _set_on_class("spark_target",
                         lambda task: AzureBlobStorageTarget(
                             task.get_outdir(), endpoint, directory, file_format, inferschema))


def azure_blob_storage_input(endpoint: str, directory: str, file_format: str = "parquet",
                             inferschema: bool = False) -> Callable[[T], T]:
    """Make ``self.input()`` a blob-storage directory read via Spark."""
    return _set_on_class("input",
                         lambda task: AzureBlobStorageTarget(
                             task.get_outdir(), endpoint, directory, file_format, inferschema))


def check_spark_available(tasks: Iterable[Any]) -> None:
    """Raise :class:`SparkNotInstalled` before a run when a task uses a Spark target and
    neither pyspark nor ``Config().spark`` is there."""
    from luisy.config import Config

    if Config().spark is not None or importlib.util.find_spec("pyspark") is not None:
        return
    for task in tasks:
        if getattr(type(task), "uses_spark", False):
            require_pyspark(f"{type(task).__name__} (a Spark input/output)")

"""Local targets: where a task's output lives and how it is read and written.

Every ``write`` publishes atomically: the data goes to a temporary name in the same
directory, which is renamed onto the final name only when complete.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import os
import pickle
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar

import luigi

from luisy_sync.atomic import atomic_dir, atomic_path, remove_path

logger = logging.getLogger(__name__)


def _accepted_kwargs(func: Callable[..., Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The subset of ``kwargs`` that ``func`` accepts by name."""
    params = inspect.signature(func).parameters
    return {k: v for k, v in kwargs.items() if k in params}


class LocalTarget(luigi.LocalTarget):
    """A file (or directory) below the working dir; base of all luisy targets."""

    file_ending: ClassVar[str] = ""
    is_directory: ClassVar[bool] = False

    def __init__(self, path: str, **kwargs: Any) -> None:
        super().__init__(path=path, format=None, is_tmp=False)
        self.kwargs = kwargs

    def exists(self) -> bool:
        """Whether the output is there."""
        return os.path.exists(self.path)

    def is_folder(self) -> bool:
        """Whether the output is a directory."""
        return self.is_directory

    def make_dir(self, path: str) -> None:
        """Create directory ``path`` (and its parents) if missing."""
        os.makedirs(path, exist_ok=True)

    def remove(self) -> None:
        """Delete the output (file or directory) if it is there."""
        if not remove_path(self.path):
            logger.info("%s does not exist, nothing to remove", self.path)

    def read(self) -> Any:
        """The stored object; each format subclass says how it is decoded."""
        raise NotImplementedError(f"{type(self).__name__} cannot be read")

    def write(self, obj: Any) -> None:
        """Store ``obj`` atomically; each format subclass says how it is encoded."""
        raise NotImplementedError(f"{type(self).__name__} cannot be written")


class PickleTarget(LocalTarget):
    """Any picklable Python object (``.pkl``)."""

    file_ending = "pkl"

    def write(self, obj: Any) -> None:
        with atomic_path(self.path) as tmp, open(tmp, "wb") as fh:
            pickle.dump(obj, fh)

    def read(self) -> Any:
        with open(self.path, "rb") as fh:
            return pickle.load(fh)


class JSONTarget(LocalTarget):
    """A JSON document (``.json``)."""

    file_ending = "json"

    def write(self, obj: Any) -> None:
        with atomic_path(self.path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, indent=4, separators=(",", ": "))

    def read(self) -> Any:
        with open(self.path, encoding="utf-8") as fh:
            return json.load(fh)


class CSVTarget(LocalTarget):
    """A DataFrame as CSV; decorator kwargs go to pandas (``to_csv``/``read_csv``)."""

    file_ending = "csv"

    def write(self, df: Any) -> None:
        kwargs = dict(self.kwargs)
        if "delimiter" in kwargs and "sep" not in kwargs:
            kwargs["sep"] = kwargs.pop("delimiter")
        kwargs = _accepted_kwargs(df.to_csv, kwargs)
        kwargs.setdefault("index", False)
        with atomic_path(self.path) as tmp:
            df.to_csv(tmp, **kwargs)

    def read(self) -> Any:
        import pandas as pd

        return pd.read_csv(self.path, **self.kwargs)


class XLSXTarget(LocalTarget):
    """A DataFrame as an Excel workbook; kwargs go to pandas (``to_excel``/``read_excel``)."""

    file_ending = "xlsx"

    def write(self, df: Any) -> None:
        kwargs = _accepted_kwargs(df.to_excel, self.kwargs)
        with atomic_path(self.path) as tmp:
            df.to_excel(tmp, **kwargs)

    def read(self) -> Any:
        import pandas as pd

        return pd.read_excel(self.path, **self.kwargs)


def _require_tables() -> None:
    try:
        import tables  # noqa: F401
    except ImportError:
        raise ImportError(
            "hdf_output needs the 'tables' package: pip install tables"
        ) from None


class HDFTarget(LocalTarget):
    """A DataFrame in an HDF5 file (key ``data``); needs the ``tables`` package."""

    file_ending = "hdf"

    def write(self, df: Any) -> None:
        _require_tables()
        with atomic_path(self.path) as tmp:
            df.to_hdf(tmp, key="data", **_accepted_kwargs(df.to_hdf, self.kwargs))

    def read(self) -> Any:
        import pandas as pd

        _require_tables()
        return pd.read_hdf(self.path, **self.kwargs)


class FeatherTarget(LocalTarget):
    """A DataFrame in Feather format."""

    file_ending = "feather"

    def write(self, df: Any) -> None:
        with atomic_path(self.path) as tmp:
            df.to_feather(tmp)

    def read(self) -> Any:
        import pandas as pd

        return pd.read_feather(self.path)


class ParquetDirTarget(LocalTarget):
    """A directory of parquet files (e.g. a Spark result), read as one DataFrame."""

    is_directory = True

    def write(self, df: Any) -> None:
        """Write a pandas (or Spark) DataFrame as the directory's content, atomically."""
        with atomic_dir(self.path) as tmp:
            if hasattr(df, "to_parquet"):
                df.to_parquet(os.path.join(tmp, "part-00000.parquet"))
            else:  # a Spark DataFrame writes a directory itself
                os.rmdir(tmp)
                df.write.parquet(tmp)

    def read(self) -> Any:
        """All parquet files of the directory as one DataFrame."""
        from luisy.helpers import get_df_from_parquet_dir

        return get_df_from_parquet_dir(self.path)


class DirectoryTarget(LocalTarget):
    """A directory of files, read one file at a time through a user function.

    ``read_file`` and ``regex_pattern`` are set by :func:`luisy.make_directory_output`.
    """

    is_directory = True
    regex_pattern: ClassVar[str | None] = None

    def read_file(self, file: str) -> Any:
        raise NotImplementedError("pass a read function to make_directory_output")

    def list_files(self) -> list[str]:
        """Sorted paths of the files in the directory that match ``regex_pattern``."""
        pattern = self.regex_pattern or ""
        names = sorted(os.listdir(self.path))
        return [
            os.path.join(self.path, n)
            for n in names
            if not n.startswith(".") and re.search(pattern, n)
        ]

    def read(self) -> Iterator[Any]:
        """Yield ``read_file(path)`` for every matching file, skipping ``None`` results."""
        for path in self.list_files():
            content = self.read_file(path)
            if content is not None:
                yield content

    @contextlib.contextmanager
    def staging(self) -> Iterator[str]:
        """Yield a temporary directory to fill; it becomes the output only on success."""
        with atomic_dir(self.path) as tmp:
            yield tmp

    def write(self, files: Mapping[str, bytes | str]) -> None:
        """Publish ``{file name: content}`` as the directory, atomically."""
        with self.staging() as tmp:
            for name, content in files.items():
                dest = os.path.join(tmp, name)
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                mode = "wb" if isinstance(content, bytes) else "w"
                with open(dest, mode) as fh:
                    fh.write(content)

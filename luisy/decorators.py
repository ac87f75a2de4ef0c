"""Class decorators that configure luisy tasks: outputs, file names, layers, requirements."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import luigi
from luigi.util import inherits

from luisy.filenames import auto_file_name
from luisy.targets import (
    CSVTarget,
    DirectoryTarget,
    FeatherTarget,
    HDFTarget,
    JSONTarget,
    LocalTarget,
    ParquetDirTarget,
    PickleTarget,
    XLSXTarget,
)

T = TypeVar("T", bound="type[Any]")

__all__ = [
    "requires", "inherits", "auto_filename", "project_name", "raw", "interim", "final",
    "pickle_output", "json_output", "csv_output", "xlsx_output", "hdf_output",
    "feather_output", "parquetdir_output", "make_directory_output",
]


class requires:
    """Like :func:`luigi.util.requires`; with ``as_dict=True`` the inputs are a dict
    keyed by the required tasks' family names."""

    def __init__(self, *tasks_to_require: type[luigi.Task], as_dict: bool = False) -> None:
        if not tasks_to_require:
            raise TypeError("requires() needs at least one task class")
        self.tasks_to_require = tasks_to_require
        self.as_dict = as_dict

    def __call__(self, cls: T) -> T:
        cls = inherits(*self.tasks_to_require)(cls)
        required = self.tasks_to_require
        as_dict = self.as_dict

        def _requires(task: luigi.Task) -> Any:
            if as_dict:
                return {t.get_task_family(): task.clone(t) for t in required}
            if len(required) == 1:
                return task.clone(required[0])
            return [task.clone(t) for t in required]

        cls.requires = _requires
        return cls


def _output_decorator(target_cls: type[LocalTarget], name: str) -> Callable[..., Any]:
    def factory(cls: type | None = None, **kwargs: Any) -> Any:
        def decorate(task_cls: T) -> T:
            task_cls.target_cls = target_cls
            task_cls.target_kwargs = kwargs
            return task_cls

        return decorate(cls) if callable(cls) else decorate

    factory.__name__ = name
    factory.__doc__ = (
        f"Store the task's output with :class:`~luisy.targets.{target_cls.__name__}`; "
        "usable bare or with keyword arguments for the reader/writer."
    )
    return factory


pickle_output = _output_decorator(PickleTarget, "pickle_output")
json_output = _output_decorator(JSONTarget, "json_output")
csv_output = _output_decorator(CSVTarget, "csv_output")
xlsx_output = _output_decorator(XLSXTarget, "xlsx_output")
hdf_output = _output_decorator(HDFTarget, "hdf_output")
feather_output = _output_decorator(FeatherTarget, "feather_output")


def _fixed_folder(folder: str) -> Callable[[Any], str]:
    def get_folder_name(self: Any) -> str:
        return folder

    return get_folder_name


def parquetdir_output(cls: Any = None, outdir: str | None = None) -> Any:
    """Output is a directory of parquet files at ``<outdir>/<folder>``.

    The folder is ``outdir`` when given (also positionally: ``@parquetdir_output('a/b')``),
    else the task's own ``get_folder_name()``; with neither, decorating raises ``ValueError``
    (as in luisy 1.4.7).
    """
    if isinstance(cls, str):
        cls, outdir = None, cls

    def decorate(task_cls: T) -> T:
        folder_name = getattr(task_cls, "get_folder_name", None)
        if outdir is None and (folder_name is None or getattr(folder_name, "luisy_default", False)):
            raise ValueError(f"@parquetdir_output on {task_cls.__name__}: define "
                             "get_folder_name() in the task or pass outdir='...'")
        task_cls.target_cls = ParquetDirTarget
        task_cls.target_kwargs = {}
        if outdir is not None:
            task_cls.get_folder_name = _fixed_folder(outdir)
        return task_cls

    return decorate(cls) if callable(cls) else decorate


def make_directory_output(
    read_file_func: Callable[[str], Any], regex_pattern: str | None = None
) -> Callable[[T], T]:
    """Build a decorator for tasks whose output is a directory of files.

    ``task.output().read()`` yields ``read_file_func(path)`` for each file whose name
    matches ``regex_pattern`` (``None`` results are skipped). Tasks publish the directory
    with ``self.write({name: bytes_or_text})`` or ``with self.output().staging() as d:``.
    """

    def read_file(self: Any, file: str) -> Any:
        return read_file_func(file)

    target_cls = type(
        "UserDirectoryTarget",
        (DirectoryTarget,),
        {"read_file": read_file, "regex_pattern": regex_pattern},
    )

    def directory_output(task_cls: T) -> T:
        task_cls.target_cls = target_cls
        task_cls.target_kwargs = {}
        return task_cls

    return directory_output


def project_name(name: str) -> Callable[[T], T]:
    """Put the task's outputs under ``<working_dir>/<name>`` instead of its package name."""

    def decorate(task_cls: T) -> T:
        task_cls.project_name = name
        return task_cls

    return decorate


def _layer_decorator(layer: str) -> Callable[..., Any]:
    def factory(cls: type | None = None) -> Any:
        def decorate(task_cls: T) -> T:
            task_cls.luisy_layer = layer
            return task_cls

        return decorate(cls) if callable(cls) else decorate

    factory.__name__ = layer
    factory.__doc__ = f"Put the task's output in ``<working_dir>/<project>/{layer}``."
    return factory


raw = _layer_decorator("raw")
interim = _layer_decorator("interim")
final = _layer_decorator("final")


def auto_filename(
    cls: type | None = None,
    excl_params: list[str] | None = None,
    excl_none: bool = False,
) -> Any:
    """Name the output ``<TaskFamily>_<param>=<value>...`` (parameters sorted by name).

    ``excl_params`` leaves parameters out; ``excl_none`` leaves out those set to ``None``.
    Usable as ``@auto_filename`` or ``@auto_filename(excl_none=True)``.
    """
    excluded = tuple(excl_params or ())

    def decorate(task_cls: T) -> T:
        def get_file_name(self: luigi.Task) -> str:
            params = [(name, getattr(self, name)) for name in self.get_param_names()]
            return auto_file_name(self.get_task_family(), params, excluded, excl_none)

        task_cls.get_file_name = get_file_name
        return task_cls

    return decorate(cls) if callable(cls) else decorate

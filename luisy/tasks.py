"""luisy's task classes: luigi tasks whose outputs live below the working dir."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import luigi

from luisy.config import Config
from luisy.decorators import auto_filename, pickle_output
from luisy.filenames import with_ending
from luisy.targets import LocalTarget, PickleTarget

logger = logging.getLogger(__name__)


@dataclass
class TaskHooks:
    """Where the layers above the tasks plug in, so that this module imports none of them.

    ``fetch(task) -> bool``: download a missing output when it is read (filled by
    :mod:`luisy.cloud`; used after :func:`luisy.activate_download`).
    ``transfer(task, "download" | "upload", overwrite)``: ``Task.download()``/``upload()``
    (filled by :mod:`luisy.cloud`). ``visualize(task, ...)``: ``Task.visualize()`` (filled
    by :mod:`luisy.visualize`). ``import luisy`` imports both modules.
    """

    fetch: Callable[["Task"], bool] | None = None
    transfer: Callable[["Task", str, bool], Any] | None = None
    visualize: Callable[..., Any] | None = None


hooks = TaskHooks()
_provided: dict[str, Any] = {}


def provide(name: str, value: Any) -> None:
    """Make ``luisy.tasks.<name>`` resolve to ``value`` (for a name a module above this one
    defines, e.g. luisy.spark's ``SparkTask``, which 1.4.7 code imports from here)."""
    _provided[name] = value


def _hook(name: str) -> Callable[..., Any]:
    hook = getattr(hooks, name)
    if hook is None:
        raise RuntimeError(f"luisy.tasks hook {name!r} is not installed: import luisy")
    return hook


@pickle_output
@auto_filename
class Task(luigi.Task):
    """Base luisy task: output location from the decorators, ``read()``/``write()`` helpers."""

    target_cls: type[LocalTarget] = PickleTarget
    target_kwargs: dict[str, Any] = {}
    luisy_layer: str | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.logger = logging.getLogger(type(self).__name__)
        if not isinstance(getattr(type(self), "project_name", None), str):
            self.project_name = type(self).__module__.split(".")[0]
        if self.project_name == "luisy":
            raise ValueError(
                f"{type(self).__name__} lives in the luisy package; give it a project with "
                "@luisy.project_name('name')"
            )
        super().__init__(*args, **kwargs)

    @classmethod
    def get_related_instances(cls, regex_placeholder: str = r"[\S]*") -> list["Task"]:
        """Instances of this class whose outputs exist in the working dir (see
        :func:`luisy.helpers.get_related_instances`)."""
        from luisy.helpers import get_related_instances

        return get_related_instances(cls, regex_placeholder)

    def get_file_name(self) -> str:
        """Base name of the output file (without ending); set by ``auto_filename``."""
        raise NotImplementedError(f"{type(self).__name__} has no file name: decorate it with "
                                  "@luisy.auto_filename or define get_file_name()")

    def get_folder_name(self) -> str:
        """Name of a directory output below :meth:`get_outdir`; defaults to the file name
        (``@parquetdir_output`` needs a task's own)."""
        return self.get_file_name()

    get_folder_name.luisy_default = True  # type: ignore[attr-defined]

    def get_sub_dir(self) -> str:
        """Optional extra directory layer below the raw/interim/final directory."""
        return ""

    def get_outdir(self) -> str:
        """Directory of the output: ``<working_dir>/<project>/<layer>/<sub_dir>``."""
        parts = [Config().working_dir]
        if self.luisy_layer:
            parts += [self.project_name, self.luisy_layer]
        sub_dir = self.get_sub_dir()
        if sub_dir:
            parts.append(sub_dir)
        return os.path.join(*parts)

    def get_outfile(self) -> str:
        """Absolute path of the output file (or directory)."""
        if self.target_cls.is_directory:
            return os.path.join(self.get_outdir(), self.get_folder_name())
        return os.path.join(
            self.get_outdir(), with_ending(self.get_file_name(), self.target_cls.file_ending)
        )

    def output(self) -> Any:
        """The task's target: a Spark target set by a Spark decorator, else a local file."""
        spark_target = getattr(type(self), "spark_target", None)
        if spark_target is not None:
            return spark_target(self)
        return self.target_cls(path=self.get_outfile(), **self.target_kwargs)

    def read(self) -> Any:
        """The task's output, read from disk; the task must have run before.

        After :func:`luisy.activate_download`, a missing output whose cloud hash is
        current is downloaded (verified) first.
        """
        if not self.complete() and Config().download:
            _hook("fetch")(self)
        if not self.complete():
            raise ValueError(
                f"{self} needs to be executed first; try "
                f"{type(self).__name__}.get_related_instances() to find executed instances"
            )
        return self.output().read()

    def read_input(self) -> Any:
        """The content of the task's single input (``self.input().read()``)."""
        inputs = self.input()
        if isinstance(inputs, (list, tuple, dict)):
            raise ValueError(f"{self} has {len(inputs)} inputs; read_input() reads a single one: "
                             "use self.input()[...].read() for each")
        return inputs.read()

    def write(self, obj: Any) -> None:
        """Store ``obj`` as the task's output (atomically)."""
        self.output().write(obj)

    def download(self) -> Any:
        """Fetch this task's output from the cloud (verified, renamed into place when
        complete); nothing happens when the cloud has no copy. Returns the transfer outcome."""
        self.logger.info("Start downloading of %s", self)
        return _hook("transfer")(self, "download", False)

    def upload(self, overwrite: bool = False) -> Any:
        """Push this task's output to the cloud and record it in the cloud ``.luisy.hash``;
        an output already in the cloud is replaced only with ``overwrite=True``."""
        self.logger.info("Start uploading of %s", self)
        return _hook("transfer")(self, "upload", overwrite)

    def clean(self) -> None:
        """Delete the task's output; external data is never deleted."""
        if isinstance(self, luigi.ExternalTask):
            raise ValueError(f"{self} is external; its data cannot be deleted by luisy")
        self.logger.info("Cleaning %s", self)
        self.output().remove()

    def visualize(self, ax: Any = None, unique_children: bool = True,
                  parameters_to_exclude: tuple[str, ...] = ()) -> Any:
        """Draw the dependency tree with matplotlib into ``ax`` (a new figure when None),
        coloured by state when a working dir is set; returns the axis."""
        return _hook("visualize")(self, ax=ax, unique_children=unique_children,
                                  parameters_to_exclude=parameters_to_exclude)


@Task.event_handler(luigi.Event.START)
def _make_output_dir(task: Task) -> None:
    """Create the output's directory just before ``run()``, so a task may place files
    into :meth:`Task.get_outdir` itself (the documented multi-file pattern)."""
    if task.luisy_layer and not isinstance(task, (luigi.ExternalTask, luigi.WrapperTask)) \
            and isinstance(task.output(), LocalTarget):  # not for tests' in-memory outputs
        os.makedirs(task.get_outdir(), exist_ok=True)


class ExternalTask(Task, luigi.ExternalTask):
    """Data produced outside the pipeline; never run, rerun or deleted by luisy."""


class WrapperTask(Task, luigi.WrapperTask):
    """Groups requirements; has no output of its own. ``read()`` reads all inputs."""

    def complete(self) -> bool:
        return luigi.WrapperTask.complete(self)

    def download(self) -> None:
        """A wrapper task has no output of its own: nothing to download."""

    def upload(self, overwrite: bool = False) -> None:
        """A wrapper task has no output of its own: nothing to upload."""

    def read(self) -> Any:
        inputs = self.input()
        if isinstance(inputs, dict):
            return {k: t.read() for k, t in inputs.items()}
        if isinstance(inputs, (list, tuple)):
            return [t.read() for t in inputs]
        if isinstance(inputs, LocalTarget):
            return inputs.read()
        raise ValueError(f"cannot read the requirements of {self}: {type(inputs).__name__}")


class ConcatenationTask(Task):
    """Concatenates the DataFrames of all its requirements (``pandas.concat``)."""

    def preprocess(self, df: Any) -> Any:
        """Hook to change the concatenated frame before it is written."""
        return df

    def run(self) -> None:
        import pandas as pd

        inputs = self.input()
        targets = list(inputs.values()) if isinstance(inputs, dict) else luigi.task.flatten(inputs)
        frames = []
        for target in targets:
            self.logger.info("Read %s", target.path)
            frames.append(target.read())
        self.write(self.preprocess(pd.concat(frames)))


def __getattr__(name: str) -> Any:
    """Names provided by modules above this one (``luisy.tasks.SparkTask``, 1.4.7's place)."""
    if name in _provided:
        return _provided[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# 1.4.7 code imports ``luisy.tasks.base``: the same module under that name.
sys.modules.setdefault(f"{__name__}.base", sys.modules[__name__])

"""luisy's task classes: luigi tasks whose outputs live below the working dir."""

from __future__ import annotations

import logging
import os
from typing import Any

import luigi

from luisy.config import Config
from luisy.decorators import auto_filename, pickle_output
from luisy.filenames import with_ending
from luisy.targets import LocalTarget, PickleTarget

logger = logging.getLogger(__name__)


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
        """Instances of this class whose outputs exist in the working dir."""
        from luisy.instances import related_instances

        return related_instances(cls, regex_placeholder)

    def get_file_name(self) -> str:
        """Base name of the output file (without ending); set by ``auto_filename``."""
        raise NotImplementedError(f"{type(self).__name__} has no file name: decorate it with "
                                  "@luisy.auto_filename or define get_file_name()")

    def get_folder_name(self) -> str:
        """Name of a directory output below :meth:`get_outdir`; defaults to the file name."""
        return self.get_file_name()

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

    def output(self) -> LocalTarget:
        return self.target_cls(path=self.get_outfile(), **self.target_kwargs)

    def read(self) -> Any:
        """The task's output, read from disk; the task must have run before.

        After :func:`luisy.activate_download`, a missing output whose cloud hash is
        current is downloaded (verified) first.
        """
        if not self.complete() and Config().download:
            from luisy.cloud.lazy import fetch_output

            fetch_output(self)
        if not self.complete():
            raise ValueError(
                f"{self} needs to be executed first; try "
                f"{type(self).__name__}.get_related_instances() to find executed instances"
            )
        return self.output().read()

    def write(self, obj: Any) -> None:
        """Store ``obj`` as the task's output (atomically)."""
        self.output().write(obj)

    def clean(self) -> None:
        """Delete the task's output; external data is never deleted."""
        if isinstance(self, luigi.ExternalTask):
            raise ValueError(f"{self} is external; its data cannot be deleted by luisy")
        self.logger.info("Cleaning %s", self)
        self.output().remove()

    def visualize(self, ax: Any = None, unique_children: bool = True,
                  parameters_to_exclude: tuple[str, ...] = ()) -> str:
        """Print (and return) the dependency tree of the task."""
        from luisy.visualize import render_tree

        text = render_tree(self, unique_children, parameters_to_exclude)
        print(text)
        return text


@Task.event_handler(luigi.Event.START)
def _make_output_dir(task: Task) -> None:
    """Create the output's directory just before ``run()``, so a task may place files
    into :meth:`Task.get_outdir` itself (the documented multi-file pattern)."""
    if task.luisy_layer and not isinstance(task, (luigi.ExternalTask, luigi.WrapperTask)):
        os.makedirs(task.get_outdir(), exist_ok=True)


class ExternalTask(Task, luigi.ExternalTask):
    """Data produced outside the pipeline; never run, rerun or deleted by luisy."""


class WrapperTask(Task, luigi.WrapperTask):
    """Groups requirements; has no output of its own. ``read()`` reads all inputs."""

    def complete(self) -> bool:
        return luigi.WrapperTask.complete(self)

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

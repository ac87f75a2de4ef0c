"""The task graph of a run and where each task's output lives.

:func:`output_ref` is the one place that maps a task to its output key (the 1.4.7
``.luisy.hash`` key, e.g. ``/project/interim/Task.pkl``) and absolute path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import luigi
from luigi.task import flatten

from luisy.config import Config, remove_working_dir


def requirements(task: luigi.Task) -> list[luigi.Task]:
    """The tasks ``task`` requires (flattened, in order, without duplicates)."""
    return list(dict.fromkeys(flatten(task.requires())))


def walk(roots: Iterable[luigi.Task], *, expand: Callable[[luigi.Task], bool] | None = None,
         seen: set[luigi.Task] | None = None, post_order: bool = False,
         deps: dict[luigi.Task, tuple[luigi.Task, ...]] | None = None) -> list[luigi.Task]:
    """The one walk over ``requires()``: every task reachable from ``roots``, each once,
    depth first (iteratively, so deep graphs are fine).

    ``expand(task)`` False: the requirements of ``task`` are not visited. ``seen``: tasks
    already visited (updated in place, so walks can continue one another). ``post_order``:
    requirements before the tasks that need them, else each task before its requirements.
    ``deps`` is filled with each expanded task's requirements.
    """
    seen = set() if seen is None else seen
    order: list[luigi.Task] = []
    stack: list[tuple[luigi.Task, bool]] = [(r, False) for r in reversed(list(roots))]
    while stack:
        task, expanded = stack.pop()
        if expanded:
            order.append(task)
            continue
        if task in seen:
            continue
        seen.add(task)
        if not post_order:
            order.append(task)
        children: tuple[luigi.Task, ...] = ()
        if expand is None or expand(task):
            children = tuple(requirements(task))
        if deps is not None:
            deps[task] = children
        if post_order:
            stack.append((task, True))
        stack.extend((c, False) for c in reversed(children) if c not in seen)
    return order


@dataclass(frozen=True)
class OutputRef:
    """Where one task's output lives.

    key: path relative to the working dir with a leading ``/`` (``.luisy.hash`` key).
    path: absolute local path. project: owner of the ``.luisy.hash`` the key goes to.
    is_dir: the output is a directory (parquet dir, directory output).
    """

    key: str
    path: str
    project: str
    is_dir: bool

    def with_hash(self, code_hash: str) -> Output:
        """This output with the code hash of the task that makes it."""
        return Output(self.key, self.path, self.project, self.is_dir, code_hash)


@dataclass(frozen=True)
class Output(OutputRef):
    """An output of a run with the current code hash of its task (built once per run)."""

    code_hash: str


def output_ref(task: luigi.Task) -> OutputRef | None:
    """The output of a luisy task, or ``None`` when it has no local output
    (wrapper tasks, plain luigi tasks, Spark tables)."""
    from luisy.tasks import Task

    if not isinstance(task, Task) or isinstance(task, luigi.WrapperTask):
        return None
    target = task.output()
    if not hasattr(target, "is_directory"):
        return None
    path = target.path
    try:
        key = remove_working_dir(path)
    except ValueError:
        return None
    return OutputRef(key=key, path=path, project=task.project_name, is_dir=target.is_directory)


@dataclass(frozen=True)
class TaskGraph:
    """All tasks reachable from ``roots`` (dependencies first), their edges and outputs."""

    roots: tuple[luigi.Task, ...]
    tasks: tuple[luigi.Task, ...]
    deps: Mapping[luigi.Task, tuple[luigi.Task, ...]]
    outputs: Mapping[luigi.Task, OutputRef | None]

    def keys(self) -> dict[str, luigi.Task]:
        """Output key -> task, for tasks that have a local output."""
        return {ref.key: t for t, ref in self.outputs.items() if ref is not None}

    def is_external(self, task: luigi.Task) -> bool:
        """Whether ``task`` is a luigi ExternalTask (data made outside the pipeline)."""
        return isinstance(task, luigi.ExternalTask)

    def projects(self) -> set[str]:
        """The project names of every task with a local output."""
        return {ref.project for ref in self.outputs.values() if ref is not None}


def build_graph(roots: luigi.Task | Iterable[luigi.Task]) -> TaskGraph:
    """Walk ``requires()`` from the roots (iteratively, so deep graphs are fine)."""
    if isinstance(roots, luigi.Task):
        roots = [roots]
    roots = tuple(roots)
    Config().working_dir  # fail early with a clear message when it is not set
    deps: dict[luigi.Task, tuple[luigi.Task, ...]] = {}
    order = walk(roots, post_order=True, deps=deps)
    outputs = {t: output_ref(t) for t in order}
    return TaskGraph(roots=roots, tasks=tuple(order), deps=deps, outputs=outputs)

"""Code hashing: a digest per task class and per task instance.

``class_code_hash(cls)`` digests the class's source normalised through the AST
(docstrings, comments and formatting do not count), the same-package
functions, classes and constants it uses, transitively, and the versions of the
external packages it uses.  ``compute_task_hashes(tasks)`` combines a task's
class hash with the hashes of its upstream tasks, so a change anywhere upstream
changes every task downstream.  Digests are xxh3-128 hex strings and do not
depend on the process, the machine or the checkout path.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import luigi
import xxhash

from luisy.graph import requirements

from . import modules, versions
from .collect import FORCED_EXTERNAL, Closure, CodePart, collect
from .errors import CodeHashError, StarImportError
from .modules import current_stamp, find_class, module_index
from .parts import HashParts, Reason, explain

__all__ = [
    "CodeHashError",
    "CodePart",
    "HashParts",
    "Reason",
    "StarImportError",
    "TaskCode",
    "class_code_hash",
    "clear_caches",
    "compute_task_code",
    "compute_task_hashes",
    "explain",
]

_FORMAT = b"luisy-codehash/1\n"
_CLOSURES: dict[tuple[str, str], Closure] = {}


def clear_caches() -> None:
    """Forget parsed modules, per-class results and package versions."""
    _CLOSURES.clear()
    modules.clear()
    versions.clear()


def _findable(cls: type) -> bool:
    index = module_index(cls.__module__)
    return index is not None and find_class(index, cls.__qualname__) is not None


def _source_class(cls: type) -> tuple[str, str]:
    """``(module, qualname)`` of the class definition as written in the source.

    A class generated without source (``type(...)`` in a decorator, say) is
    hashed through the first class in its MRO written in project code.
    """
    if _findable(cls):
        return cls.__module__, cls.__qualname__
    for base in cls.__mro__[1:]:
        if base.__module__.partition(".")[0] not in FORCED_EXTERNAL and _findable(base):
            return base.__module__, base.__qualname__
    raise CodeHashError(
        f"cannot find the source of task class {cls.__module__}.{cls.__qualname__}: "
        "luisy hashes task code from source files, so define it in an importable .py module"
    )


def _closure(cls: type) -> Closure:
    key = _source_class(cls)
    cached = _CLOSURES.get(key)
    if cached is not None and all(current_stamp(path) == stamp for path, stamp in cached.stamps):
        return cached
    closure = collect(*key)
    _CLOSURES[key] = closure
    return closure


@dataclass(frozen=True)
class _ClassCode:
    digest: str
    root: CodePart
    parts: tuple[CodePart, ...]
    packages: tuple[str, ...]


def _class_code(cls: type) -> _ClassCode:
    closure = _closure(cls)
    packages = tuple(versions.version_entries(closure.externals))
    hasher = xxhash.xxh3_128(_FORMAT)
    hasher.update(closure.root_digest.encode("ascii"))
    for digest in sorted(closure.digests):
        hasher.update(b"\ncode:" + digest.encode("ascii"))
    for entry in packages:
        hasher.update(b"\npackage:" + entry.encode("utf-8"))
    root = closure.root or CodePart(f"{cls.__module__}.{cls.__qualname__}", "class", "", closure.root_digest)
    return _ClassCode(hasher.hexdigest(), root, closure.parts, packages)


def class_code_hash(cls: type) -> str:
    """The xxh3-128 hex digest of a class's code, its same-package dependencies
    and the versions of the external packages it uses."""
    return _class_code(cls).digest


def _upstream_order(tasks: Iterable[luigi.Task]) -> tuple[list[luigi.Task], dict[luigi.Task, list[luigi.Task]]]:
    """Tasks and everything upstream, upstream first (iterative, detects cycles)."""
    requires: dict[luigi.Task, list[luigi.Task]] = {}
    state: dict[luigi.Task, int] = {}  # 1: being expanded, 2: done
    order: list[luigi.Task] = []
    stack: list[tuple[luigi.Task, bool]] = [(task, False) for task in reversed(list(tasks))]
    while stack:
        task, expanded = stack.pop()
        if expanded:
            state[task] = 2
            order.append(task)
            continue
        seen = state.get(task)
        if seen == 2:
            continue
        if seen == 1:
            raise CodeHashError(f"task dependency cycle through {task.task_id}")
        state[task] = 1
        upstream = requirements(task)
        requires[task] = upstream
        stack.append((task, True))
        stack.extend((dep, False) for dep in reversed(upstream) if state.get(dep) != 2)
    return order, requires


@dataclass(frozen=True)
class TaskCode:
    """A task instance's code hash and what it is made of (for explaining reruns)."""

    hash: str
    parts: HashParts


def compute_task_code(tasks: Iterable[luigi.Task]) -> dict[luigi.Task, TaskCode]:
    """Hash and hash parts per task instance for ``tasks`` and everything upstream.

    A task's hash is xxh3-128 over its class hash and the sorted hashes of its
    direct upstream tasks.
    """
    order, requires = _upstream_order(tasks)
    classes: dict[type, _ClassCode] = {}
    result: dict[luigi.Task, TaskCode] = {}
    for task in order:
        cls = type(task)
        if cls not in classes:
            classes[cls] = _class_code(cls)
        code = classes[cls]
        hasher = xxhash.xxh3_128(_FORMAT)
        hasher.update(code.digest.encode("ascii"))
        for upstream in sorted(result[dep].hash for dep in requires[task]):
            hasher.update(b"\nupstream:" + upstream.encode("ascii"))
        upstream_ids = tuple(sorted({dep.task_id: result[dep].hash for dep in requires[task]}.items()))
        result[task] = TaskCode(hasher.hexdigest(),
                                HashParts(code.root, code.parts, code.packages, upstream_ids))
    return result


def compute_task_hashes(tasks: Iterable[luigi.Task]) -> dict[luigi.Task, str]:
    """Hash per task instance for ``tasks`` and everything upstream of them
    (see :func:`compute_task_code`)."""
    return {task: code.hash for task, code in compute_task_code(tasks).items()}

"""Text rendering of a task's dependency tree."""

from __future__ import annotations

from collections.abc import Iterable

import luigi
from luigi.task import flatten


def _label(task: luigi.Task, exclude: Iterable[str]) -> str:
    skip = set(exclude)
    params = ", ".join(
        f"{k}={v}" for k, v in task.to_str_params(only_significant=True).items() if k not in skip
    )
    return f"{task.get_task_family()}({params})"


def render_tree(task: luigi.Task, unique_children: bool = True,
                parameters_to_exclude: Iterable[str] = ()) -> str:
    """An indented tree of ``task`` and its requirements.

    With ``unique_children`` only one child per task family is shown at each level.
    """
    exclude = tuple(parameters_to_exclude)
    lines: list[str] = []
    stack: list[tuple[luigi.Task, int]] = [(task, 0)]
    while stack:
        node, depth = stack.pop()
        lines.append("  " * depth + ("└─ " if depth else "") + _label(node, exclude))
        children = list(dict.fromkeys(flatten(node.requires())))
        if unique_children:
            by_family: dict[str, luigi.Task] = {}
            for child in children:
                by_family.setdefault(child.get_task_family(), child)
            children = list(by_family.values())
        stack.extend((c, depth + 1) for c in reversed(children))
    return "\n".join(lines)

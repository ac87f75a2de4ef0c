"""A task's dependency tree: as text for terminals, as a matplotlib picture.

    task.visualize()                       # draws into a new figure, returns the axis
    task.visualize(ax=axes[1])             # into your own axis
    luisy --module pkg.tasks Final --visualize pipeline.png   # from the shell

Boxes are coloured by state when a working dir is set: done, to run, outdated, in the
cloud (downloadable with ``--download``), missing external data, not needed.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import luigi

from luisy_sync.atomic import atomic_path
from luisy.graph import requirements
from luisy.tasks import hooks

logger = logging.getLogger(__name__)

#: State -> box colour.
STATE_COLORS: dict[str, str] = {
    "done": "#9bd59b",
    "to run": "#f7d070",
    "outdated": "#f0907f",
    "in the cloud": "#93bdf2",
    "missing external": "#c8a2de",
    "not needed": "#e4e4e4",
}
_NO_STATE = "#ffffff"
PICTURE_FORMATS = ("png", "svg", "pdf")


def _label(task: luigi.Task, exclude: Iterable[str]) -> str:
    skip = set(exclude)
    params = ", ".join(
        f"{k}={v}" for k, v in task.to_str_params(only_significant=True).items() if k not in skip
    )
    return f"{task.get_task_family()}({params})"


def _children(task: luigi.Task, unique_children: bool) -> list[luigi.Task]:
    """The requirements of ``task``; with ``unique_children`` one per task class."""
    children = requirements(task)
    if unique_children:
        by_type: dict[type, luigi.Task] = {}
        for child in children:
            by_type.setdefault(type(child), child)
        children = list(by_type.values())
    return children


def render_tree(task: luigi.Task, unique_children: bool = True,
                parameters_to_exclude: Iterable[str] = ()) -> str:
    """An indented text tree of ``task`` and its requirements (for terminals)."""
    exclude = tuple(parameters_to_exclude)
    lines: list[str] = []
    stack: list[tuple[luigi.Task, int]] = [(task, 0)]
    while stack:
        node, depth = stack.pop()
        lines.append("  " * depth + ("└─ " if depth else "") + _label(node, exclude))
        stack.extend((c, depth + 1) for c in reversed(_children(node, unique_children)))
    return "\n".join(lines)


def create_label(task: luigi.Task, excl_list: Iterable[str] = (), with_id: bool = False) -> str:
    """The node label: the task family, then one ``name=value`` line per parameter
    (without those in ``excl_list``); ``with_id`` appends the task id's hash part."""
    skip = set(excl_list)
    name = task.get_task_family()
    if with_id:
        name += task.task_id.rsplit("_", 1)[-1]
    for key, value in task.param_kwargs.items():
        if key not in skip:
            name += f"\n{key}={value}"
    return name


def make_dependency_graph(task: luigi.Task, excl_list: Iterable[str] = (),
                          namefunc: Callable[[luigi.Task], str] | None = None,
                          unique_children: bool = True, depth_limit: float = 10) -> Any:
    """A ``networkx.DiGraph`` of ``task``'s dependencies: nodes are labels (``namefunc``,
    default :func:`create_label`) with the task in the node's ``task`` attribute, edges
    go from a task to each requirement, down to ``depth_limit`` levels."""
    import networkx as nx

    namefunc = namefunc or functools.partial(create_label, excl_list=tuple(excl_list))
    dag = nx.DiGraph()
    dag.add_node(namefunc(task), task=task)
    stack: list[tuple[luigi.Task, int]] = [(task, 1)]
    expanded: set[str] = set()
    while stack:
        node, depth = stack.pop()
        name = namefunc(node)
        if depth > depth_limit or name in expanded:
            continue
        expanded.add(name)
        for child in _children(node, unique_children):
            dag.add_node(namefunc(child), task=child)
            dag.add_edge(name, namefunc(child))
            stack.append((child, depth + 1))
    return dag


def task_states(task: luigi.Task, cloud: bool = False) -> dict[luigi.Task, str]:
    """State of every task upstream of ``task`` (see :data:`STATE_COLORS`), from the
    working dir's outputs and hashes; with ``cloud`` also what the cloud can provide.
    Empty when no working dir is set."""
    from luisy.config import Config
    from luisy.run import prepare

    try:
        Config().working_dir
    except ValueError:
        return {}
    prepared = prepare(task)
    entries = None
    if cloud:
        from luisy.cloud.cloudrun import CloudOptions, CloudRun

        entries = CloudRun.start(prepared, CloudOptions(download=True, progress=False),
                                 logger.info).plan_entries()
    plan = prepared.plan(entries, download=cloud)
    outputs = prepared.graph.outputs
    states: dict[luigi.Task, str] = {}
    for t in prepared.graph.tasks:
        ref = outputs.get(t)
        key = ref.key if ref else None
        if key in plan.to_download:
            states[t] = "in the cloud"
        elif key in plan.outdated_to_delete:
            states[t] = "outdated"
        elif t.task_id in plan.missing_external:
            states[t] = "missing external"
        elif t.task_id in plan.to_run:
            states[t] = "to run"
        elif key in prepared.existing or (key is None and t.complete()):
            states[t] = "done"
        elif key and (entry := (entries or {}).get(key)) is not None \
                and entry.code_hash == prepared.current.get(key):
            states[t] = "in the cloud"  # not needed by this run, but current in the cloud
        else:
            states[t] = "not needed"
    return states


def _layers(dag: Any, root: str) -> list[list[str]]:
    """Nodes by longest distance from ``root``, each layer ordered under its parents."""
    import networkx as nx

    depth = {root: 0}
    for node in nx.topological_sort(dag):
        for child in dag.successors(node):
            depth[child] = max(depth.get(child, 0), depth.get(node, 0) + 1)
    layers: list[list[str]] = [[] for _ in range(max(depth.values()) + 1)]
    for node in dag.nodes:
        layers[depth.get(node, 0)].append(node)
    position = {root: 0.0}
    for layer in layers[1:]:
        def under(node: str) -> float:
            parents = [position[p] for p in dag.predecessors(node) if p in position]
            return sum(parents) / len(parents) if parents else 0.0

        layer.sort(key=lambda n: (under(n), n))
        position.update({n: float(i) for i, n in enumerate(layer)})
    return layers


def visualize_task(task: luigi.Task, ax: Any = None, unique_children: bool = True,
                   parameters_to_exclude: Iterable[str] = (),
                   states: Mapping[luigi.Task, str] | None = None) -> Any:
    """Draw ``task``'s dependency tree into ``ax`` (a new figure when None); returns ``ax``.

    Requirements sit below the tasks that need them, arrows show the data flow. Boxes
    are coloured by ``states`` (default: :func:`task_states` when a working dir is set).
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    dag = make_dependency_graph(task, excl_list=parameters_to_exclude,
                                unique_children=unique_children, depth_limit=float("inf"))
    root = create_label(task, tuple(parameters_to_exclude))
    layers = _layers(dag, root)
    states = task_states(task) if states is None else states
    widest = max(len(layer) for layer in layers)
    if ax is None:
        _, ax = plt.subplots(figsize=(max(6.0, 3.2 * widest), max(3.0, 1.9 * len(layers))))
    xy: dict[str, tuple[float, float]] = {}
    for row, layer in enumerate(layers):
        for i, node in enumerate(layer):
            xy[node] = ((i + 1) / (len(layer) + 1), 1.0 - (row + 0.5) / len(layers))
    for parent, child in dag.edges:
        ax.annotate("", xy=xy[parent], xytext=xy[child], xycoords="axes fraction",
                    arrowprops=dict(arrowstyle="-|>", color="#555555", shrinkA=22, shrinkB=22,
                                    lw=1.0))
    used: dict[str, None] = {}
    for node, (x, y) in xy.items():
        state = states.get(dag.nodes[node]["task"])
        if state:
            used[state] = None
        ax.text(x, y, node, transform=ax.transAxes, ha="center", va="center", fontsize=8,
                bbox=dict(boxstyle="round,pad=0.4", fc=STATE_COLORS.get(state, _NO_STATE) if state else _NO_STATE,
                          ec="#333333", lw=0.8))
    if used:
        ax.legend(handles=[Patch(fc=STATE_COLORS[s], ec="#333333", label=s) for s in used],
                  loc="upper left", fontsize=8, frameon=False)
    ax.axis("off")
    return ax


def save_visualization(task: luigi.Task, path: str, unique_children: bool = True,
                       parameters_to_exclude: Iterable[str] = (), cloud: bool = False) -> None:
    """Write the picture of ``task``'s tree to ``path`` (the format from its ending:
    ``.png``, ``.svg``, ``.pdf``), coloured by state."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    ax = visualize_task(task, unique_children=unique_children,
                        parameters_to_exclude=parameters_to_exclude,
                        states=task_states(task, cloud=cloud))
    figure = ax.get_figure()
    try:
        with atomic_path(path) as tmp:  # never a half-written picture under the final name
            figure.savefig(tmp, format=picture_format(path), bbox_inches="tight", dpi=130)
    finally:
        plt.close(figure)


def picture_format(path: str) -> str:
    """``png``/``svg``/``pdf`` from ``path``'s ending; ``ValueError`` for anything else."""
    ending = path.rsplit(".", 1)[-1].lower() if "." in path else ""
    if ending not in PICTURE_FORMATS:
        raise ValueError(f"cannot write a picture to {path!r}: end the file name in "
                         f"{', '.join('.' + f for f in PICTURE_FORMATS)}")
    return ending


hooks.visualize = visualize_task

"""One luisy run: hash, plan, confirm, delete outdated outputs, run luigi, record hashes."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

import luigi
import luigi.configuration
from luigi.execution_summary import LuigiStatusCode, _summary_dict

from luisy.config import Config, add_working_dir
from luisy.errors import LuisyError
from luisy.graph import Output, TaskGraph, build_graph
from luisy.codehash import HashParts, TaskCode, compute_task_code
from luisy.hashfile import CloudEntry, hash_file_path, read_projects, record_parts, write_hash_file
from luisy.report import run_report, write_json_report
from luisy.runplan import PlanTask, RunPlan, hashes_to_record, plan_hash_update, plan_run

logger = logging.getLogger(__name__)

_OK = (LuigiStatusCode.SUCCESS, LuigiStatusCode.SUCCESS_WITH_RETRY)


@dataclass
class PreparedRun:
    """Everything known before luigi runs: graph, hashes, stored hashes, existing outputs."""

    graph: TaskGraph
    current: dict[str, str]
    stored_by_project: dict[str, dict[str, str]]
    existing: set[str]
    outputs: dict[str, Output] = field(default_factory=dict)
    """Output key -> output with its current code hash (outputs of hashed tasks)."""
    parts: dict[str, HashParts] = field(default_factory=dict)
    """Output key -> what its current code hash is made of (recorded beside the hash)."""

    @property
    def stored(self) -> dict[str, str]:
        merged: dict[str, str] = {}
        for hashes in self.stored_by_project.values():
            merged.update(hashes)
        return merged

    def plan_tasks(self) -> list[PlanTask]:
        g = self.graph
        return [
            PlanTask(
                name=t.task_id,
                key=ref.key if (ref := g.outputs[t]) else None,
                deps=tuple(d.task_id for d in g.deps[t]),
                external=g.is_external(t),
            )
            for t in g.tasks
        ]

    def plan(self, cloud: Any = None, download: bool = False, upload: bool = False) -> RunPlan:
        return plan_run(self.plan_tasks(), [r.task_id for r in self.graph.roots], self.current,
                        self.stored, self.existing, cloud, download=download, upload=upload)


def compute_code(graph: TaskGraph) -> dict[str, TaskCode]:
    """Current code hash and its parts per output key."""
    by_task = compute_task_code(graph.tasks)
    return {ref.key: by_task[t] for t, ref in graph.outputs.items() if ref is not None}


class OutputCollisionError(LuisyError, ValueError):
    """Two distinct tasks of one graph would write the same output file."""


def check_output_collisions(graph: TaskGraph) -> None:
    """Raise OutputCollisionError (one line) when distinct tasks share an output path,
    e.g. ``name="a b"``, ``"a_b"`` and ``"a/b"``, which all become ``T_name=a_b.pkl``."""
    owner: dict[str, luigi.Task] = {}
    for task, ref in graph.outputs.items():
        if ref is None:
            continue
        first = owner.setdefault(ref.path, task)
        if first.task_id != task.task_id:
            raise OutputCollisionError(
                f"{first} and {task} would both write {ref.key}; nothing was run: give them "
                "distinct file names (parameter values that differ after spaces and slashes "
                "become '_', or a get_file_name of their own)")


def prepare(roots: luigi.Task | Iterable[luigi.Task]) -> PreparedRun:
    """Build the graph of ``roots`` and gather hashes and existing outputs."""
    graph = build_graph(roots)
    check_output_collisions(graph)
    code = compute_code(graph)
    current = {key: c.hash for key, c in code.items()}
    stored = read_projects(Config().working_dir, graph.projects())
    existing = {ref.key for ref in graph.outputs.values() if ref and os.path.exists(ref.path)}
    outputs = {ref.key: ref.with_hash(current[ref.key]) for ref in graph.outputs.values()
               if ref is not None and ref.key in current}
    return PreparedRun(graph, current, stored, existing, outputs, {k: c.parts for k, c in code.items()})


class RunSync(Protocol):
    """The cloud side of a run (``--download``/``--upload``), made before anything changes
    (see :class:`luisy.cloud.cloudrun.CloudRun`)."""

    @property
    def uploads(self) -> bool:
        """Whether the run uploads."""

    @property
    def downloads(self) -> bool:
        """Whether the run downloads."""

    @property
    def predicted_uploads(self) -> Mapping[str, int | None]:
        """What the plan said would be uploaded (filled by ``plan_lines``)."""

    def plan_entries(self) -> Mapping[str, CloudEntry]:
        """Cloud entries the planner may download."""

    def plan_lines(self, plan: RunPlan) -> list[str]:
        """The plan's transfer sections."""

    def download(self, plan: RunPlan) -> object:
        """Fetch the planned downloads, before luigi runs."""

    def upload(self, stored_after: Mapping[str, str], made: Collection[str]) -> bool:
        """Push what differs after luigi ran; False when an upload failed."""

    def refresh(self, dry_run: bool) -> list[str]:
        """Hash-update mode: refresh cloud hashes."""

    def report(self, plan: RunPlan | None, summary: Mapping[str, Any], exit_code: int,
               dry_run: bool) -> dict[str, Any]:
        """The JSON report of the run, with the cloud part."""


@dataclass
class BuildResult:
    """Outcome of :func:`execute` / :func:`luisy.build`."""

    success: bool
    exit_code: int
    plan: RunPlan | None = None
    status: LuigiStatusCode | None = None
    summary: dict[str, set[luigi.Task]] = field(default_factory=dict)
    summary_text: str = ""
    deleted: tuple[str, ...] = ()
    recorded: dict[str, str] = field(default_factory=dict)

    @property
    def tasks_set(self) -> dict[str, set[luigi.Task]]:
        """luigi's execution-summary dict (luisy 1.4.7's name for :attr:`summary`)."""
        return self.summary


def format_plan(prepared: PreparedRun, plan: RunPlan, transfer_lines: list[str] | None = None) -> str:
    """Human-readable plan: outdated outputs, tasks to run, missing data, transfers
    (``transfer_lines`` replace the plain download/upload lists when given)."""
    g = prepared.graph
    by_id = {t.task_id: t for t in g.tasks}
    lines = [f"luisy plan for {', '.join(str(r) for r in g.roots)}"]

    def section(title: str, items: Iterable[str]) -> None:
        items = list(items)
        if items:
            lines.append(f"  {title} ({len(items)}):")
            lines.extend(f"    {item}" for item in items)

    section("outdated outputs to delete", plan.outdated_to_delete)
    section("tasks to run", (_describe(by_id[n], g) for n in plan.to_run))
    section("missing external data", (_describe(by_id[n], g) for n in plan.missing_external))
    if transfer_lines is None:
        section("downloads", plan.to_download)
        section("uploads", plan.to_upload)
    else:
        lines.extend(transfer_lines)
    if not plan.changes_anything and not plan.missing_external and not transfer_lines:
        lines.append(f"  nothing to run: {len(plan.up_to_date)} output(s) up to date")
    return "\n".join(lines)


def _describe(task: luigi.Task, graph: TaskGraph) -> str:
    ref = graph.outputs.get(task)
    return f"{task} -> {ref.key}" if ref else str(task)


def confirm(question: str, no_ask: bool, stdin: TextIO | None = None) -> bool:
    """Ask ``question`` on a terminal; yes without asking when ``no_ask`` or no TTY."""
    stdin = stdin or sys.stdin
    if no_ask or not stdin.isatty():
        return True
    print(f"{question} [y/N] ", end="", flush=True)
    return stdin.readline().strip().lower() in ("y", "yes")


def _write_project_hashes(prepared: PreparedRun, updates: dict[str, str]) -> None:
    """Apply ``updates`` to each project's hash file, dropping entries whose output is gone,
    and record beside it what each current hash written is made of."""
    wd = Config().working_dir
    project_of = {ref.key: ref.project for ref in prepared.graph.outputs.values() if ref}
    gone: set[str] = set()
    for project, stored in prepared.stored_by_project.items():
        mine = {k: v for k, v in updates.items() if project_of.get(k) == project}
        merged = {**stored, **mine}
        gone |= {k for k in merged if not os.path.exists(add_working_dir(k))}
        merged = {k: v for k, v in merged.items() if k not in gone}
        if merged != stored:
            write_hash_file(hash_file_path(wd, project), merged)
    parts = {k: prepared.parts[k] for k, v in updates.items()
             if k in prepared.parts and prepared.current.get(k) == v and k not in gone}
    if parts or gone:
        record_parts(wd, parts, drop=gone)


def execute(
    roots: luigi.Task | Iterable[luigi.Task],
    run_luigi: Callable[[], Any],
    *,
    dry_run: bool = False,
    no_ask: bool = True,
    hash_update_mode: bool = False,
    out: Callable[[str], None] = print,
    sync: Callable[[PreparedRun], RunSync] | None = None,
    json_path: str | None = None,
) -> BuildResult:
    """Run the luisy cycle around ``run_luigi`` (which returns a ``LuigiRunResult``).

    With ``sync`` (``--download``/``--upload``: it makes the cloud side of the run from the
    prepared run, checking the remote) nothing changes before the cloud is known to be
    usable; downloads run before luigi and uploads after it, all in this process.
    ``json_path``: write a JSON report there (``-`` = stdout).
    """
    prepared = prepare(roots)
    cloud = sync(prepared) if sync is not None else None
    if hash_update_mode:
        return _hash_update(prepared, dry_run, no_ask, out, cloud)
    download = bool(cloud and cloud.downloads)
    upload = bool(cloud and cloud.uploads)
    plan = prepared.plan(cloud.plan_entries() if cloud else None, download=download, upload=upload)
    out(format_plan(prepared, plan, cloud.plan_lines(plan) if cloud else None))
    if dry_run:
        out("dry run: nothing changed")
        _write_report(prepared, json_path, cloud, plan, {}, 0, dry_run=True)
        return BuildResult(success=True, exit_code=0, plan=plan)
    if (plan.changes_anything or (cloud and cloud.predicted_uploads)) and not confirm("Proceed?", no_ask):
        out("aborted: nothing changed")
        return BuildResult(success=False, exit_code=0, plan=plan)
    keyed = prepared.graph.keys()
    for key in plan.outdated_to_delete:
        logger.info("deleting outdated output %s", key)
        keyed[key].output().remove()
    if cloud:
        cloud.download(plan)
    result = run_luigi()
    summary = _summary_dict(result.worker)
    failed_keys = {
        ref.key for t in summary.get("failed", ())
        if (ref := prepared.graph.outputs.get(t)) is not None
    }
    _remove_untrusted_outputs(prepared, failed_keys, out)
    existing_after = {
        ref.key for ref in prepared.graph.outputs.values() if ref and os.path.exists(ref.path)
    }
    recorded = hashes_to_record(prepared.current, existing_after, failed_keys)
    recorded = {k: v for k, v in recorded.items() if prepared.stored.get(k) != v}
    _write_project_hashes(prepared, recorded)
    ok = result.status in _OK
    if cloud and upload:
        stored_after = {**prepared.stored, **recorded}
        made = {ref.key for t in summary.get("completed", ())
                if (ref := prepared.graph.outputs.get(t)) is not None}
        ok = cloud.upload(stored_after, made) and ok
    exit_code = 0 if ok else 1
    _write_report(prepared, json_path, cloud, plan, summary, exit_code, dry_run=False)
    return BuildResult(
        success=ok, exit_code=exit_code, plan=plan, status=result.status,
        summary=summary, summary_text=result.summary_text,
        deleted=plan.outdated_to_delete, recorded=recorded,
    )


def _remove_untrusted_outputs(prepared: PreparedRun, failed_keys: set[str],
                              out: Callable[[str], None]) -> None:
    """Delete what failed tasks left under their output names: a task that raised after
    writing its output may have written anything, so nothing may adopt that file (not the
    next run, not a downstream task, not an upload); the next run runs the task again."""
    for task, ref in prepared.graph.outputs.items():
        if ref is None or ref.key not in failed_keys or not os.path.lexists(ref.path):
            continue
        task.output().remove()
        out(f"luisy: removed {ref.path}: its task failed after writing it, so it is not "
            "trusted; the next run runs the task again")


def _write_report(prepared: PreparedRun, json_path: str | None, cloud: RunSync | None,
                  plan: RunPlan, summary: dict[str, Any], exit_code: int, dry_run: bool) -> None:
    """``--json``: the report of the run, with the cloud part when syncing."""
    if not json_path:
        return
    doc = (cloud.report(plan, summary, exit_code, dry_run) if cloud
           else run_report(prepared.graph, plan, summary, exit_code, dry_run))
    write_json_report(json_path, doc)


def _hash_update(prepared: PreparedRun, dry_run: bool, no_ask: bool,
                 out: Callable[[str], None], sync: RunSync | None = None) -> BuildResult:
    updates = plan_hash_update(prepared.current, prepared.stored, prepared.existing)
    lines = ["luisy hash-update mode: no task runs; stored hashes are refreshed"]
    lines += [f"  {k}" for k in updates] or ["  all stored hashes are current"]
    out("\n".join(lines))
    cloud = sync if sync is not None and sync.uploads else None
    if dry_run or not (updates or cloud):
        if dry_run:
            if cloud:
                cloud.refresh(dry_run=True)
            out("dry run: nothing changed")
        return BuildResult(success=True, exit_code=0)
    if not confirm(f"Update {len(updates)} stored hash(es)?", no_ask):
        out("aborted: nothing changed")
        return BuildResult(success=False, exit_code=0)
    _write_project_hashes(prepared, updates)
    if cloud:
        cloud.refresh(dry_run=False)
    return BuildResult(success=True, exit_code=0, recorded=updates)

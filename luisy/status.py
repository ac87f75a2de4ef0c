"""``luisy status``: for every task of a pipeline, whether its local output is current,
what the cloud holds, the sizes, and for every task a run would run, why.

The plan is the one ``--download`` would make (the cloud's current versions are fetched
instead of computed). Why a task runs comes from the parts of its code hash
(:mod:`luisy.codehash.parts`): the parts recorded beside the local ``.luisy.hash`` when
its output was made, against the current ones. Nothing is changed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import luigi

from luisy.cloud.cloudrun import CloudOptions, CloudRun
from luisy.codehash.parts import NO_RECORD, HashParts, Reason, explain
from luisy.config import Config
from luisy.errors import LuisyError
from luisy.hashfile import CloudEntry, parts_file_path, read_parts_file
from luisy.run import PreparedRun, prepare
from luisy.runplan import RunPlan
from luisy.versions import version_parts, versions_object
from luisy_sync.conventions import format_bytes
from luisy_sync.errors import ContainerNotFound, ManifestError
from luisy_sync.manifest import read_json_object
from luisy_sync.stores.base import Store

CURRENT, OUTDATED, UNRECORDED, MISSING, NO_OUTPUT = "current", "outdated", "unrecorded", "missing", "-"
"""Local states: made by the current code / by other code / no hash recorded / absent /
a task without an output of its own (a wrapper)."""
OTHER, NONE, UNCHECKED = "other", "none", "-"
"""Cloud states besides CURRENT: the cloud's copy was made by other code / no copy / not
looked at. A copy that cannot be downloaded verified (objects missing) counts as none."""
KEEP, RUN, RERUN, DOWNLOAD, BLOCKED, NOT_NEEDED = "keep", "run", "rerun", "download", "blocked", "not needed"
"""Actions: nothing to do / run (no output yet) / delete the outdated output and run again /
fetch the current version from the cloud / external data missing, the run cannot finish /
no output here, and none is needed (what depends on it is kept or downloaded)."""

NEW_OUTPUT = "output"
"""Reason kind: the task has no output yet (nowhere it could be fetched from)."""
EXTERNAL = "external"
"""Reason kind: data made outside the pipeline is missing."""


@dataclass(frozen=True)
class TaskStatus:
    """One task's line of the status."""

    task: str
    key: str | None
    local: str
    cloud: str
    local_bytes: int | None
    cloud_bytes: int | None
    action: str
    reasons: tuple[Reason, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"task": self.task, "key": self.key, "local": self.local, "cloud": self.cloud,
                "local_bytes": self.local_bytes, "cloud_bytes": self.cloud_bytes,
                "action": self.action, "reasons": [r.to_json() for r in self.reasons]}


@dataclass(frozen=True)
class StatusReport:
    """The status of a pipeline: one line per task, upstream first."""

    root: str
    working_dir: str
    remote: str | None
    tasks: tuple[TaskStatus, ...] = ()
    notes: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {"root": self.root, "working_dir": self.working_dir, "remote": self.remote,
                "tasks": [t.to_json() for t in self.tasks], "notes": list(self.notes),
                "counts": self.counts()}

    def counts(self) -> dict[str, int]:
        """How many tasks take each action."""
        out: dict[str, int] = {}
        for t in self.tasks:
            out[t.action] = out.get(t.action, 0) + 1
        return out


def _local_bytes(path: str) -> int | None:
    if os.path.isfile(path):
        return os.path.getsize(path)
    if not os.path.isdir(path):
        return None
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def _cloud_state(entry: CloudEntry | None, downloadable: bool, current: str | None, external: bool) -> str:
    if entry is None or not downloadable:
        return NONE
    return CURRENT if entry.is_current(current, external) else OTHER


def task_statuses(prepared: PreparedRun, plan: RunPlan, recorded: Mapping[str, HashParts],
                  cloud: Mapping[str, CloudEntry] | None, downloadable: Mapping[str, CloudEntry],
                  cloud_parts: Mapping[tuple[str, str], HashParts] | None = None) -> list[TaskStatus]:
    """The status of every task of ``prepared``'s graph under ``plan`` (pure but for the
    sizes of local outputs). ``recorded``: the local record of the parts of each stored
    hash; ``cloud``: the cloud entry used per output, i.e. its stored version with the
    current code hash, else its latest upload (None: the cloud was not read);
    ``downloadable``: the entries whose content can be fetched verified; ``cloud_parts``:
    ``(key, code hash) -> parts`` of the versions in the cloud that carry them."""
    known = _Known(recorded, cloud_parts or {})
    graph = prepared.graph
    stored = prepared.stored
    names = {t.task_id: str(t) for t in graph.tasks}
    to_run, outdated = set(plan.to_run), set(plan.outdated_to_delete)
    blocked, fetched = set(plan.missing_external), set(plan.to_download)
    out: list[TaskStatus] = []
    for task in graph.tasks:
        ref = graph.outputs[task]
        external = graph.is_external(task)
        if ref is None:
            local, size = NO_OUTPUT, None
        elif ref.key not in prepared.existing:
            local, size = MISSING, None
        else:
            size = _local_bytes(ref.path)
            recorded_hash = stored.get(ref.key)
            local = (UNRECORDED if recorded_hash is None else
                     CURRENT if external or recorded_hash == prepared.current.get(ref.key) else OUTDATED)
        entry = cloud.get(ref.key) if cloud is not None and ref is not None else None
        cloud_state = UNCHECKED if cloud is None or ref is None else _cloud_state(
            entry, ref.key in downloadable, prepared.current.get(ref.key), external)
        if task.task_id in blocked:
            action = BLOCKED
        elif ref is not None and ref.key in fetched:
            action = DOWNLOAD
        elif task.task_id in to_run:
            action = RERUN if ref is not None and ref.key in outdated else RUN
        elif local == MISSING:
            action = NOT_NEEDED
        else:
            action = KEEP
        reasons: tuple[Reason, ...] = ()
        if action in (RUN, RERUN, BLOCKED):
            reasons = tuple(_reasons(task, prepared, known, entry, cloud is not None, action, names))
        out.append(TaskStatus(str(task), ref.key if ref else None, local, cloud_state, size,
                              entry.size if entry is not None and cloud_state != NONE else None,
                              action, reasons))
    return out


@dataclass(frozen=True)
class _Known:
    """What earlier hashes were made of: the local record (per key, of its stored hash)
    and the cloud's (per key and code hash)."""

    local: Mapping[str, HashParts]
    cloud: Mapping[tuple[str, str], HashParts]

    def of(self, key: str, code_hash: str | None) -> HashParts | None:
        """The parts of ``key``'s hash ``code_hash``: the local record first."""
        return self.local.get(key) or (self.cloud.get((key, code_hash)) if code_hash else None)


def _reasons(task: luigi.Task, prepared: PreparedRun, known: _Known,
             entry: CloudEntry | None, cloud_read: bool, action: str,
             names: Mapping[str, str]) -> list[Reason]:
    ref = prepared.graph.outputs[task]
    if action == BLOCKED:
        return [Reason(EXTERNAL, str(task), f"external data {ref.key if ref else task} is missing; "
                                            "the run cannot finish without it")]
    if ref is None:
        return [Reason(NEW_OUTPUT, str(task), "a task it requires runs")]
    now = prepared.parts.get(ref.key)
    if action == RERUN:
        old = known.of(ref.key, prepared.stored.get(ref.key))
        if now is not None and old is not None:
            found = explain(old, now, name_of=names.get)
            if found:
                return found
        was, hash_now = prepared.stored.get(ref.key, ""), prepared.current.get(ref.key, "")
        return [Reason(NO_RECORD, str(task), f"its code hash changed ({was[:8]} -> {hash_now[:8]}); "
                                             "no record of what the old hash was made of")]
    where = ("not local, and the cloud holds a copy made by other code" if entry is not None
             else "not local and not in the cloud" if cloud_read else "not local")
    reasons = [Reason(NEW_OUTPUT, ref.key, f"no output yet ({where})")]
    if entry is not None and now is not None:  # why the cloud's copy is not the current one
        old = known.cloud.get((ref.key, entry.code_hash))
        reasons += explain(old, now, name_of=names.get) if old is not None else []
    return reasons


async def _version_parts(store: Store, projects: list[str]) -> dict[tuple[str, str], HashParts]:
    """The parts the cloud's versions carry, of each project's index (one read each; an
    index that cannot be read explains nothing)."""
    out: dict[tuple[str, str], HashParts] = {}
    for project in projects:
        try:
            doc, _etag = await read_json_object(store, versions_object(project))
        except (ManifestError, ContainerNotFound):
            continue
        out.update(version_parts(doc))
    return out


def collect_status(root: luigi.Task, *, cloud: bool = True, remote: str | None = None,
                   say: Callable[[str], None] = print) -> StatusReport:
    """The status of ``root``'s pipeline. ``cloud``: also read the cloud (the remote a run
    with ``--download`` would use); when it cannot be read, ``say`` tells why and the
    status goes on without it."""
    prepared = prepare(root)
    wd = Config().working_dir
    recorded: dict[str, HashParts] = {}
    for project in sorted(prepared.graph.projects()):
        recorded.update(read_parts_file(parts_file_path(wd, project)))
    sync: CloudRun | None = None
    notes: list[str] = []
    if cloud:
        try:
            sync = CloudRun.start(prepared, CloudOptions(download=True, remote=remote, progress=False),
                                  out=say)
        except LuisyError as exc:
            notes.append(f"cloud not checked: {exc}")
    downloadable = sync.plan_entries() if sync is not None else {}
    cloud_parts = sync.session.call(_version_parts, sync.session.store(), sorted(prepared.graph.projects())
                                    ) if sync is not None and sync.state.container_exists else {}
    plan = prepared.plan(downloadable if sync is not None else None, download=sync is not None)
    used = sync.state.used_entries(sync.is_dir) if sync is not None else None
    tasks = task_statuses(prepared, plan, recorded, used, downloadable, cloud_parts)
    return StatusReport(str(root), wd, sync.session.description if sync is not None else None,
                        tuple(tasks), tuple(notes))


def _size(n: int | None) -> str:
    return "-" if n is None else format_bytes(n)


def render_status(report: StatusReport) -> str:
    """The status as text: a table, the reasons below each task that runs, and a summary."""
    rows = [("TASK", "LOCAL", "CLOUD", "LOCAL SIZE", "CLOUD SIZE", "ACTION")]
    rows += [(t.task, t.local, t.cloud, _size(t.local_bytes), _size(t.cloud_bytes), t.action)
             for t in report.tasks]
    width = [min(max(len(r[i]) for r in rows), 60 if i == 0 else 20) for i in range(len(rows[0]))]

    def line(row: Iterable[str]) -> str:
        cells = list(row)
        task = cells[0] if len(cells[0]) <= width[0] else cells[0][:width[0] - 1] + "…"
        return "  ".join([task.ljust(width[0]), *(c.ljust(w) if i < 2 else c.rjust(w) if i < 4 else c
                                                  for i, (c, w) in enumerate(zip(cells[1:], width[1:])))])

    out = [f"luisy status of {report.root} (working dir {report.working_dir}; "
           f"cloud: {report.remote or 'not checked'})", line(rows[0])]
    for status, row in zip(report.tasks, rows[1:]):
        out.append(line(row))
        out += [f"    why: {reason.text}" for reason in status.reasons]
    counts = report.counts()
    out.append(f"{len(report.tasks)} task(s): " + ", ".join(f"{counts[a]} {a}" for a in
                                                            (KEEP, DOWNLOAD, RUN, RERUN, BLOCKED, NOT_NEEDED)
                                                            if a in counts))
    out += [f"note: {n}" for n in report.notes]
    return "\n".join(out)

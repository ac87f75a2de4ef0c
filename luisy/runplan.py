"""Pure run planner: what to delete, run, download and upload before/after a luigi run.

No I/O and no luigi here: the caller describes the graph with :class:`PlanTask` values
and hands in hashes and the set of outputs that exist; the result is a :class:`RunPlan`.
It mirrors luigi's scheduling: starting at the roots, a task whose output is present is
complete and its requirements are not looked at; an incomplete task runs after its
requirements.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass

from luisy.hashfile import CloudEntry

CloudEntries = Mapping[str, CloudEntry]


@dataclass(frozen=True)
class PlanTask:
    """One task of the graph.

    name: unique id (luigi task_id). key: output key, ``None`` when the task has no
    output of its own (wrapper tasks complete when their requirements are complete).
    deps: names of required tasks. external: data made outside the pipeline.
    """

    name: str
    key: str | None
    deps: tuple[str, ...] = ()
    external: bool = False


@dataclass(frozen=True)
class RunPlan:
    """What a run will do.

    to_run: task names luigi will run, requirements first.
    outdated_to_delete: keys of existing outputs whose stored hash differs from the current one.
    up_to_date: keys of outputs that exist and stay.
    unrecorded: keys of existing outputs without a stored hash (recorded after the run).
    missing_external: names of external tasks whose data is missing (the run cannot finish).
    to_download: keys fetched from the cloud instead of running (``--download``).
    to_upload: keys whose cloud hash differs from the current one after the run (``--upload``).
    """

    to_run: tuple[str, ...] = ()
    outdated_to_delete: tuple[str, ...] = ()
    up_to_date: tuple[str, ...] = ()
    unrecorded: tuple[str, ...] = ()
    missing_external: tuple[str, ...] = ()
    to_download: tuple[str, ...] = ()
    to_upload: tuple[str, ...] = ()

    @property
    def changes_anything(self) -> bool:
        """Whether running the plan would delete, run or transfer anything."""
        return bool(self.to_run or self.outdated_to_delete or self.to_download or self.to_upload)


def outdated_keys(
    tasks: Sequence[PlanTask], current: Mapping[str, str], stored: Mapping[str, str],
    existing: Set[str],
) -> list[str]:
    """Existing, non-external outputs whose stored hash differs from the current hash."""
    out = []
    for t in tasks:
        k = t.key
        if k is None or t.external or k not in existing or k not in stored:
            continue
        if k in current and stored[k] != current[k]:
            out.append(k)
    return sorted(set(out))


def _downloadable(task: PlanTask, current: Mapping[str, str], cloud: CloudEntries) -> bool:
    entry = cloud.get(task.key) if task.key is not None else None
    return entry is not None and entry.is_current(current.get(task.key or ""), task.external)


def plan_run(
    tasks: Sequence[PlanTask],
    roots: Sequence[str],
    current: Mapping[str, str],
    stored: Mapping[str, str],
    existing: Set[str],
    cloud: CloudEntries | None = None,
    *,
    download: bool = False,
    upload: bool = False,
) -> RunPlan:
    """Plan a run of ``roots``; ``cloud`` is ``None`` when not syncing."""
    by_name = {t.name: t for t in tasks}
    unknown = [r for r in roots if r not in by_name]
    if unknown:
        raise KeyError(f"root task(s) not in the graph: {unknown}")
    to_delete = outdated_keys(tasks, current, stored, existing)
    present = set(existing) - set(to_delete)
    use_cloud = cloud is not None and download

    complete_memo: dict[str, bool] = {}
    to_download: list[str] = []
    to_run: list[str] = []
    missing_external: list[str] = []
    visited: set[str] = set()

    def is_complete(name: str) -> bool:
        """luigi's complete(): output present (after deletion) or, for wrappers, all deps."""
        if name in complete_memo:
            return complete_memo[name]
        t = by_name[name]
        if t.key is None:
            result = all(is_complete(d) for d in t.deps)
        else:
            result = t.key in present or t.key in to_download
        complete_memo[name] = result
        return result

    # Iterative post-order walk from the roots over incomplete tasks only.
    for root in roots:
        stack: list[tuple[str, bool]] = [(root, False)]
        while stack:
            name, expanded = stack.pop()
            t = by_name[name]
            if expanded:
                to_run.append(name)
                complete_memo[name] = False
                continue
            if name in visited:
                continue
            visited.add(name)
            if is_complete(name):
                continue
            if use_cloud and cloud is not None and t.key is not None and _downloadable(t, current, cloud):
                to_download.append(t.key)
                complete_memo.pop(name, None)
                continue
            if t.external:
                missing_external.append(name)
                continue
            stack.append((name, True))
            stack.extend((d, False) for d in reversed(t.deps) if d not in visited)
            complete_memo.pop(name, None)

    run_keys = {by_name[n].key for n in to_run} - {None}
    up_to_date = sorted(k for t in tasks if (k := t.key) is not None and k in present)
    unrecorded = sorted(k for k in up_to_date if k not in stored)
    to_upload: list[str] = []
    if upload and cloud is not None:
        after = present | run_keys | set(to_download)
        for t in tasks:
            k = t.key
            if k is None or k not in after or k not in current:
                continue
            entry = cloud.get(k)
            if entry is None or not entry.is_current(current[k], external=False):
                to_upload.append(k)
    return RunPlan(
        to_run=tuple(to_run),
        outdated_to_delete=tuple(to_delete),
        up_to_date=tuple(up_to_date),
        unrecorded=tuple(unrecorded),
        missing_external=tuple(sorted(missing_external)),
        to_download=tuple(sorted(set(to_download))),
        to_upload=tuple(sorted(set(to_upload))),
    )


def plan_hash_update(
    current: Mapping[str, str], stored: Mapping[str, str], existing: Set[str]
) -> dict[str, str]:
    """Hash-update mode: stored hashes of existing outputs that differ, with their new value.

    Outputs without a stored hash are not added (as in luisy 1.4.7).
    """
    return {
        k: h for k, h in sorted(current.items())
        if k in stored and k in existing and stored[k] != h
    }


def hashes_to_record(
    current: Mapping[str, str], existing_after: Set[str], failed: Set[str]
) -> dict[str, str]:
    """After a run: current hashes of outputs that exist and whose task did not fail."""
    return {k: h for k, h in current.items() if k in existing_after and k not in failed}

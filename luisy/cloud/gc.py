"""``luisy gc``: drop cloud versions that no latest pointer references and that are older
than a grace period, and delete the content only they named (a coroutine, run on the
bridge loop by :mod:`luisy.cloud.verbs`). What goes is decided by :mod:`luisy.gcplan`.

A dry run (the default) lists the store once, reads every project's versions index and
cloud hash file, and reports counts, bytes and the monthly saving. Applied, gc works in
an order that keeps every object a version names, even against uploads running at the
same time:

1. each project's index is pruned by a conditional write; the stale versions are decided
   again on every read of the write (a version that became the latest meanwhile stays);
2. every index and hash file is read again, after all prunes;
3. each content object still named by nothing is looked at (HEAD) just before it is
   deleted, and kept when it was written after the cutoff.

An upload that relied on content without putting it checks, before its own conditional
write of the index, that the index still names that content, and puts it again otherwise
(:mod:`luisy.cloud.sync`), so the content is newer than the cutoff when step 3 looks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import anyio

from luisy.cloud.state import parse_versions_doc, read_entries
from luisy.gcplan import GcPlan, plan_gc, prune, referenced_digests, upload_times, written_before
from luisy.hashfile import HASH_FILE_NAME, CloudEntry
from luisy.versions import CAS_PREFIX, VERSIONS_FILE_NAME, Versions, versions_object
from luisy_sync.conventions import format_bytes
from luisy_sync.errors import ContainerNotFound, NotFoundError
from luisy_sync.manifest import read_json_object, update_json_object
from luisy_sync.retry import RetryPolicy, call_with_retry
from luisy_sync.stores.base import ObjectInfo, Store

DEFAULT_GRACE_DAYS = 7.0


@dataclass(frozen=True)
class GcReport:
    """What one ``luisy gc`` found and, when applied, did."""

    plan: GcPlan
    grace_days: float
    applied: bool = False
    versions_dropped: int = 0
    objects_deleted: int = 0
    bytes_deleted: int = 0
    kept_at_delete: tuple[str, ...] = field(default=())
    """Content objects that were due but had been written again (or named) by the time
    gc came to delete them."""

    def summary_lines(self, price_per_gib_month: float) -> list[str]:
        """Human lines: what a dry run would remove, or what was removed."""
        plan = self.plan
        saving = plan.monthly_saving(price_per_gib_month)
        head = (f"{len(plan.versions)} version(s) older than {self.grace_days:g} day(s) that no latest "
                f"pointer references, {len(plan.objects)} content object(s) ({format_bytes(plan.bytes)}) "
                f"only they name; {plan.versions_kept} version(s) and {plan.objects_kept} object(s) stay; "
                f"saves about {saving:.2f} USD/month at {price_per_gib_month:g} USD per GiB-month")
        lines = [f"{'removed' if self.applied else 'would remove'}: {head}"]
        for v in plan.versions[:20]:
            lines.append(f"  {v.key} @ {v.code_hash[:12]} ({format_bytes(v.size)}, uploaded "
                         f"{time.strftime('%Y-%m-%d', time.gmtime(v.uploaded))})")
        if len(plan.versions) > 20:
            lines.append(f"  ... and {len(plan.versions) - 20} more")
        if self.applied:
            lines.append(f"dropped {self.versions_dropped} version(s), deleted {self.objects_deleted} "
                         f"object(s) ({format_bytes(self.bytes_deleted)})"
                         + (f"; {len(self.kept_at_delete)} kept (written again meanwhile)"
                            if self.kept_at_delete else ""))
        else:
            lines.append("dry run: nothing was changed; luisy gc --yes removes them")
        return lines

    def to_json(self, price_per_gib_month: float) -> dict[str, Any]:
        plan = self.plan
        return {"applied": self.applied, "grace_days": self.grace_days,
                "versions": [{"project": v.project, "key": v.key, "code_hash": v.code_hash,
                              "uploaded": v.uploaded, "bytes": v.size} for v in plan.versions],
                "objects": [{"name": o.name, "bytes": o.size} for o in plan.objects],
                "bytes": plan.bytes, "versions_kept": plan.versions_kept, "objects_kept": plan.objects_kept,
                "monthly_saving_usd": round(plan.monthly_saving(price_per_gib_month), 4),
                "price_per_gib_month_usd": price_per_gib_month,
                "versions_dropped": self.versions_dropped, "objects_deleted": self.objects_deleted,
                "bytes_deleted": self.bytes_deleted, "kept_at_delete": list(self.kept_at_delete)}


@dataclass
class _Snapshot:
    indexes: dict[str, tuple[Versions, dict[tuple[str, str], float]]] = field(default_factory=dict)
    latest: dict[str, dict[str, CloudEntry]] = field(default_factory=dict)
    content: dict[str, ObjectInfo] = field(default_factory=dict)


async def _snapshot(store: Store, policy: RetryPolicy | None) -> _Snapshot:
    """One listing of the store, then every project's versions index and hash file."""
    snap = _Snapshot()
    try:
        listed = await call_with_retry(store.list, "", policy=policy, describe=f"list {store.url}")
    except ContainerNotFound:
        return snap
    projects: set[str] = set()
    for info in listed:
        if info.name.startswith(CAS_PREFIX + "/"):
            snap.content[info.name] = info
        else:
            project, _, rest = info.name.partition("/")
            if rest in (VERSIONS_FILE_NAME, HASH_FILE_NAME):
                projects.add(project)

    async def one(project: str) -> None:
        name = versions_object(project)
        doc, _etag = await read_json_object(store, name, policy=policy)
        snap.indexes[project] = (parse_versions_doc(doc, f"{store.url}/{name}"), upload_times(doc))
        snap.latest[project] = (await read_entries(store, project, policy))[1]

    async with anyio.create_task_group() as tg:
        for project in sorted(projects):
            tg.start_soon(one, project)
    return snap


async def _prune(store: Store, project: str, cutoff: float, policy: RetryPolicy | None) -> int:
    """Drop the stale versions of one project's index by conditional write; returns how
    many went."""
    name = versions_object(project)
    where = f"{store.url}/{name}"
    latest: dict[str, CloudEntry] = {}
    dropped = 0

    async def refresh() -> None:
        latest.clear()
        latest.update((await read_entries(store, project, policy))[1])

    def merge(doc: dict[str, Any] | None) -> dict[str, Any]:
        nonlocal dropped
        if doc is None:
            dropped = 0
            return {}
        versions = parse_versions_doc(doc, where)
        pruned = prune(doc, versions, latest, cutoff)
        dropped = sum(len(v) for v in versions.values()) - sum(len(v) for v in pruned["versions"].values())
        return pruned if dropped else doc

    await update_json_object(store, name, merge, policy=policy, refresh=refresh)
    return dropped


async def _delete_if_still_unnamed(store: Store, info: ObjectInfo, named: set[str], cutoff: float,
                                   policy: RetryPolicy | None) -> bool:
    """Delete one content object unless it is named or was written after the cutoff."""
    digest = info.name.rsplit("/", 1)[-1]
    if digest in named:
        return False
    try:
        now = await call_with_retry(store.head, info.name, policy=policy, describe=f"head {info.name}")
    except NotFoundError:
        return False
    if not written_before(now, cutoff):
        return False
    await call_with_retry(store.delete, info.name, policy=policy, describe=f"delete {info.name}")
    return True


async def collect_garbage(store: Store, *, grace_days: float = DEFAULT_GRACE_DAYS, apply: bool = False,
                          now: float | None = None, policy: RetryPolicy | None = None) -> GcReport:
    """Plan (and with ``apply`` carry out) a garbage collection of ``store`` (see the module
    docstring); ``now``: the time the grace period counts back from (default: now)."""
    cutoff = (time.time() if now is None else now) - grace_days * 86400.0
    snap = await _snapshot(store, policy)
    plan = plan_gc(snap.indexes, snap.latest, snap.content, cutoff)
    if not apply or not (plan.versions or plan.objects):
        return GcReport(plan, grace_days, applied=apply)
    dropped = 0
    for project in sorted({v.project for v in plan.versions}):
        dropped += await _prune(store, project, cutoff, policy)
    after = await _snapshot(store, policy)
    named = referenced_digests([versions for versions, _ in after.indexes.values()], after.latest.values())
    deleted: list[ObjectInfo] = []
    kept_now: list[str] = []

    async def one(info: ObjectInfo) -> None:
        if await _delete_if_still_unnamed(store, info, named, cutoff, policy):
            deleted.append(info)
        else:
            kept_now.append(info.name)

    async with anyio.create_task_group() as tg:
        for info in plan.objects:
            tg.start_soon(one, info)
    return GcReport(plan, grace_days, applied=True, versions_dropped=dropped,
                    objects_deleted=len(deleted), bytes_deleted=sum(i.size for i in deleted),
                    kept_at_delete=tuple(sorted(kept_now)))

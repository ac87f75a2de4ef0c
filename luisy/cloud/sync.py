"""Moving outputs between the working dir and the store: one :func:`download` and one
:func:`upload` (coroutines, run on the bridge loop by :mod:`luisy.cloud.verbs`).

Downloads: every object of every requested output goes through one ``Transfer`` (one
request limit), verified against the digest from the cloud hash file, into a staging
directory inside the working dir; an output is renamed into place only when all its
files arrived, so luigi never sees half an output (directory outputs included).

Uploads: the outputs are scanned (hashed) and planned by the engine's ``plan_push``
against the listing, with luisy's rules on top (see :func:`plan_uploads`); the objects
whose content the store lacks go up through one ``Transfer``, then each project's cloud
hash file is updated once with the entries of the outputs whose content is now there.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

import anyio

from luisy.cloud.state import CloudState, update_cloud_hash
from luisy.errors import CorruptCloudHash, NotRecorded
from luisy.graph import Output, OutputRef
from luisy.hashfile import CloudEntry, output_object, project_of
from luisy_sync.conventions import format_bytes, temp_name
from luisy_sync.errors import SyncError, one_line
from luisy_sync.plan import PULL, PUSH, plan_push
from luisy_sync.progress import ProgressCallback, make_progress
from luisy_sync.report import Report
from luisy_sync.scan import tree_from_paths
from luisy_sync.statcache import open_default_cache
from luisy_sync.stores.base import Store
from luisy_sync.moves import download_paths, upload_paths
from luisy_sync.transfer import DEFAULT_CONCURRENCY, Transfer
from luisy_sync.tree import FileEntry, Tree

Progress = bool | ProgressCallback | None


@dataclass(frozen=True)
class OutputsReport:
    """What one download or upload did per output key, over the engine's file-level
    :class:`~luisy_sync.report.Report`. ``held``: outputs not uploaded although they
    differ, with why (see :func:`plan_uploads`)."""

    report: Report
    keys_done: tuple[str, ...] = ()
    keys_failed: tuple[tuple[str, str], ...] = ()
    planned: tuple[str, ...] = ()
    held: tuple[tuple[str, str], ...] = ()

    @property
    def direction(self) -> str:
        """``upload`` or ``download``."""
        return "upload" if self.report.direction == PUSH else "download"

    @property
    def ok(self) -> bool:
        """True when no output failed."""
        return not self.keys_failed

    @property
    def files(self) -> int:
        """Files moved."""
        return len(self.report.moved)

    def summary_line(self) -> str:
        """One line: outputs, files, bytes, seconds, rate in binary units (and failures)."""
        direction, report = self.direction, self.report
        if not (self.planned or self.keys_done or self.keys_failed):
            where = "the cloud" if direction == "upload" else "the working dir"
            if self.held:
                return f"{direction}: nothing to {direction}; {len(self.held)} held back"
            return f"{direction}: nothing to {direction}, {where} is up to date"
        if report.dry_run:
            return (f"{direction}: dry run, would move {len(self.planned)} output(s), "
                    f"{format_bytes(report.bytes_planned)}")
        line = (f"{direction}: {len(self.keys_done)} output(s), {self.files} file(s), "
                f"{format_bytes(report.bytes_transferred)} in {report.seconds:.2f} s, "
                f"{format_bytes(report.bytes_per_second)}/s")
        if self.keys_failed:
            key, reason = self.keys_failed[0]
            line += f"; {len(self.keys_failed)} failed, first {key}: {reason}"
        return line

    def to_dict(self) -> dict[str, object]:
        """The JSON form used in ``luisy --json`` reports."""
        report = self.report
        return {"direction": self.direction, "outputs": list(self.keys_done),
                "failed": [{"key": k, "reason": r} for k, r in self.keys_failed],
                "files": self.files, "bytes": report.bytes_transferred,
                "seconds": round(report.seconds, 4), "dry_run": report.dry_run,
                "planned": list(self.planned), "planned_bytes": report.bytes_planned,
                "held": [{"key": k, "reason": r} for k, r in self.held]}


def nothing(direction: str) -> OutputsReport:
    """The report of a download or upload that had nothing to do."""
    return OutputsReport(Report(PUSH if direction == "upload" else PULL))


# -- download -------------------------------------------------------------------------------

def _place(staging: str, working_dir: str, key: str, is_dir: bool, empty: bool) -> None:
    """Move a complete downloaded output from the staging dir onto its final name."""
    rel = output_object(key).split("/")
    src = os.path.join(staging, *rel)
    dst = os.path.join(working_dir, *rel)
    if is_dir and empty:
        os.makedirs(src, exist_ok=True)
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    if os.path.isdir(dst) and not os.path.islink(dst):
        shutil.rmtree(dst)
    elif os.path.lexists(dst):
        os.remove(dst)
    os.replace(src, dst)


async def download(store: Store, working_dir: str, outputs: Iterable[OutputRef], state: CloudState, *,
                   concurrency: int = DEFAULT_CONCURRENCY, progress: Progress = None) -> OutputsReport:
    """Download ``outputs`` named in ``state`` into ``working_dir`` (all at once, verified).

    Outputs without verifiable cloud content fail with a reason and are not touched.
    """
    started = time.monotonic()
    wanted: dict[str, tuple[bool, dict[str, FileEntry]]] = {}
    missing: list[tuple[str, str]] = []
    for ref in outputs:
        files = state.expected_files(ref.key, ref.is_dir)
        if files is None:
            missing.append((ref.key, "no verifiable content in the cloud"))
        else:
            wanted[ref.key] = (ref.is_dir, files)
    await anyio.to_thread.run_sync(lambda: os.makedirs(working_dir, exist_ok=True))
    if not wanted:
        return OutputsReport(Report(PULL), keys_failed=tuple(sorted(missing)))
    expected = Tree({obj: fe for _, files in wanted.values() for obj, fe in files.items()})
    staging = os.path.join(working_dir, temp_name("luisy-download"))
    transfer = Transfer(concurrency=concurrency, progress=make_progress(progress))
    done: list[str] = []
    failed: list[tuple[str, str]] = []
    try:
        await anyio.to_thread.run_sync(lambda: os.makedirs(staging, exist_ok=True))
        result = await download_paths(store, staging, list(expected), expected, transfer=transfer)
        reasons = dict(result.failed)
        for key, (is_dir, files) in sorted(wanted.items()):
            bad = next((obj for obj in files if obj in reasons), None)
            if bad is not None:
                failed.append((key, f"{bad}: {reasons[bad]}"))
                continue
            try:
                await anyio.to_thread.run_sync(_place, staging, working_dir, key, is_dir, not files)
            except OSError as exc:
                failed.append((key, one_line(exc)))
            else:
                done.append(key)
    finally:
        await anyio.to_thread.run_sync(lambda: shutil.rmtree(staging, ignore_errors=True))
    report = Report(PULL, downloaded=tuple(result.done), failed=tuple(result.failed),
                    bytes_transferred=result.bytes_transferred, seconds=time.monotonic() - started,
                    files_planned=len(expected), bytes_planned=expected.total_bytes)
    return OutputsReport(report, tuple(done), tuple(sorted([*failed, *missing])),
                         planned=tuple(sorted(wanted)))


# -- upload ---------------------------------------------------------------------------------

async def scan_outputs(working_dir: str, keys: Iterable[str]) -> Tree:
    """Sizes and digests of the local files of ``keys`` (missing outputs left out)."""
    keys = sorted(keys)
    if not keys:
        return Tree(root=working_dir)
    cache = open_default_cache()
    try:
        return await tree_from_paths(working_dir, [output_object(k) for k in keys],
                                     cache=cache, missing="skip")
    finally:
        cache.close()


HELD_REASON = ("its content differs from the cloud copy made by the same code; kept the cloud "
               "copy (rerun the task to replace it, or delete the local file and --download)")


@dataclass(frozen=True)
class UploadPlan:
    """Entries to write per key and the objects whose content must go up first.

    ``held``: outputs not uploaded although they differ, key -> why (see plan_uploads)."""

    entries: dict[str, CloudEntry]
    content: dict[str, list[str]]
    held: dict[str, str] = field(default_factory=dict)

    @property
    def keys(self) -> tuple[str, ...]:
        """The keys to upload, sorted."""
        return tuple(sorted(self.entries))


def plan_uploads(outputs: Iterable[Output], local: Tree, state: CloudState, *,
                 replace: Collection[str] | None = None) -> UploadPlan:
    """Pure: for ``outputs`` scanned into ``local``, the entries that differ from the cloud
    and the objects the store lacks (``plan_push`` of ``local`` onto the listing).

    An output whose cloud entry already equals the local one is still planned when an
    object of it is missing from the listing or listed with another digest or size: the
    upload repairs the store (a missing or differing object counts as "differs").

    An output whose content differs from an intact cloud copy with the same code hash is
    only planned when its key is in ``replace`` (None: every key), e.g. because this run
    computed it; otherwise it is ``held``: a local file changed without a code change
    (truncated, edited by hand) never silently replaces a good cloud copy."""
    same = set(plan_push(local, state.objects).skip)
    entries: dict[str, CloudEntry] = {}
    content: dict[str, list[str]] = {}
    held: dict[str, str] = {}
    for out in sorted(outputs, key=lambda o: o.key):
        key = out.key
        entry = CloudEntry.describing(out.code_hash, key, out.is_dir, local)
        if entry is None:  # the caller passes existing outputs; a vanished file is skipped
            continue
        lacking = sorted(n for n in entry.objects(key) if n not in same)
        cloud = state.entries.get(key)
        if cloud == entry and not lacking:
            continue
        if cloud is not None and cloud.code_hash == out.code_hash and (replace is not None
                                                                       and key not in replace):
            theirs = cloud.objects(key)
            if theirs and len(state.content_matches(theirs)) == len(theirs):
                held[key] = HELD_REASON
                continue
        entries[key] = entry
        content[key] = lacking
    return UploadPlan(entries, content, held)


async def _record(store: Store, entries: Mapping[str, dict[str, CloudEntry]], transfer: Transfer,
                  failed: list[tuple[str, str]]) -> None:
    """Name uploaded content in each project's cloud hash file (once per project); an
    entry a concurrent upload replaced is dropped from ``entries`` and noted in ``failed``."""

    async def name(project: str, updates: dict[str, CloudEntry]) -> None:
        doc = await update_cloud_hash(store, project, updates, policy=transfer.policy)
        for key in [k for k, entry in updates.items() if doc.get(k) != entry.to_json()]:
            del updates[key]  # a concurrent upload replaced the content: the cloud keeps that
            failed.append((key, "another upload replaced it at the same time; the cloud keeps "
                                "that copy and its entry"))

    try:
        async with anyio.create_task_group() as tg:
            for project, updates in sorted(entries.items()):
                tg.start_soon(name, project, updates)
    except* CorruptCloudHash as group:
        raise group.exceptions[0] from None
    except* SyncError as group:
        raise NotRecorded(group.exceptions[0]) from None


async def upload(store: Store, working_dir: str, outputs: Iterable[Output], state: CloudState, *,
                 replace: Collection[str] | None = None, concurrency: int = DEFAULT_CONCURRENCY,
                 progress: Progress = None, dry_run: bool = False) -> OutputsReport:
    """Upload the ``outputs`` whose hash or content differs from the cloud, then name them
    in the cloud hash files; ``state`` gets the entries written. ``replace``: the keys
    that may replace an intact cloud copy of the same code hash (None: all)."""
    started = time.monotonic()
    outputs = list(outputs)
    local = await scan_outputs(working_dir, [o.key for o in outputs])
    plan = plan_uploads(outputs, local, state, replace=replace)
    paths = sorted({p for objs in plan.content.values() for p in objs})
    planned_bytes = sum(local[p].size for p in paths)
    held = tuple(sorted(plan.held.items()))
    if dry_run or not plan.entries:
        report = Report(PUSH, seconds=time.monotonic() - started, files_planned=len(paths),
                        bytes_planned=planned_bytes, dry_run=dry_run)
        return OutputsReport(report, planned=plan.keys, held=held)
    transfer = Transfer(concurrency=concurrency, progress=make_progress(progress))
    if paths:
        await store.ensure_container(True)
    result = await upload_paths(store, working_dir, paths, local, transfer=transfer)
    reasons = dict(result.failed)
    ok: dict[str, dict[str, CloudEntry]] = {}
    failed: list[tuple[str, str]] = []
    for key in plan.keys:
        bad = next((p for p in plan.content[key] if p in reasons), None)
        if bad is not None:
            failed.append((key, f"{bad}: {reasons[bad]}"))
        else:
            ok.setdefault(project_of(key), {})[key] = plan.entries[key]
    await _record(store, ok, transfer, failed)
    for updates in ok.values():
        state.entries.update(updates)
    report = Report(PUSH, uploaded=tuple(result.done), failed=tuple(result.failed),
                    bytes_transferred=result.bytes_transferred, seconds=time.monotonic() - started,
                    files_planned=len(paths), bytes_planned=planned_bytes)
    done = tuple(sorted(k for updates in ok.values() for k in updates))
    return OutputsReport(report, done, tuple(sorted(failed)), planned=plan.keys, held=held)


async def refresh_cloud_hashes(store: Store, outputs: Iterable[Output], state: CloudState, *,
                               dry_run: bool = False) -> list[str]:
    """Hash-update mode: give cloud entries whose content is in the store the current hash."""
    updates: dict[str, dict[str, CloudEntry]] = {}
    for out in sorted(outputs, key=lambda o: o.key):
        entry = state.entries.get(out.key)
        if entry is None or entry.code_hash == out.code_hash:
            continue
        files = state.expected_files(out.key, out.is_dir)
        if files is None:
            continue
        new = CloudEntry.describing(out.code_hash, out.key, out.is_dir, files)
        if new is not None:
            updates.setdefault(project_of(out.key), {})[out.key] = new
    if not dry_run:
        for project, entries in sorted(updates.items()):
            await update_cloud_hash(store, project, entries)
            state.entries.update(entries)
    return sorted(k for entries in updates.values() for k in entries)


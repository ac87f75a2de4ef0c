"""Moving outputs between the working dir and the store (coroutines run on the bridge loop).

Downloads: every object of every requested output goes through one ``Transfer`` (one
request limit), verified against the digest from the cloud hash file, into a staging
directory inside the working dir; an output is renamed into place only when all its
files arrived, so luigi never sees half an output (directory outputs included).

Uploads: the outputs are scanned (hashed), the objects whose content the store lacks
go up through one ``Transfer``, then each project's cloud hash file is updated once
with the entries of the outputs whose content is now in the store.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Container, Mapping
from dataclasses import dataclass, field

import anyio

from luisy.cloud.cloudhash import CloudState, Entry, entry_objects, local_entry, update_cloud_hash
from luisy.cloud.remote import CloudError, object_name, project_of
from luisy_sync.errors import SyncError, one_line
from luisy_sync.progress import ProgressCallback, make_progress
from luisy_sync.report import format_bytes
from luisy_sync.scan import tree_from_paths
from luisy_sync.statcache import open_default_cache
from luisy_sync.conventions import temp_name
from luisy_sync.stores.base import Store
from luisy_sync.transfer import DEFAULT_CONCURRENCY, Transfer, download_paths, upload_paths
from luisy_sync.tree import FileEntry, Tree


@dataclass(frozen=True)
class SyncOutcome:
    """What one download or upload batch did, per output key and in files/bytes."""

    direction: str
    keys_done: tuple[str, ...] = ()
    keys_failed: tuple[tuple[str, str], ...] = ()
    files: int = 0
    bytes: int = 0
    seconds: float = 0.0
    planned: tuple[str, ...] = ()
    planned_bytes: int = 0
    dry_run: bool = False
    held: tuple[tuple[str, str], ...] = ()

    @property
    def ok(self) -> bool:
        return not self.keys_failed

    def summary_line(self) -> str:
        """One line: outputs, files, bytes, seconds, rate in binary units (and failures)."""
        if not (self.planned or self.keys_done or self.keys_failed):
            where = "the cloud" if self.direction == "upload" else "the working dir"
            if self.held:
                return f"{self.direction}: nothing to {self.direction}; {len(self.held)} held back"
            return f"{self.direction}: nothing to {self.direction}, {where} is up to date"
        if self.dry_run:
            return (f"{self.direction}: dry run, would move {len(self.planned)} output(s), "
                    f"{format_bytes(self.planned_bytes)}")
        rate = self.bytes / self.seconds if self.seconds > 0 else 0.0
        line = (f"{self.direction}: {len(self.keys_done)} output(s), {self.files} file(s), "
                f"{format_bytes(self.bytes)} in {self.seconds:.2f} s, {format_bytes(rate)}/s")
        if self.keys_failed:
            key, reason = self.keys_failed[0]
            line += f"; {len(self.keys_failed)} failed, first {key}: {reason}"
        return line

    def to_dict(self) -> dict[str, object]:
        return {"direction": self.direction, "outputs": list(self.keys_done),
                "failed": [{"key": k, "reason": r} for k, r in self.keys_failed],
                "files": self.files, "bytes": self.bytes, "seconds": round(self.seconds, 4),
                "dry_run": self.dry_run, "planned": list(self.planned),
                "planned_bytes": self.planned_bytes,
                "held": [{"key": k, "reason": r} for k, r in self.held]}


def _progress(progress: bool | ProgressCallback | None) -> ProgressCallback:
    return make_progress(progress)


def _place(staging: str, working_dir: str, key: str, is_dir: bool, empty: bool) -> None:
    """Move a complete downloaded output from the staging dir onto its final name."""
    rel = object_name(key).split("/")
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


async def download_outputs(store: Store, working_dir: str,
                           wanted: Mapping[str, tuple[bool, Mapping[str, FileEntry]]], *,
                           concurrency: int = DEFAULT_CONCURRENCY,
                           progress: bool | ProgressCallback | None = None) -> SyncOutcome:
    """Download outputs ``key -> (is_dir, {object: expected entry})`` into ``working_dir``."""
    started = time.monotonic()
    expected = Tree({obj: fe for _, files in wanted.values() for obj, fe in files.items()})
    staging = os.path.join(working_dir, temp_name("luisy-download"))
    transfer = Transfer(concurrency=concurrency, progress=_progress(progress))
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
    return SyncOutcome("download", tuple(done), tuple(failed), files=len(result.done),
                       bytes=result.bytes_transferred, seconds=time.monotonic() - started,
                       planned=tuple(sorted(wanted)), planned_bytes=expected.total_bytes)


async def scan_outputs(working_dir: str, keys: list[str]) -> Tree:
    """Sizes and digests of the local files of ``keys`` (missing outputs left out)."""
    if not keys:
        return Tree(root=working_dir)
    cache = open_default_cache()
    try:
        return await tree_from_paths(working_dir, [object_name(k) for k in keys],
                                     cache=cache, missing="skip")
    finally:
        cache.close()


HELD_REASON = ("its content differs from the cloud copy made by the same code; kept the cloud "
               "copy (rerun the task to replace it, or delete the local file and --download)")


@dataclass(frozen=True)
class UploadPlan:
    """Entries to write per key and the objects whose content must go up first.

    ``held``: outputs not uploaded although they differ, key -> why (see plan_uploads)."""

    entries: dict[str, Entry]
    content: dict[str, list[str]]
    held: dict[str, str] = field(default_factory=dict)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(sorted(self.entries))


def plan_uploads(outputs: Mapping[str, tuple[bool, str]], local: Tree, state: CloudState, *,
                 replace: Container[str] | None = None) -> UploadPlan:
    """Pure: for outputs ``key -> (is_dir, code hash)`` scanned into ``local``, the entries
    that differ from the cloud and the objects the store lacks (or holds differently).

    An output whose cloud entry already equals the local one is still planned when an
    object of it is missing from the listing or listed with another digest or size: the
    upload repairs the store (a missing or differing object counts as "differs").

    An output whose content differs from an intact cloud copy with the same code hash is
    only planned when its key is in ``replace`` (None: every key), e.g. because this run
    computed it; otherwise it is ``held``: a local file changed without a code change
    (truncated, edited by hand) never silently replaces a good cloud copy."""
    entries: dict[str, Entry] = {}
    content: dict[str, list[str]] = {}
    held: dict[str, str] = {}
    for key, (is_dir, code_hash) in sorted(outputs.items()):
        entry = local_entry(code_hash, key, is_dir, local)
        if entry is None:  # the caller passes existing outputs; a vanished file is skipped
            continue
        objects = entry_objects(key, entry)
        lacking = sorted(set(objects) - set(state.content_matches(objects)))
        cloud = state.entries.get(key)
        if cloud == entry and not lacking:
            continue
        if cloud is not None and cloud.get("hash") == code_hash and (replace is not None
                                                                     and key not in replace):
            theirs = entry_objects(key, cloud)
            if theirs and len(state.content_matches(theirs)) == len(theirs):
                held[key] = HELD_REASON
                continue
        entries[key] = entry
        content[key] = lacking
    return UploadPlan(entries, content, held)


async def upload_planned(store: Store, working_dir: str, plan: UploadPlan, local: Tree,
                         state: CloudState, *, concurrency: int = DEFAULT_CONCURRENCY,
                         progress: bool | ProgressCallback | None = None,
                         dry_run: bool = False) -> SyncOutcome:
    """Upload the content of ``plan``, then name it in the cloud hash files (once per project)."""
    started = time.monotonic()
    paths = sorted({p for objs in plan.content.values() for p in objs})
    planned_bytes = sum(local[p].size for p in paths)
    held = tuple(sorted(plan.held.items()))
    if dry_run or not plan.entries:
        return SyncOutcome("upload", planned=plan.keys, planned_bytes=planned_bytes, dry_run=dry_run,
                           seconds=time.monotonic() - started, held=held)
    transfer = Transfer(concurrency=concurrency, progress=_progress(progress))
    if paths:
        await store.ensure_container(True)
    result = await upload_paths(store, working_dir, paths, local, transfer=transfer)
    reasons = dict(result.failed)
    ok: dict[str, dict[str, Entry]] = {}
    failed: list[tuple[str, str]] = []
    for key in plan.keys:
        bad = next((p for p in plan.content[key] if p in reasons), None)
        if bad is not None:
            failed.append((key, f"{bad}: {reasons[bad]}"))
        else:
            ok.setdefault(project_of(key), {})[key] = plan.entries[key]

    async def name(project: str, updates: dict[str, Entry]) -> None:
        doc = await update_cloud_hash(store, project, updates, policy=transfer.policy)
        for key in [k for k, entry in updates.items() if doc.get(k) != entry]:
            del updates[key]  # a concurrent upload replaced the content: the cloud keeps that
            failed.append((key, "another upload replaced it at the same time; the cloud keeps "
                                "that copy and its entry"))

    try:
        async with anyio.create_task_group() as tg:
            for project, updates in sorted(ok.items()):
                tg.start_soon(name, project, updates)
    except* SyncError as group:
        exc = group.exceptions[0]
        if isinstance(exc, CloudError):
            raise exc from None
        raise CloudError(f"uploaded content could not be recorded in the cloud hash file: "
                         f"{one_line(exc, with_type=False)}") from None
    for updates in ok.values():
        state.entries.update(updates)
    done = tuple(sorted(k for updates in ok.values() for k in updates))
    return SyncOutcome("upload", done, tuple(sorted(failed)), files=len(result.done),
                       bytes=result.bytes_transferred, seconds=time.monotonic() - started,
                       planned=plan.keys, planned_bytes=planned_bytes, held=held)


async def refresh_cloud_hashes(store: Store, outputs: Mapping[str, tuple[bool, str]],
                               state: CloudState, *, dry_run: bool = False) -> list[str]:
    """Hash-update mode: give cloud entries whose content is in the store the current hash."""
    updates: dict[str, dict[str, Entry]] = {}
    for key, (is_dir, code_hash) in sorted(outputs.items()):
        entry = state.entries.get(key)
        if entry is None or entry.get("hash") == code_hash:
            continue
        files = state.expected_files(key, is_dir)
        if files is None:
            continue
        new: Entry
        if is_dir:
            rels = {o[len(object_name(key)) + 1:]: {"digest": f.digest, "size": f.size}
                    for o, f in files.items()}
            new = {"hash": code_hash, "files": rels, "size": sum(f.size for f in files.values())}
        else:
            only = next(iter(files.values()))
            new = {"hash": code_hash, "digest": only.digest, "size": only.size}
        updates.setdefault(project_of(key), {})[key] = new
    if not dry_run:
        for project, entries in sorted(updates.items()):
            await update_cloud_hash(store, project, entries)
            state.entries.update(entries)
    return sorted(k for entries in updates.values() for k in entries)

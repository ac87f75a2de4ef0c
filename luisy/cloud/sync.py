"""Moving outputs between the working dir and the store: one :func:`download` and one
:func:`upload` (coroutines, run on the bridge loop by :mod:`luisy.cloud.verbs`).

Downloads: every object of every requested output goes through one ``Transfer`` (one
request limit), from the content store for a stored version with the wanted code hash,
else from its path (see :meth:`CloudState.sources`), verified against the digest the
index names, into a staging directory inside the working dir; an output is renamed into
place only when all its files arrived, so luigi never sees half an output (directory
outputs included).

Uploads (see :func:`plan_uploads` for what goes up): (1) the content whose digest no
stored version names goes to ``.luisy-cas/`` through one ``Transfer``; (2) the path
view ``<project>/<path>`` is made by server-side copies from there (``Store.copy``: no
second upload of the bytes); (3) each project's versions index gets the new versions
(conditional write; content a concurrent garbage collection dropped goes up again
before the write is retried); (4) each project's cloud hash file names the latest
upload (conditional write, checked against the path objects).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Collection, Iterable, Mapping

import anyio

from luisy.cloud.outputs_report import KEPT_REASON, OutputsReport
from luisy.cloud.state import CloudState, each_project, read_versions, update_cloud_hash, update_versions
from luisy.cloud.uploadplan import UploadPlan, plan_uploads
from luisy.codehash.parts import HashParts
from luisy.errors import CorruptCloudHash, NotRecorded
from luisy.graph import Output, OutputRef
from luisy.hashfile import CloudEntry, output_object, project_of
from luisy.versions import Versions, cas_name, named_digests
from luisy_sync.conventions import temp_name
from luisy_sync.errors import NotFoundError, SyncError, one_line
from luisy_sync.plan import PULL, PUSH
from luisy_sync.progress import ProgressCallback, make_progress
from luisy_sync.report import Report
from luisy_sync.scan import tree_from_paths
from luisy_sync.statcache import open_default_cache
from luisy_sync.moves import download_paths, upload_paths
from luisy_sync.stores.base import Store
from luisy_sync.transfer import DEFAULT_CONCURRENCY, Transfer, TransferResult
from luisy_sync.tree import FileEntry, Tree

Progress = bool | ProgressCallback | None


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
    wanted: dict[str, tuple[bool, dict[str, tuple[str, FileEntry]]]] = {}
    missing: list[tuple[str, str]] = []
    for ref in outputs:
        files = state.sources(ref.key, ref.is_dir)
        if files is None:
            missing.append((ref.key, "no verifiable content in the cloud"))
        else:
            wanted[ref.key] = (ref.is_dir, files)
    await anyio.to_thread.run_sync(lambda: os.makedirs(working_dir, exist_ok=True))
    if not wanted:
        return OutputsReport(Report(PULL), keys_failed=tuple(sorted(missing)))
    expected = Tree({obj: fe for _, files in wanted.values() for obj, (_src, fe) in files.items()})
    names = {obj: src for _, files in wanted.values() for obj, (src, _fe) in files.items() if src != obj}
    staging = os.path.join(working_dir, temp_name("luisy-download"))
    transfer = Transfer(concurrency=concurrency, progress=make_progress(progress))
    done: list[str] = []
    failed: list[tuple[str, str]] = []
    try:
        await anyio.to_thread.run_sync(lambda: os.makedirs(staging, exist_ok=True))
        result = await download_paths(store, staging, list(expected), expected, names=names,
                                      transfer=transfer)
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


REPLACED_REASON = ("another upload replaced it at the same time; the cloud keeps that copy and "
                   "its entry")


async def _put_content(store: Store, working_dir: str, local: Tree, paths: Collection[str],
                       transfer: Transfer) -> TransferResult:
    """Upload the local ``paths`` to their content-store names."""
    names = {p: cas_name(local[p].digest or "") for p in paths}
    return await upload_paths(store, working_dir, sorted(paths), local, names=names, transfer=transfer)


async def _place_views(store: Store, working_dir: str, local: Tree, placed: Mapping[str, list[str]],
                       transfer: Transfer) -> tuple[list[str], dict[str, str], int]:
    """Make the path objects ``placed`` (key -> names) by server-side copies from the
    content store. Content missing there (a concurrent garbage collection) or copied
    without its digest (changed behind the store's back) is uploaded again first. Returns
    the names placed, name -> why for the failed ones, and the bytes uploaded again."""
    done: list[str] = []
    failed: dict[str, str] = {}
    again = 0

    async def copied(name: str) -> bool:
        want = local[name]
        source = cas_name(want.digest or "")
        try:
            info = await transfer.request(name, store.copy, source, name, describe=f"copy {source} -> {name}")
        except NotFoundError:
            return False
        return info.digest == want.digest and info.size == want.size

    async def place(name: str) -> None:
        nonlocal again
        try:
            if not await copied(name):
                result = await _put_content(store, working_dir, local, [name], transfer)
                if result.failed:
                    failed[name] = result.failed[0][1]
                    return
                again += result.bytes_transferred
                if not await copied(name):
                    failed[name] = "the content store does not keep the uploaded content"
                    return
        except (SyncError, OSError) as exc:
            failed[name] = one_line(exc)
        else:
            done.append(name)

    async with anyio.create_task_group() as tg:
        for name in sorted({n for names in placed.values() for n in names}):
            tg.start_soon(place, name)
    return done, failed, again


async def _record(store: Store, working_dir: str, local: Tree, plan: UploadPlan,
                  entries: Mapping[str, dict[str, CloudEntry]], transfer: Transfer,
                  failed: list[tuple[str, str]], kept: list[tuple[str, str]],
                  parts: Mapping[str, HashParts] | None = None) -> int:
    """Name uploaded content in each project's versions index and cloud hash file (once
    per project each). Content this upload relied on without putting it, that the index
    no longer names when it is read (garbage collection), is uploaded before the write
    is retried. An entry a concurrent upload replaced at the path is dropped from
    ``entries`` and noted in ``kept`` (another version is the latest) or ``failed``
    (another content of the same version). Returns the bytes uploaded again."""
    relied = plan.relied()
    again = 0

    async def name(project: str, updates: dict[str, CloudEntry]) -> None:
        nonlocal again
        ours = {d: p for d, p in relied.items() if any(d in plan.digests(k) for k in updates)}

        async def ensure(versions: Versions) -> None:
            nonlocal again
            gone = sorted({p for d, p in ours.items() if d not in named_digests(versions)})
            if gone:
                result = await _put_content(store, working_dir, local, gone, transfer)
                if result.failed:
                    raise SyncError(f"{result.failed[0][0]}: {result.failed[0][1]}")
                again += result.bytes_transferred
                for d in [d for d, p in ours.items() if p in gone]:
                    del ours[d]

        await update_versions(store, project, updates, ensure=ensure, parts=parts, policy=transfer.policy)
        doc = await update_cloud_hash(store, project, updates, policy=transfer.policy)
        for key in [k for k, entry in updates.items() if doc.get(k) != entry.to_json()]:
            try:
                other = CloudEntry.from_json(doc[key]) if key in doc else None
            except ValueError:
                other = None
            if other is not None and other.code_hash == updates[key].code_hash:
                del updates[key]  # a concurrent upload of this version replaced the content
                failed.append((key, REPLACED_REASON))
            else:
                kept.append((key, KEPT_REASON))

    try:
        async with anyio.create_task_group() as tg:
            for project, updates in sorted(entries.items()):
                tg.start_soon(name, project, updates)
    except* CorruptCloudHash as group:
        raise group.exceptions[0] from None
    except* SyncError as group:
        raise NotRecorded(group.exceptions[0]) from None
    return again


async def read_versions_of(store: Store, projects: Iterable[str], state: CloudState) -> None:
    """Read the versions index of ``projects`` into ``state`` now (one request each)."""
    projects = sorted(set(projects))
    found: Versions = {}

    async def one(project: str) -> None:
        _etag, versions, _exists = await read_versions(store, project)
        found.update(versions)

    await each_project(projects, one)
    for key in [k for k in state.versions if project_of(k) in projects]:
        del state.versions[key]
    state.versions.update(found)


async def upload(store: Store, working_dir: str, outputs: Iterable[Output], state: CloudState, *,
                 replace: Collection[str] | None = None, concurrency: int = DEFAULT_CONCURRENCY,
                 progress: Progress = None, dry_run: bool = False,
                 parts: Mapping[str, HashParts] | None = None) -> OutputsReport:
    """Upload the ``outputs`` whose version is not stored yet (or whose path view needs a
    repair, see :func:`plan_uploads`), then name them in the versions indexes and the
    cloud hash files; ``state`` gets the versions read and the entries written.
    ``replace``: the keys that may replace intact cloud content of the same code hash
    (None: all). ``parts``: what each output's code hash is made of, kept with its
    version (key -> parts)."""
    started = time.monotonic()
    outputs = list(outputs)
    local = await scan_outputs(working_dir, [o.key for o in outputs])
    await read_versions_of(store, {project_of(o.key) for o in outputs}, state)
    plan = plan_uploads(outputs, local, state, replace=replace)
    paths = sorted({p for objs in plan.content.values() for p in objs})
    planned_bytes = sum(local[p].size for p in paths)
    held = tuple(sorted(plan.held.items()))
    if dry_run or not plan.entries:
        report = Report(PUSH, seconds=time.monotonic() - started, files_planned=len(paths),
                        bytes_planned=planned_bytes, dry_run=dry_run)
        return OutputsReport(report, planned=plan.keys, held=held)
    transfer = Transfer(concurrency=concurrency, progress=make_progress(progress))
    await store.ensure_container(True)
    result = await _put_content(store, working_dir, local, paths, transfer)
    reasons = {local[p].digest: f"{p}: {why}" for p, why in result.failed}
    failed: list[tuple[str, str]] = []
    ready = []
    for key in plan.keys:
        bad = next((d for d in sorted(plan.digests(key)) if d in reasons), None)
        if bad is None:
            ready.append(key)
        else:
            failed.append((key, reasons[bad]))
    placed, not_placed, again = await _place_views(
        store, working_dir, local, {k: plan.placed[k] for k in ready}, transfer)
    ok: dict[str, dict[str, CloudEntry]] = {}
    for key in ready:
        bad = next((n for n in plan.placed[key] if n in not_placed), None)
        if bad is not None:
            failed.append((key, f"{bad}: {not_placed[bad]}"))
        else:
            ok.setdefault(project_of(key), {})[key] = plan.entries[key]
    kept: list[tuple[str, str]] = []
    again += await _record(store, working_dir, local, plan, ok, transfer, failed, kept, parts)
    latest = dict(kept)
    for updates in ok.values():
        for key, entry in updates.items():
            state.versions.setdefault(key, {})[entry.code_hash] = entry
            if key not in latest:
                state.entries[key] = entry
    moved = sorted({*result.done, *placed})
    report = Report(PUSH, uploaded=tuple(moved), failed=tuple(result.failed),
                    bytes_transferred=result.bytes_transferred + again,
                    seconds=time.monotonic() - started, files_planned=len(paths),
                    bytes_planned=planned_bytes)
    done = tuple(sorted(k for updates in ok.values() for k in updates))
    return OutputsReport(report, done, tuple(sorted(failed)), planned=plan.keys, held=held,
                         kept=tuple(sorted(kept)))


async def refresh_cloud_hashes(store: Store, outputs: Iterable[Output], state: CloudState, *,
                               dry_run: bool = False) -> list[str]:
    """Hash-update mode: give cloud entries whose content is in the store the current hash
    (and store that as a version too when the content store holds its content already)."""
    updates: dict[str, dict[str, CloudEntry]] = {}
    for out in sorted(outputs, key=lambda o: o.key):
        entry = state.entries.get(out.key)
        if entry is None or entry.code_hash == out.code_hash:
            continue
        files = state.latest_files(out.key, out.is_dir)
        if files is None:
            continue
        new = CloudEntry.describing(out.code_hash, out.key, out.is_dir, files)
        if new is not None:
            updates.setdefault(project_of(out.key), {})[out.key] = new
    if not dry_run:
        for project, entries in sorted(updates.items()):
            await update_cloud_hash(store, project, entries)
            state.entries.update(entries)
            for key, version in (await update_versions(store, project, entries, named_only=True)).items():
                state.versions[key] = version
    return sorted(k for entries in updates.values() for k in entries)


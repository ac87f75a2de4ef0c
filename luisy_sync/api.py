"""push and pull: scan → list → plan → transfer → manifest → Report.

``push`` uploads a local directory (or a scanned Tree) to a store; ``pull`` downloads a
store prefix into a directory. Both move only files whose content differs (by xxh3
digest), verify every byte, and return a ``Report``. The lower-level pieces for callers
that plan themselves (luisy) are ``upload_paths`` / ``download_paths`` with a shared
``Transfer``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from functools import partial
from typing import Any, AsyncIterator, Iterable, Mapping, Sequence

import anyio
import anyio.to_thread
from anyio.abc import TaskGroup

try:  # anyio imports its asyncio backend on first use (~15-20 ms of CPU): import it with
    # the package, not in the middle of a process's first push or pull
    import anyio._backends._asyncio  # noqa: F401
except ImportError:  # pragma: no cover - another anyio layout: it is imported on first use
    pass

from luisy_sync.concurrently import both, with_tasks
from luisy_sync.conventions import MANIFEST_NAME, object_name
from luisy_sync.directory_push import push_directory, ready_to_upload
from luisy_sync.download import remove_stale_temps
from luisy_sync.early_gets import EarlyGets
from luisy_sync.gcpause import with_fewer_full_collections
from luisy_sync.errors import ContainerNotFound, ManifestError, SyncError, SyncFailed
from luisy_sync.manifest import (manifest_entries, read_json_object,
                                 update_manifest)
from luisy_sync.moves import download_paths, upload_paths
from luisy_sync.plan import Plan, plan_pull, plan_push, pull_conflicts
from luisy_sync.progress import ProgressCallback, make_progress
from luisy_sync.syncrecord import read_sync_record, record_synced
from luisy_sync.report import Report
from luisy_sync.retry import RetryPolicy, call_with_retry
from luisy_sync.scan import PathFilter, remote_tree, resolve_root, scan, tree_from_paths
from luisy_sync.statcache import CacheArg, NullStatCache, StatCache, resolved_cache
from luisy_sync.stores.base import ObjectInfo, Store, is_networked
from luisy_sync.transfer import DEFAULT_BLOCK_SIZE, DEFAULT_CONCURRENCY, Transfer, TransferResult
from luisy_sync.tree import FileEntry, Tree

__all__ = ["push", "pull", "upload_paths", "download_paths", "Transfer", "TransferResult"]

StoreArg = Store | str | None


@contextlib.asynccontextmanager
async def _resolved_store(store: StoreArg) -> AsyncIterator[Store]:
    """The store to use; one opened here (from None or a URL) is closed on exit."""
    if store is not None and not isinstance(store, str):
        yield store
        return
    from luisy_sync.stores import open_store, store_from_env

    opened = store_from_env() if store is None else open_store(store)
    try:
        yield opened
    finally:
        await opened.close()


def _list_dir(prefix: str) -> str:
    prefix = prefix.strip("/")
    return prefix + "/" if prefix else ""


async def _listing(store: Store, prefix: str, policy: RetryPolicy | None) -> list[ObjectInfo] | None:
    """The objects below ``prefix``; None when the container does not exist."""
    try:
        return await call_with_retry(store.list, _list_dir(prefix), policy=policy,
                                     describe=f"list {store.url}")
    except ContainerNotFound:
        return None


def _finish(report: Report, raise_on_failure: bool) -> Report:
    if report.failed and raise_on_failure:
        path, reason = report.failed[0]
        total = len(report.failed) + len(report.moved)
        raise SyncFailed(f"{len(report.failed)} of {total} files failed; first: {path}: {reason}",
                         report, path=path, cause=reason)
    if report.conflicts and raise_on_failure:
        path, what = report.conflicts[0]
        raise SyncFailed(f"{len(report.conflicts)} local file(s) kept instead of overwritten; "
                         f"first: {path}: {what}; pass force=True to overwrite them",
                         report, path=path, cause=what)
    return report


@with_fewer_full_collections
async def push(tree_or_dir: Tree | str | os.PathLike[str], store: StoreArg = None, *, prefix: str = "",
               include: Sequence[str] | str | None = None, exclude: Sequence[str] | str | None = None,
               paths: Iterable[str] | None = None, concurrency: int = DEFAULT_CONCURRENCY,
               block_size: int = DEFAULT_BLOCK_SIZE, progress: bool | ProgressCallback | None = None,
               dry_run: bool = False, manifest: str | None = MANIFEST_NAME,
               manifest_extra: Mapping[str, Mapping[str, Any]] | None = None, cache: CacheArg = None,
               raise_on_failure: bool = True, policy: RetryPolicy | None = None,
               adaptive: bool = True) -> Report:
    """Upload the files of a directory (or a scanned Tree) that the store lacks or holds differently.

    ``store``: a Store, a URL, or None for ``store_from_env()``. ``prefix``: the store
    directory to push into. ``paths``: only these files (or directories). ``dry_run``:
    plan only, write nothing. ``manifest``: the name (below ``prefix``) of the JSON
    manifest listing what was pushed, None for no manifest; ``manifest_extra`` adds
    fields per path. ``concurrency`` caps the requests in flight; the adaptive request
    budget finds how many the store allows below it (``adaptive=False``: exactly
    ``concurrency``). Raises SyncFailed (carrying ``.report``) when files failed and
    ``raise_on_failure``.
    """
    started = time.monotonic()
    paths = None if paths is None else list(paths)
    left_out: list[str] = []
    if isinstance(tree_or_dir, Tree):
        if tree_or_dir.root is None:
            raise SyncError("push needs a Tree with a root directory (Tree.root); scan the directory first")
    else:
        resolve_root(tree_or_dir)  # a missing directory fails before the store is opened
    async with _resolved_store(store) as target:
        async def remote_side(walked: anyio.Event | None = None) -> tuple[Any, list[ObjectInfo] | None]:
            """The manifest and the listing, read at the same time (one round trip).
            ``walked``: set once the walk of the local side that runs meanwhile ended; a
            local store lists after it (``push_directory`` says why), unless a helper
            process lists the store (``list_apart``: a large one) while the walk runs."""
            async def listing() -> list[ObjectInfo] | None:
                if walked is not None:
                    apart = getattr(target, "list_apart", None)
                    listed: list[ObjectInfo] | None = None if apart is None else await apart(_list_dir(prefix))
                    if listed is not None:
                        return listed
                    await walked.wait()
                return await _listing(target, prefix, policy)

            if not manifest or dry_run:
                return None, await listing()
            return await both(partial(_manifest_before, target, object_name(prefix, manifest), policy),
                               listing, cancel=False)

        def make_transfer(stat_cache: StatCache | NullStatCache | None = None) -> Transfer:
            return Transfer(concurrency=concurrency, block_size=block_size, policy=policy,
                            progress=make_progress(progress), adaptive=adaptive, stat_cache=stat_cache)

        if not isinstance(tree_or_dir, Tree) and paths is None and not dry_run:
            local, remote, before, plan, result = await push_directory(
                target, os.fspath(tree_or_dir), include, exclude, cache, left_out, manifest, prefix,
                policy, remote_side, make_transfer)
        else:
            # The scan (walk, stat cache, hashing) and the store's manifest and listing
            # overlap on a networked store (``push_directory`` says why not on a local one).
            local, (before, listing) = await both(
                partial(_local_tree, tree_or_dir, include, exclude, paths, cache, left_out), remote_side,
                overlap=is_networked(target))
            if manifest and manifest in local:
                left_out.append(manifest)
            local = local.without([manifest])
            assert local.root is not None  # a scan always sets it
            remote = remote_tree(listing or [], prefix, manifest)
            plan = plan_push(local, remote, paths)
            plan.raise_if_refused("uploaded")
            if dry_run:
                return dataclasses.replace(_dry_report(plan, started), left_out=tuple(sorted(left_out)))
            await ready_to_upload(plan, before, listing, target, policy)
            if isinstance(before, ManifestError):
                before = None
            result = await upload_paths(target, local.root, plan.upload, local, prefix=prefix,
                                        transfer=make_transfer())
        local = _as_uploaded(local, result.digests)
        root = local.root
        assert root is not None  # a scan always sets it
        kept = {*result.done, *plan.skip}
        present = [(p, e) for p, e in local.items() if p in kept]  # in path order, as the tree
        if manifest:
            extra = manifest_extra or {}
            updates = {p: {"digest": e.digest, "size": e.size, **extra[p]} if p in extra
                       else {"digest": e.digest, "size": e.size} for p, e in present}
            if updates:
                async def stored() -> Tree:  # re-listed per later manifest attempt
                    objects = await call_with_retry(target.list, _list_dir(prefix), policy=policy,
                                                    describe=f"list {target.url}")
                    return remote_tree(objects, prefix)

                # First attempt: the manifest read at the start, and the listing plus what
                # this push committed since (a concurrent push that writes the manifest later
                # makes the conditional write fail, and the retry re-reads both).
                view: Mapping[str, FileEntry] | None = remote
                if result.done:
                    view = dict(remote.items())
                    view.update((p, local[p]) for p in result.done)
                if not _listing_agrees(before, remote, result.done):
                    view = None  # the manifest is newer than the listing: list again first
                await update_manifest(target, object_name(prefix, manifest), updates, policy=policy,
                                      stored=stored, initial=before, first_stored=view)
        await anyio.to_thread.run_sync(
            record_synced, root, {p: e.digest for p, e in present if e.digest is not None})
    report = dataclasses.replace(_report("push", plan, result, started),
                                 left_out=tuple(sorted(left_out)))
    return _finish(report, raise_on_failure)


def _as_uploaded(local: Tree, digests: Mapping[str, str]) -> Tree:
    """``local`` with the entry of each uploaded file carrying the digest of the bytes it
    uploaded (``TransferResult.digests``; it differs only where the entry had none)."""
    new = {p: d for p, d in digests.items() if local[p].digest != d}
    if not new:
        return local
    return Tree(((p, dataclasses.replace(e, digest=new[p]) if p in new else e) for p, e in local.items()),
                root=local.root)


def _listing_agrees(before: tuple[dict[str, Any] | None, str | None] | None, remote: Tree,
                    done: Sequence[str]) -> bool:
    """Whether the listing can stand in for one taken after the manifest was read (which
    ``update_manifest``'s first attempt needs): the two were read at the same time, so a
    concurrent push may have changed objects and then the manifest in between. Every
    manifest entry that this push did not overwrite must then describe what the listing
    shows; one that does not (a newer or a deleted object) means listing again."""
    doc = before[0] if before else None
    if not doc:
        return True
    mine = set(done)
    for path, entry in manifest_entries(doc).items():
        if path in mine:
            continue
        seen = remote.get(path)
        if seen is None or (entry.get("digest"), entry.get("size")) != (seen.digest, seen.size):
            return False
    return True


async def _manifest_before(store: Store, name: str, policy: RetryPolicy | None
                           ) -> tuple[dict[str, Any] | None, str | None] | ManifestError:
    """``(doc, etag)`` of the push manifest (validated), or the ManifestError it deserves."""
    try:
        doc, etag = await read_json_object(store, name, policy=policy)
        manifest_entries(doc, where=f"{store.url}/{name}")
    except ContainerNotFound:
        return None, None
    except ManifestError as exc:
        return exc
    return doc, etag


@with_fewer_full_collections
async def pull(store: StoreArg = None, dest: str | os.PathLike[str] = ".", *, prefix: str = "",
               paths: Iterable[str] | None = None, include: Sequence[str] | str | None = None,
               exclude: Sequence[str] | str | None = None, concurrency: int = DEFAULT_CONCURRENCY,
               block_size: int = DEFAULT_BLOCK_SIZE, progress: bool | ProgressCallback | None = None,
               dry_run: bool = False, manifest: str | None = MANIFEST_NAME,
               cache: CacheArg = None, raise_on_failure: bool = True, fsync: bool = False,
               force: bool = False, policy: RetryPolicy | None = None,
               adaptive: bool = True) -> Report:
    """Download the objects below ``prefix`` that ``dest`` lacks or holds differently.

    Only local files named in the store are looked at. Names that are unsafe (``..``,
    absolute, backslashes) make the pull refuse everything with UnsafePathError before
    anything is written. ``manifest`` names the push manifest to leave out.

    A local file is only replaced when it is what it was when it last matched the store
    (see ``luisy_sync.syncrecord``); one edited since, or never pulled or pushed, is kept
    and listed in
    ``report.conflicts`` (SyncFailed after everything else moved, when
    ``raise_on_failure``). ``force=True`` overwrites those too.
    """
    started = time.monotonic()
    paths = None if paths is None else list(paths)
    dest = os.path.abspath(os.fspath(dest))

    def wanted(remote: Tree) -> Plan:
        """What pulling ``remote`` (the store's tree; its manifest, if in it, left out) into
        an empty directory would download, after include / exclude and ``paths``."""
        remote = remote.without([manifest])
        if include is not None or exclude is not None:
            keep = PathFilter(include, exclude)
            remote = Tree(((p, e) for p, e in remote.items() if keep.wants(p)))
        return plan_pull(remote, Tree(), paths)

    def early_selection(named: Tree) -> Sequence[str]:
        plan = wanted(named)
        return () if plan.refused else plan.download

    async with _resolved_store(store) as source:
        transfer = Transfer(concurrency=concurrency, block_size=block_size, policy=policy,
                            progress=make_progress(progress), fsync=fsync, adaptive=adaptive)

        async def plan_and_move(tasks: TaskGroup) -> Report:
            early = None
            if manifest and not dry_run and is_networked(source):
                early = EarlyGets(transfer, source, dest, prefix, early_selection)
                tasks.start_soon(early.run, manifest, tasks)
            try:
                listing = await _listing(source, prefix, policy)
            finally:
                if early is not None:
                    early.stop()
            if not listing:  # an empty listing: is the container (or local store root) there at all?
                try:
                    await call_with_retry(source.ensure_container, False, policy=policy,
                                          describe=f"open {source.url}")
                except ContainerNotFound:
                    listing = None
            if listing is None:
                raise ContainerNotFound(f"cannot pull from {source.url}: the container does not exist; "
                                        f"check the store URL or container name")
            everything = wanted(remote_tree(listing, prefix, manifest))
            everything.raise_if_refused("downloaded")
            remote = everything.source
            local = await _local_subset(dest, everything.download, cache)
            plan = plan_pull(remote, local, paths)
            plan.raise_if_refused("downloaded")
            synced = await anyio.to_thread.run_sync(read_sync_record, dest)
            conflicts = {} if force else pull_conflicts(plan, synced)
            if conflicts:
                plan = dataclasses.replace(plan, download=tuple(p for p in plan.download
                                                                if p not in conflicts))
            kept = tuple(sorted(conflicts.items()))
            if dry_run:
                return dataclasses.replace(_dry_report(plan, started), conflicts=kept)
            await anyio.to_thread.run_sync(remove_stale_temps, dest, plan.download, time.time())
            result = await download_paths(
                source, dest, plan.download, remote, prefix=prefix, transfer=transfer,
                started=None if early is None else early.started(plan.download, remote))
            shared = {p: remote[p].digest for p in [*result.done, *plan.skip]}
            await anyio.to_thread.run_sync(
                record_synced, dest, {p: d for p, d in shared.items() if d is not None})
            return dataclasses.replace(_report("pull", plan, result, started), conflicts=kept)

        report = await with_tasks(plan_and_move)
    return report if report.dry_run else _finish(report, raise_on_failure)


async def _local_tree(tree_or_dir: Tree | str | os.PathLike[str], include: Any, exclude: Any,
                      paths: list[str] | None, cache: CacheArg, left_out: list[str]) -> Tree:
    if isinstance(tree_or_dir, Tree):
        return tree_or_dir
    root = os.fspath(tree_or_dir)
    with resolved_cache(cache) as stat_cache:
        if paths is None:
            return await scan(root, include=include, exclude=exclude, cache=stat_cache,
                              left_out=left_out)
        tree = await tree_from_paths(root, paths, cache=stat_cache)
    if include is not None or exclude is not None:
        keep = PathFilter(include, exclude)
        tree = Tree(((p, e) for p, e in tree.items() if keep.wants(p)), root=tree.root)
    return tree


async def _local_subset(dest: str, names: Sequence[str], cache: CacheArg) -> Tree:
    """The local files of ``dest`` among ``names`` (missing ones left out)."""
    if not names or not os.path.isdir(dest):
        if os.path.exists(dest) and not os.path.isdir(dest):
            raise SyncError(f"cannot pull into {dest}: it is a file, not a directory")
        return Tree(root=dest)
    with resolved_cache(cache) as stat_cache:
        return await tree_from_paths(dest, names, cache=stat_cache, missing="skip")


def _dry_report(plan: Plan, started: float) -> Report:
    return Report(plan.direction, skipped=plan.skip,
                  failed=tuple((p, "not found") for p in plan.missing),
                  seconds=time.monotonic() - started, files_planned=plan.files_to_transfer,
                  bytes_planned=plan.bytes_to_transfer, dry_run=True)


def _report(direction: str, plan: Plan, result: TransferResult, started: float) -> Report:
    where = "locally" if direction == "push" else "in the store"
    missing = [(p, f"not found {where}") for p in plan.missing]
    moved = tuple(result.done)
    return Report(direction,
                  uploaded=moved if direction == "push" else (),
                  downloaded=moved if direction == "pull" else (),
                  skipped=plan.skip, failed=tuple(sorted([*result.failed, *missing])),
                  bytes_transferred=result.bytes_transferred, seconds=time.monotonic() - started,
                  files_planned=plan.files_to_transfer, bytes_planned=plan.bytes_to_transfer)

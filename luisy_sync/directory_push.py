"""The push of a whole directory: its walk, the listing and the uploads overlap, and each
file that moves is read once (``push_directory``, called by ``luisy_sync.push``).

A push of a scanned Tree, of chosen ``paths`` or a dry run scans first and plans after
(``luisy_sync.api``); a push of a whole directory does not wait for the scan to hash
files the store lacks anyway, and on a networked store it creates its first new files
while the listing is on its way (``luisy_sync.early_creates``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Awaitable, Callable, Iterable

import anyio
from anyio.abc import TaskGroup

from luisy_sync.concurrently import both, with_tasks
from luisy_sync.early_creates import (EarlyCreates, create_early, pick, pick_large,
                                      stage_blocks_early, undo)
from luisy_sync.errors import ManifestError
from luisy_sync.moves import upload_paths
from luisy_sync.plan import Plan, plan_push
from luisy_sync.retry import RetryPolicy, call_with_retry
from luisy_sync.scan import (Candidate, PathFilter, default_hash_limiter, hash_candidates, remote_tree,
                             resolve_root, split_cache_hits, walk_files)
from luisy_sync.statcache import CacheArg, NullStatCache, StatCache, resolved_cache
from luisy_sync.stores.base import ObjectInfo, Store, is_networked
from luisy_sync.transfer import Transfer, TransferResult
from luisy_sync.tree import FileEntry, Tree

__all__ = ["push_directory", "ready_to_upload"]


async def ready_to_upload(plan: Plan, before: object, listing: list[ObjectInfo] | None, target: Store,
                          policy: RetryPolicy | None) -> None:
    """Just before a push uploads: a corrupt manifest (``before`` is the ManifestError read)
    stops a push that would upload anything, and a container the listing did not find is
    created."""
    if isinstance(before, ManifestError) and plan.upload:
        raise before
    if listing is None:
        await call_with_retry(target.ensure_container, True, policy=policy, describe=f"create {target.url}")


async def push_directory(target: Store, root: str, include: Any, exclude: Any, cache: CacheArg,
                         left_out: list[str], manifest: str | None, prefix: str,
                         policy: RetryPolicy | None,
                         remote_side: Callable[[anyio.Event | None],
                                               Awaitable[tuple[Any, list[ObjectInfo] | None]]],
                         make_transfer: Callable[[StatCache | NullStatCache], Transfer]
                         ) -> tuple[Tree, Tree, Any, Plan, TransferResult]:
    """The scan and upload of a push of a whole directory, each file that moves read once.
    Returns ``(local, remote, manifest before, plan, result)``.

    The walk overlaps the manifest read and the listing (``remote_side``). A local
    store's listing is a walk too, and two walks in threads of one process only hand
    the interpreter lock back and forth at every stat call (a no-op push of 100k files:
    5.1 s overlapped, 3.6 s one after the other): so a large local store is listed by a
    helper process while the walk runs (``luisy_sync.stores.local_listing``), a small
    one after the walk.

    Files the stat cache knows, and files whose store copy has their size and a digest
    (whether they move depends on theirs), are settled first; refused names and a
    corrupt manifest (hashing everything first then) are raised before the uploads, as
    in a scan-then-plan push. Every other file moves anyway, so it is not hashed
    beforehand: its upload hashes the bytes it sends, and that digest goes into the
    object's metadata, the stat cache and (by ``push``, from ``result.digests``) the
    manifest and the sync record. A file whose size is no longer the walk's, or whose stat
    moved while it was read, fails as a changed file.
    On a networked store the first new files are created while the listing is on its way
    (``luisy_sync.early_creates``); a refusal deletes them again, so nothing uploaded stays.
    """
    abs_root, real_root = resolve_root(root)
    pfilter = PathFilter(include, exclude)
    limiter = default_hash_limiter()
    with resolved_cache(cache) as stat_cache:
        async def walk() -> tuple[dict[str, FileEntry], list[Candidate]]:
            found = await anyio.to_thread.run_sync(walk_files, abs_root, real_root, "", abs_root, pfilter,
                                                   False, left_out)
            if manifest and any(c[0] == manifest for c in found):
                left_out.append(manifest)
                found = [c for c in found if c[0] != manifest]
            return await anyio.to_thread.run_sync(split_cache_hits, found, stat_cache, abs_root,
                                                  pfilter.keeps_everything, limiter=limiter)

        transfer = make_transfer(stat_cache)
        listed = anyio.Event()
        walked = None if is_networked(target) else anyio.Event()

        async def read_remote() -> tuple[Any, list[ObjectInfo] | None]:
            try:
                return await remote_side(walked)
            finally:
                listed.set()

        async def scan_plan_upload(tasks: TaskGroup) -> tuple[Tree, Tree, Any, Plan, TransferResult, bool]:
            early = EarlyCreates()
            try:
                return await _scan_plan_upload(tasks, early)
            finally:  # the block uploads begun early that never ran (an error came first)
                early.discard_blocks()

        async def _scan_plan_upload(tasks: TaskGroup, early: EarlyCreates
                                    ) -> tuple[Tree, Tree, Any, Plan, TransferResult, bool]:
            async def walk_and_create() -> tuple[dict[str, FileEntry], list[Candidate]]:
                try:
                    hits, misses = await walk()
                finally:
                    if walked is not None:
                        walked.set()
                if not is_networked(target) or listed.is_set():
                    return hits, misses
                picked = pick(misses, transfer.request_limit, transfer.budget.limit // 2)
                await create_early(transfer, target, abs_root, picked, prefix, tasks, early)
                large = pick_large(misses, transfer.in_blocks, early.ended)
                if large is not None and not listed.is_set():
                    await stage_blocks_early(transfer, target, abs_root, large, prefix, tasks, listed, early)
                return hits, misses

            (hits, misses), (before, listing) = await both(walk_and_create, read_remote)
            if early.read:  # the files read for early creates: their digests are known
                hits = {**hits, **early.read}
                misses = [c for c in misses if c[0] not in early.read]
            remote = remote_tree(listing or [], prefix, manifest)
            corrupt = isinstance(before, ManifestError)

            def moves_anyway(rel: str, size: int) -> bool:
                theirs = remote.get(rel)
                return theirs is None or theirs.digest is None or theirs.size != size

            later = [] if corrupt else [c for c in misses if moves_anyway(c[0], c[2].st_size)]
            entries: dict[str, FileEntry | None] = dict(hits)
            first = misses if corrupt else [c for c in misses if not moves_anyway(c[0], c[2].st_size)]
            try:
                if first:
                    entries.update(await hash_candidates(first, stat_cache, limiter))
                shape = {p: e for p, e in entries.items() if e is not None}
                shape.update((rel, FileEntry(st.st_size, None, st.st_mtime_ns)) for rel, _, st in later)
                settled = Tree(shape, root=abs_root)
                plan = plan_push(settled, remote)  # a file without a digest yet moves anyway
                plan.raise_if_refused("uploaded")
                await ready_to_upload(plan, before, listing, target, policy)
            except Exception:
                await undo(target, early, prefix, policy)
                raise
            if corrupt:
                before = None
            result = await upload_paths(target, abs_root, plan.upload, settled, prefix=prefix,
                                        transfer=transfer, started=early.started(transfer, plan.upload, settled))
            await early.all_ended()
            plan, result = _count_created(plan, result, settled, early.created)
            return settled, remote, before, plan, result, bool(later or early.read)

        settled, remote, before, plan, result, hashed = await with_tasks(scan_plan_upload)
        if hashed:
            await anyio.to_thread.run_sync(stat_cache.flush, limiter=limiter)
    return settled, remote, before, plan, result


def _count_created(plan: Plan, result: TransferResult, local: Tree, created: Iterable[str]
                   ) -> tuple[Plan, TransferResult]:
    """Files created early that the plan skips (a listing taken after their creates landed
    shows them unchanged) count as uploaded, not as skipped."""
    moved = sorted(set(created).intersection(plan.skip))
    if not moved:
        return plan, result
    plan = dataclasses.replace(plan, upload=tuple(sorted([*plan.upload, *moved])),
                               skip=tuple(sorted(set(plan.skip).difference(moved))))
    result = dataclasses.replace(result, done=sorted([*result.done, *moved]),
                                 digests={**result.digests, **{p: local[p].digest or "" for p in moved}},
                                 bytes_transferred=result.bytes_transferred + sum(local[p].size for p in moved))
    return plan, result

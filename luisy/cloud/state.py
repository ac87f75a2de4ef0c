"""What the cloud holds: the cloud ``.luisy.hash`` entries of some projects and the
objects listed in their folders (:class:`CloudState`), read through a per-process
cache (:class:`StateCache`) and changed only by read -> merge -> conditional write
(:func:`update_cloud_hash`).

The cache answers "which entries does project P have?" for the run and for the
distributed workers alike:

- an answer younger than ``max_age`` (default: the cache's ``ttl``) is served as it is;
- an older one is revalidated with a HEAD request, and the file is read again only when
  its ETag changed (a conditional GET done in two steps, so a large, unchanged file is
  never re-read).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio

from luisy.cloud.session import CloudSession
from luisy.errors import CloudHashError, CorruptCloudHash
from luisy.hashfile import CloudEntry, hash_object, output_object, parse_cloud_hash, project_of
from luisy_sync.errors import ContainerNotFound, ManifestError, NotFoundError, UnsafePathError
from luisy_sync.manifest import read_json_object, update_json_object
from luisy_sync.paths import safe_relpath
from luisy_sync.retry import RetryPolicy, call_with_retry
from luisy_sync.scan import remote_tree
from luisy_sync.stores.base import ObjectInfo, Store
from luisy_sync.tree import FileEntry, Tree

DEFAULT_TTL = 0.5
"""Seconds a cached answer may be served without revalidation. Must stay well below
luigid's ``stable_done_cooldown_secs`` (10 s), see :mod:`luisy.cloud.distributed`."""

LOOKUP_POLICY = RetryPolicy(max_attempts=4, base=0.1, cap=1.0, deadline=15.0)


@dataclass
class CloudState:
    """Cloud hash entries of some projects and the objects listed in their folders."""

    entries: dict[str, CloudEntry] = field(default_factory=dict)
    objects: Tree = field(default_factory=Tree)
    container_exists: bool = True

    def expected_files(self, key: str, is_dir: bool) -> dict[str, FileEntry] | None:
        """Objects to fetch for ``key``, each with the digest to verify against.

        None when the entry is missing, when an object it names is missing or differs
        from the entry, or when no digest is known (nothing unverified is downloaded).
        """
        entry = self.entries.get(key)
        if entry is None:
            return None
        name = output_object(key)
        if not entry.legacy:
            if entry.is_dir != is_dir:
                return None
            wanted = entry.objects(key)
            try:
                for obj in wanted:
                    safe_relpath(obj)
            except UnsafePathError:
                return None
            for obj, fe in wanted.items():
                listed = self.objects.get(obj)
                if listed is None or listed.size != fe.size or listed.digest not in (None, fe.digest):
                    return None
            return wanted
        # A 1.4.7 entry: the content is whatever is listed, if it carries digests.
        found = dict(self.objects.with_prefix(name)) if is_dir else (
            {name: self.objects[name]} if name in self.objects else {})
        if not found or any(fe.digest is None for fe in found.values()):
            return None
        return found

    def is_dir(self, key: str) -> bool:
        """Whether the cloud holds output ``key`` as a directory."""
        entry = self.entries.get(key)
        if entry is not None and entry.is_dir is not None:
            return entry.is_dir
        name = output_object(key)
        return name not in self.objects and bool(self.objects.with_prefix(name))

    def holds(self, key: str) -> bool:
        """Whether the cloud holds anything for output ``key`` (an entry, a blob or a folder)."""
        name = output_object(key)
        return key in self.entries or name in self.objects or bool(self.objects.with_prefix(name + "/"))

    def verifiable_entries(self, keys: Mapping[str, bool]) -> dict[str, CloudEntry]:
        """The entries among ``keys`` (key -> is_dir) whose content can be downloaded verified."""
        return {k: self.entries[k] for k, is_dir in keys.items()
                if k in self.entries and self.expected_files(k, is_dir) is not None}

    def content_matches(self, objects: Mapping[str, FileEntry]) -> list[str]:
        """Names in ``objects`` whose listed object has the same size and digest."""
        return [n for n, fe in objects.items()
                if (o := self.objects.get(n)) is not None and o.size == fe.size and o.digest == fe.digest]


# -- reading ----------------------------------------------------------------------------

def _parse(doc: Any, where: str) -> dict[str, CloudEntry]:
    """Parse inside a coroutine: a corrupt file raises the engine-level error."""
    try:
        return parse_cloud_hash(doc, where)
    except CloudHashError as exc:
        raise CorruptCloudHash(where, exc.reason) from None


async def _read_entries(store: Store, project: str, policy: RetryPolicy | None = None
                        ) -> tuple[str | None, dict[str, CloudEntry], bool]:
    """``(etag, entries, container exists)`` of ``project``'s cloud hash file."""
    where = f"{store.url}/{hash_object(project)}"
    try:
        doc, etag = await read_json_object(store, hash_object(project), policy=policy)
    except ManifestError as exc:
        raise CorruptCloudHash(where, exc.reason) from None
    except ContainerNotFound:
        return None, {}, False
    return etag, _parse(doc, where), True


async def list_projects(store: Store, projects: Iterable[str], *,
                        policy: RetryPolicy | None = None) -> tuple[Tree, bool]:
    """The objects in the folders of ``projects`` and whether the container exists."""
    listed: list[ObjectInfo] = []
    exists = True

    async def one(project: str) -> None:
        nonlocal exists
        try:
            listed.extend(await call_with_retry(store.list, project + "/", policy=policy,
                                                describe=f"list {project}/"))
        except ContainerNotFound:
            exists = False

    async with anyio.create_task_group() as tg:
        for project in sorted(set(projects)):
            tg.start_soon(one, project)
    return remote_tree(listed), exists


async def read_cloud_state(store: Store, projects: Iterable[str], *,
                           policy: RetryPolicy | None = None) -> CloudState:
    """Read each project's cloud hash file and list its folder, all at once (uncached)."""
    projects = sorted(set(projects))
    state = CloudState()

    async def one(project: str) -> None:
        _etag, entries, exists = await _read_entries(store, project, policy)
        state.entries.update(entries)
        state.container_exists &= exists

    try:
        async with anyio.create_task_group() as tg:
            for project in projects:
                tg.start_soon(one, project)
    except* CorruptCloudHash as group:
        raise group.exceptions[0] from None
    state.objects, exists = await list_projects(store, projects, policy=policy)
    state.container_exists &= exists
    return state


async def head_objects(store: Store, names: Iterable[str]) -> Tree:
    """What the store holds under ``names`` (missing ones left out), a HEAD each."""
    found: list[ObjectInfo] = []

    async def one(name: str) -> None:
        try:
            found.append(await call_with_retry(store.head, name, policy=LOOKUP_POLICY,
                                               describe=f"head {name}"))
        except (NotFoundError, ContainerNotFound):
            pass

    async with anyio.create_task_group() as tg:
        for name in names:
            tg.start_soon(one, name)
    return remote_tree(found)


# -- the per-process cache ----------------------------------------------------------------

@dataclass
class _Cached:
    etag: str | None
    entries: dict[str, CloudEntry]
    checked: float


@dataclass
class CacheStats:
    """Request counts of one cache (for tests and the benchmark)."""

    heads: int = 0
    reads: int = 0
    hits: int = 0


async def _revalidate(store: Store, project: str, known_etag: str | None, stats: CacheStats
                      ) -> tuple[str | None, dict[str, CloudEntry] | None]:
    """``(etag, entries)`` of the project's cloud hash file; entries None = unchanged."""
    name = hash_object(project)
    if known_etag is not None:
        stats.heads += 1
        try:
            info = await call_with_retry(store.head, name, policy=LOOKUP_POLICY,
                                         describe=f"head {name}")
        except (NotFoundError, ContainerNotFound):
            return None, {}
        if info.etag == known_etag:
            return known_etag, None
    stats.reads += 1
    etag, entries, _exists = await _read_entries(store, project, LOOKUP_POLICY)
    return etag, entries


@dataclass
class StateCache:
    """The cloud entries of each project this process looked at, revalidated by ETag."""

    session: CloudSession
    ttl: float = DEFAULT_TTL
    stats: CacheStats = field(default_factory=CacheStats)
    _cache: dict[str, _Cached] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()

    def entries(self, project: str, max_age: float | None = None) -> dict[str, CloudEntry]:
        """The cloud entries of ``project``, at most ``max_age`` (default ``ttl``) seconds old."""
        max_age = self.ttl if max_age is None else max_age
        with self._lock:
            cached = self._cache.get(project)
            now = time.monotonic()
            if cached is not None and now - cached.checked <= max_age:
                return cached.entries
            etag, entries = self.session.call(_revalidate, self.session.store(), project,
                                              cached.etag if cached else None, self.stats)
            if entries is None and cached is not None:
                cached.checked = now
                return cached.entries
            self._cache[project] = _Cached(etag, entries or {}, now)
            return entries or {}

    def remember(self, key: str, entry: CloudEntry) -> None:
        """Note an entry this process just wrote (saves a lookup)."""
        with self._lock:
            cached = self._cache.get(project_of(key))
            if cached is not None:
                cached.entries = {**cached.entries, key: entry}

    def state(self, projects: Iterable[str]) -> CloudState:
        """The entries of ``projects`` (revalidated now) and a fresh listing of their folders."""
        projects = sorted(set(projects))
        entries: dict[str, CloudEntry] = {}
        for project in projects:
            entries.update(self.entries(project, max_age=0.0))
        objects, exists = self.session.call(list_projects, self.session.store(), projects)
        return CloudState(entries, objects, exists)


_caches: dict[tuple[str | None, str], StateCache] = {}
_caches_lock = threading.Lock()


def _unlock_after_fork() -> None:
    global _caches_lock
    _caches_lock = threading.Lock()


os.register_at_fork(after_in_child=_unlock_after_fork)


def cache_of(session: CloudSession) -> StateCache:
    """The process-wide cache of ``session``'s remote."""
    with _caches_lock:
        cache = _caches.get((session.remote, session.fingerprint))
        if cache is None or cache.session is not session:
            cache = _caches[(session.remote, session.fingerprint)] = StateCache(session)
        return cache


# -- writing ----------------------------------------------------------------------------

_HEAD_AT_MOST = 16
"""Up to this many objects are checked with a HEAD each; more with one listing."""


async def _stored_objects(store: Store, project: str, names: list[str],
                          policy: RetryPolicy | None) -> dict[str, FileEntry]:
    """What the store holds now under ``names`` (missing ones left out): a HEAD each when
    they are few, else one listing of the project folder."""
    if len(names) > _HEAD_AT_MOST:
        listed = await call_with_retry(store.list, project + "/", policy=policy,
                                       describe=f"list {project}/")
        wanted = set(names)
        return {n: fe for n, fe in remote_tree(listed).items() if n in wanted}
    found: dict[str, FileEntry] = {}

    async def head(name: str) -> None:
        try:
            info = await call_with_retry(store.head, name, policy=policy, describe=f"head {name}")
        except NotFoundError:
            return
        found[name] = FileEntry(info.size, info.digest)

    async with anyio.create_task_group() as tg:
        for name in names:
            tg.start_soon(head, name)
    return found


def _describes(key: str, entry: CloudEntry, stored: Mapping[str, FileEntry]) -> bool:
    """Whether every object ``entry`` names is stored with exactly that digest and size."""
    return all((have := stored.get(obj)) is not None and have.digest == fe.digest
               and have.size == fe.size for obj, fe in entry.objects(key).items())


async def update_cloud_hash(store: Store, project: str, updates: Mapping[str, CloudEntry], *,
                            policy: RetryPolicy | None = None) -> dict[str, Any]:
    """Merge ``updates`` into ``project``'s cloud hash file (read -> merge -> if-match write);
    returns the document written.

    After every read of the file the objects the updates name are looked up again, and an
    update is only written when the store holds exactly the content it names. When a
    concurrent writer replaced an object, its own entry is kept if it describes the
    stored object, and an entry describing neither is removed: the file never names a
    digest the store does not hold.
    """
    where = f"{store.url}/{hash_object(project)}"
    frozen = dict(updates)
    names = sorted({obj for k, v in frozen.items() for obj in v.objects(k)})
    stored: dict[str, FileEntry] = {}

    async def refresh() -> None:
        stored.clear()
        stored.update(await _stored_objects(store, project, names, policy))

    def merge(doc: dict[str, Any] | None) -> dict[str, Any]:
        current = _parse(doc, where)  # never overwrite a file we cannot read
        merged = dict(doc or {})
        for key, entry in frozen.items():
            if _describes(key, entry, stored):
                merged[key] = entry.to_json()
            elif key in current and not _describes(key, current[key], stored):
                del merged[key]  # names content that is gone; the other writer's entry follows
        return merged

    try:
        return await update_json_object(store, hash_object(project), merge, policy=policy,
                                        refresh=refresh if names else None)
    except CorruptCloudHash:
        raise
    except ManifestError as exc:
        raise CorruptCloudHash(where, exc.reason) from None

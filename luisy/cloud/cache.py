"""The per-process cache of the cloud state (:class:`StateCache`): it answers "which
entries (versions) does project P have?" for the run and for the distributed workers
alike.

- an answer younger than ``max_age`` (default: the cache's ``ttl``) is served as it is;
- an older one is revalidated with a HEAD request, and the file is read again only when
  its ETag changed (a conditional GET done in two steps, so a large, unchanged file is
  never re-read).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from luisy.cloud.session import CloudSession
from luisy.cloud.state import (LOOKUP_POLICY, CloudState, list_projects, read_entries, read_versions)
from luisy.hashfile import CloudEntry, hash_object, project_of
from luisy.versions import Versions, versions_object
from luisy_sync.errors import ContainerNotFound, NotFoundError
from luisy_sync.retry import RetryPolicy, call_with_retry
from luisy_sync.stores.base import Store

DEFAULT_TTL = 0.5
"""Seconds a cached answer may be served without revalidation. Must stay well below
luigid's ``stable_done_cooldown_secs`` (10 s), see :mod:`luisy.cloud.distributed`."""


@dataclass
class _Cached:
    etag: str | None
    value: Any
    checked: float


@dataclass
class CacheStats:
    """Request counts of one cache (for tests and the benchmark)."""

    heads: int = 0
    reads: int = 0
    hits: int = 0


Reader = Callable[[Store, str, RetryPolicy | None], Awaitable[tuple[str | None, Any, bool]]]


async def _revalidate(store: Store, name: str, read: Reader, project: str, known_etag: str | None,
                      stats: CacheStats) -> tuple[str | None, Any]:
    """``(etag, value)`` of the index object ``name`` of ``project``; value None = unchanged."""
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
    etag, value, _exists = await read(store, project, LOOKUP_POLICY)
    return etag, value


@dataclass
class StateCache:
    """The cloud entries and versions of each project this process looked at,
    revalidated by ETag (the ``.luisy.hash`` and the ``.luisy.versions`` of a project
    each on its own)."""

    session: CloudSession
    ttl: float = DEFAULT_TTL
    stats: CacheStats = field(default_factory=CacheStats)
    _cache: dict[str, _Cached] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()

    def _lookup(self, name: str, read: Reader, project: str, max_age: float | None) -> Any:
        max_age = self.ttl if max_age is None else max_age
        with self._lock:
            cached = self._cache.get(name)
            now = time.monotonic()
            if cached is not None and now - cached.checked <= max_age:
                return cached.value
            etag, value = self.session.call(_revalidate, self.session.store(), name, read, project,
                                            cached.etag if cached else None, self.stats)
            if value is None and cached is not None:
                cached.checked = now
                return cached.value
            self._cache[name] = _Cached(etag, value or {}, now)
            return value or {}

    def entries(self, project: str, max_age: float | None = None) -> dict[str, CloudEntry]:
        """The cloud entries of ``project``, at most ``max_age`` (default ``ttl``) seconds old."""
        found: dict[str, CloudEntry] = self._lookup(hash_object(project), read_entries, project, max_age)
        return found

    def versions(self, project: str, max_age: float | None = None) -> Versions:
        """The versions of ``project``'s outputs, at most ``max_age`` (default ``ttl``) seconds old."""
        found: Versions = self._lookup(versions_object(project), read_versions, project, max_age)
        return found

    def remember(self, key: str, entry: CloudEntry | None, version: CloudEntry | None = None) -> None:
        """Note what this process just wrote (saves a lookup): ``entry`` as the latest
        entry of ``key``, ``version`` as a version of it."""
        with self._lock:
            cached = self._cache.get(hash_object(project_of(key)))
            if cached is not None and entry is not None:
                cached.value = {**cached.value, key: entry}
            cached = self._cache.get(versions_object(project_of(key)))
            if cached is not None and version is not None:
                by_hash = {**cached.value.get(key, {}), version.code_hash: version}
                cached.value = {**cached.value, key: by_hash}

    def state(self, projects: Iterable[str]) -> CloudState:
        """The entries and versions of ``projects`` (revalidated now) and a fresh listing
        of their folders."""
        projects = sorted(set(projects))
        entries: dict[str, CloudEntry] = {}
        versions: Versions = {}
        for project in projects:
            entries.update(self.entries(project, max_age=0.0))
            versions.update(self.versions(project, max_age=0.0))
        objects, exists = self.session.call(list_projects, self.session.store(), projects)
        return CloudState(entries, objects, exists, versions)


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

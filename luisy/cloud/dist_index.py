"""Cheap cloud lookups for distributed runs, and moving one task's inputs and output.

A distributed luisy worker asks "is this output in the cloud with the current hash?"
for every task it schedules. :class:`CloudIndex` answers from a per-process cache of
each project's cloud ``.luisy.hash``:

- a *positive* answer (entry present with the wanted code hash) is final and served
  from the cache;
- a *negative* answer older than ``ttl`` seconds refreshes the project's file with a
  HEAD request, and downloads it again only when its ETag changed (a conditional GET
  done in two steps, so a large, unchanged file is never re-read).

``fetch_inputs`` downloads (verified) the outputs of a task's requirements that are
missing locally; ``upload_output`` pushes one task's output and merges its entry
into the cloud hash file with a conditional write. Both use the engine through the
colleague API in :mod:`luisy.cloud.api` and are safe in forked luigi workers.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import luigi
from luigi.task import flatten

from luisy.cloud.api import bridge_call, download_refs, upload_keyed
from luisy.cloud.cloudhash import CloudState, Entry, entry_objects, parse_entries
from luisy.cloud.remote import CloudError, CloudSession, current_session, hash_object, project_of
from luisy.graph import OutputRef, output_ref, requirements
from luisy_sync.errors import ContainerNotFound, NotFoundError
from luisy_sync.manifest import read_json_object
from luisy_sync.retry import RetryPolicy, call_with_retry
from luisy_sync.scan import remote_tree
from luisy_sync.stores.base import ObjectInfo, Store

DEFAULT_TTL = 0.5
"""Seconds a negative cloud lookup may be served from the cache. Must stay well below
luigid's ``stable_done_cooldown_secs`` (10 s), see :mod:`luisy.cloud.distributed`."""

LOOKUP_POLICY = RetryPolicy(max_attempts=4, base=0.1, cap=1.0, deadline=15.0)


@dataclass
class _Cached:
    etag: str | None
    entries: dict[str, Entry]
    checked: float


@dataclass
class IndexStats:
    """Request counts of one process's index (for tests and the benchmark)."""

    heads: int = 0
    reads: int = 0
    hits: int = 0


def is_current(entry: Mapping[str, Any] | None, code_hash: str | None, external: bool) -> bool:
    """Whether a cloud entry names downloadable content made by code ``code_hash``."""
    if entry is None or not ("digest" in entry or "files" in entry):
        return False
    return external or (code_hash is not None and entry.get("hash") == code_hash)


async def _refresh(store: Store, project: str, known_etag: str | None,
                   stats: IndexStats) -> tuple[str | None, dict[str, Entry] | None]:
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
    try:
        doc, etag = await read_json_object(store, name, policy=LOOKUP_POLICY)
    except ContainerNotFound:
        return None, {}
    return etag, parse_entries(doc, f"{store.url}/{name}")


async def _head_all(store: Store, names: list[str]) -> list[ObjectInfo]:
    """HEAD each object (missing ones left out): a listing of just these names."""
    import anyio

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
    return found


@dataclass
class CloudIndex:
    """Cached view of the cloud hash files, plus the code hash of each task."""

    session: CloudSession = field(default_factory=current_session)
    ttl: float = DEFAULT_TTL
    stats: IndexStats = field(default_factory=IndexStats)
    _cache: dict[str, _Cached] = field(default_factory=dict)
    _hashes: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()

    # -- lookups -----------------------------------------------------------------------
    def entries(self, project: str, max_age: float | None = None) -> dict[str, Entry]:
        """The cloud entries of ``project``, at most ``max_age`` (default ``ttl``) seconds old."""
        max_age = self.ttl if max_age is None else max_age
        with self._lock:
            cached = self._cache.get(project)
            now = time.monotonic()
            if cached is not None and now - cached.checked <= max_age:
                return cached.entries
            etag, entries = bridge_call(self.session, _refresh, self.session.store(), project,
                                        cached.etag if cached else None, self.stats)
            if entries is None and cached is not None:
                cached.checked = now
                return cached.entries
            self._cache[project] = _Cached(etag, entries or {}, now)
            return entries or {}

    def remember(self, key: str, entry: Entry) -> None:
        """Note an entry this process just wrote (saves a lookup)."""
        with self._lock:
            cached = self._cache.get(project_of(key))
            if cached is not None:
                cached.entries = {**cached.entries, key: dict(entry)}

    def code_hash(self, task: luigi.Task, ref: OutputRef) -> str | None:
        """The current code hash of ``task`` (from the run's session, else computed)."""
        known = self.session.current_hashes.get(ref.key) or self._hashes.get(ref.key)
        if known is None:
            from luisy.codehash import compute_task_hashes

            known = compute_task_hashes([task]).get(task)
            if known is not None:
                self._hashes[ref.key] = known
        return known

    def current_entry(self, task: luigi.Task, *, fresh: bool = False) -> Entry | None:
        """The cloud entry of ``task``'s output if it is current, else None.

        ``fresh`` forces a revalidation of a negative answer (a HEAD), ignoring the TTL.
        """
        ref = output_ref(task)
        if ref is None:
            return None
        code_hash = self.code_hash(task, ref)
        external = isinstance(task, luigi.ExternalTask)
        entry = self.entries(ref.project).get(ref.key)
        if is_current(entry, code_hash, external):
            self.stats.hits += 1
            return entry
        if fresh:
            entry = self.entries(ref.project, max_age=0.0).get(ref.key)
            if is_current(entry, code_hash, external):
                return entry
        return None

    def in_cloud(self, task: luigi.Task) -> bool:
        """Distributed completeness: the task's output is in the cloud with the current hash."""
        return self.current_entry(task) is not None

    # -- transfers -----------------------------------------------------------------------
    def fetch(self, tasks: Iterable[luigi.Task], *, wait: float = 2.0) -> list[str]:
        """Download the outputs of ``tasks`` that are missing locally, verified.

        An output not (yet) in the cloud with the current hash is looked for again for
        up to ``wait`` seconds (another machine may be finishing it); then CloudError.
        Returns the keys downloaded.
        """
        wanted: dict[str, tuple[luigi.Task, OutputRef]] = {}
        for task in tasks:
            ref = output_ref(task)
            if ref is not None and not os.path.exists(ref.path):
                wanted[ref.key] = (task, ref)
        if not wanted:
            return []
        deadline = time.monotonic() + wait
        entries: dict[str, Entry] = {}
        while True:
            for key, (task, _ref) in wanted.items():
                if key not in entries:
                    entry = self.current_entry(task, fresh=True)
                    if entry is not None:
                        entries[key] = entry
            missing = sorted(set(wanted) - set(entries))
            if not missing:
                break
            if time.monotonic() >= deadline:
                raise CloudError(f"{len(missing)} input(s) are neither local nor in the cloud with "
                                 f"the current code hash, first {missing[0]}; run the task that "
                                 f"makes it, or check that all machines run the same code")
            time.sleep(0.2)
        names = sorted({n for k, e in entries.items() for n in entry_objects(k, e)})
        store = self.session.store()
        listed = bridge_call(self.session, _head_all, store, names)
        state = CloudState(entries=dict(entries), objects=remote_tree(listed))
        outcome = download_refs({k: ref.is_dir for k, (_t, ref) in wanted.items()}, state,
                                session=self.session, record=True, progress=False)
        if not outcome.ok:
            key, reason = outcome.keys_failed[0]
            raise CloudError(f"download of input {key} failed: {reason}")
        return list(outcome.keys_done)

    def upload(self, task: luigi.Task) -> str | None:
        """Push ``task``'s output (if it has one and it exists) and record it in the cloud
        hash file with a conditional write. Returns the key uploaded, or None."""
        keys = self.upload_many([task])
        return keys[0] if keys else None

    def upload_many(self, tasks: Iterable[luigi.Task]) -> list[str]:
        """Push the existing outputs of ``tasks`` in one batch (content the cloud lacks
        goes up concurrently, then one conditional write per project). Returns the keys
        whose entry is now in the cloud; CloudError if any failed."""
        outputs: dict[str, tuple[bool, str]] = {}
        for task in tasks:
            ref = output_ref(task)
            if ref is None or not os.path.exists(ref.path):
                continue
            code_hash = self.code_hash(task, ref)
            if code_hash is not None:
                outputs[ref.key] = (ref.is_dir, code_hash)
        if not outputs:
            return []
        known: dict[str, Entry] = {}
        for project in {project_of(k) for k in outputs}:
            entries = self.entries(project)
            known.update({k: entries[k] for k in outputs if k in entries})
        state = CloudState(entries=known)
        outcome = upload_keyed(outputs, session=self.session, state=state, progress=False)
        if not outcome.ok:
            key, reason = outcome.keys_failed[0]
            raise CloudError(f"upload of {key} failed: {reason}")
        done = sorted(k for k in outputs if k in state.entries)
        for key in done:
            self.remember(key, state.entries[key])
        return done


def wanted_outputs(roots: Iterable[luigi.Task]) -> list[luigi.Task]:
    """Tasks whose outputs a machine asked for: the roots, or for a root without its own
    output (a wrapper task) what it requires, recursively."""
    out: list[luigi.Task] = []
    stack = list(roots)
    seen: set[luigi.Task] = set()
    while stack:
        task = stack.pop()
        if task in seen:
            continue
        seen.add(task)
        if output_ref(task) is not None:
            out.append(task)
        elif isinstance(task, luigi.WrapperTask) or not flatten(task.output()):
            stack.extend(requirements(task))
    return out

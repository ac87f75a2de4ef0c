"""What the cloud holds: the cloud ``.luisy.hash`` entries of some projects, the
versions of their outputs by code hash (``.luisy.versions``, see :mod:`luisy.versions`)
and the objects listed in their folders (:class:`CloudState`); how they are read, and
how they change: only by read -> merge -> conditional write (:func:`update_cloud_hash`,
:func:`update_versions`). :mod:`luisy.cloud.cache` keeps them per process.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio

from luisy.codehash.parts import HashParts
from luisy.errors import CloudHashError, CorruptCloudHash
from luisy.hashfile import CloudEntry, hash_object, output_object, parse_cloud_hash
from luisy.versions import Versions, cas_name, merge_versions, parse_versions, select_entry, versions_object
from luisy_sync.errors import ContainerNotFound, ManifestError, NotFoundError, UnsafePathError
from luisy_sync.manifest import read_json_object, update_json_object
from luisy_sync.paths import safe_relpath
from luisy_sync.retry import RetryPolicy, call_with_retry
from luisy_sync.scan import remote_tree
from luisy_sync.stores.base import ObjectInfo, Store
from luisy_sync.tree import FileEntry, Tree

LOOKUP_POLICY = RetryPolicy(max_attempts=4, base=0.1, cap=1.0, deadline=15.0)

T = TypeVar("T")


@dataclass
class CloudState:
    """Cloud hash entries (the latest upload of each output), the versions of the
    outputs by code hash, and the objects listed in the projects' folders.

    ``hashes`` (output key -> code hash) names the version each output wants: the entry
    used for an output is its version with that code hash when the index has one (content
    fetched from the content store), else the latest entry (content at its path).
    """

    entries: dict[str, CloudEntry] = field(default_factory=dict)
    objects: Tree = field(default_factory=Tree)
    container_exists: bool = True
    versions: Versions = field(default_factory=dict)
    hashes: dict[str, str] = field(default_factory=dict)

    def version(self, key: str) -> CloudEntry | None:
        """The stored version of ``key`` made by its wanted code hash, if any."""
        code_hash = self.hashes.get(key)
        return None if code_hash is None else self.versions.get(key, {}).get(code_hash)

    def entry(self, key: str) -> CloudEntry | None:
        """The entry used for ``key``: its wanted version, else the latest entry."""
        return select_entry(self.entries.get(key), self.versions.get(key), self.hashes.get(key))

    def sources(self, key: str, is_dir: bool) -> dict[str, tuple[str, FileEntry]] | None:
        """Path object of ``key`` -> (the store object to fetch it from, the content to
        verify against), for the entry used for ``key``.

        None when there is no entry, when an object it names is unsafe, or for the latest
        entry when an object is missing, differs from the entry or has no known digest
        (nothing unverified is downloaded). A version's content objects are not listed: a
        missing one fails that download.
        """
        version = self.version(key)
        if version is None:
            files = self.latest_files(key, is_dir)
            return None if files is None else {obj: (obj, fe) for obj, fe in files.items()}
        if version.is_dir != is_dir:
            return None
        wanted = version.objects(key)
        if not _safe(wanted):
            return None
        return {obj: (cas_name(fe.digest or ""), fe) for obj, fe in wanted.items()}

    def expected_files(self, key: str, is_dir: bool) -> dict[str, FileEntry] | None:
        """Path objects of ``key`` with the digest each must have (see :meth:`sources`)."""
        sources = self.sources(key, is_dir)
        return None if sources is None else {obj: fe for obj, (_src, fe) in sources.items()}

    def latest_files(self, key: str, is_dir: bool) -> dict[str, FileEntry] | None:
        """Objects to fetch for the latest entry of ``key``, each with the digest to
        verify against (None: see :meth:`sources`)."""
        entry = self.entries.get(key)
        if entry is None:
            return None
        name = output_object(key)
        if not entry.legacy:
            if entry.is_dir != is_dir:
                return None
            wanted = entry.objects(key)
            if not _safe(wanted):
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
        entry = self.entry(key)
        if entry is not None and entry.is_dir is not None:
            return entry.is_dir
        name = output_object(key)
        return name not in self.objects and bool(self.objects.with_prefix(name))

    def holds(self, key: str) -> bool:
        """Whether the cloud holds anything for output ``key`` (an entry, a version, a blob
        or a folder)."""
        name = output_object(key)
        return (key in self.entries or bool(self.versions.get(key)) or name in self.objects
                or bool(self.objects.with_prefix(name + "/")))

    def verifiable_entries(self, keys: Mapping[str, bool]) -> dict[str, CloudEntry]:
        """The entries used for ``keys`` (key -> is_dir) whose content can be downloaded
        verified."""
        return {k: entry for k, is_dir in keys.items()
                if (entry := self.entry(k)) is not None and self.sources(k, is_dir) is not None}

    def used_entries(self, keys: Iterable[str]) -> dict[str, CloudEntry]:
        """The entry used for each of ``keys`` that has one (downloadable or not)."""
        return {k: entry for k in keys if (entry := self.entry(k)) is not None}

    def content_matches(self, objects: Mapping[str, FileEntry]) -> list[str]:
        """Names in ``objects`` whose listed object has the same size and digest."""
        return [n for n, fe in objects.items()
                if (o := self.objects.get(n)) is not None and o.size == fe.size and o.digest == fe.digest]


def _safe(objects: Mapping[str, FileEntry]) -> bool:
    try:
        for obj in objects:
            safe_relpath(obj)
    except UnsafePathError:
        return False
    return True


# -- reading ----------------------------------------------------------------------------

def parse_hash_doc(doc: Any, where: str) -> dict[str, CloudEntry]:
    """Parse a cloud hash file inside a coroutine (a corrupt one: the engine-level error)."""
    try:
        return parse_cloud_hash(doc, where)
    except CloudHashError as exc:
        raise CorruptCloudHash(where, exc.reason) from None


def parse_versions_doc(doc: Any, where: str) -> Versions:
    """Parse a versions index inside a coroutine (a corrupt one: the engine-level error)."""
    try:
        return parse_versions(doc, where)
    except CloudHashError as exc:
        raise CorruptCloudHash(where, exc.reason) from None


async def _read_index(store: Store, name: str, parse: Callable[[Any, str], T],
                      policy: RetryPolicy | None = None) -> tuple[str | None, T, bool]:
    """``(etag, parsed, container exists)`` of the JSON object ``name`` (parsed None when
    it is missing)."""
    where = f"{store.url}/{name}"
    try:
        doc, etag = await read_json_object(store, name, policy=policy)
    except ManifestError as exc:
        raise CorruptCloudHash(where, exc.reason) from None
    except ContainerNotFound:
        return None, parse(None, where), False
    return etag, parse(doc, where), True


async def read_entries(store: Store, project: str, policy: RetryPolicy | None = None
                        ) -> tuple[str | None, dict[str, CloudEntry], bool]:
    """``(etag, entries, container exists)`` of ``project``'s cloud hash file."""
    return await _read_index(store, hash_object(project), parse_hash_doc, policy)


async def read_versions(store: Store, project: str, policy: RetryPolicy | None = None
                        ) -> tuple[str | None, Versions, bool]:
    """``(etag, versions, container exists)`` of ``project``'s versions index."""
    return await _read_index(store, versions_object(project), parse_versions_doc, policy)


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


async def each_project(projects: Iterable[str], one: Callable[[str], Coroutine[Any, Any, None]]) -> None:
    """Await ``one(project)`` for every project at once; a corrupt index raises as itself."""
    try:
        async with anyio.create_task_group() as tg:
            for project in projects:
                tg.start_soon(one, project)
    except* CorruptCloudHash as group:
        raise group.exceptions[0] from None


async def read_cloud_state(store: Store, projects: Iterable[str], *,
                           policy: RetryPolicy | None = None) -> CloudState:
    """Read each project's cloud hash file and versions index and list its folder, all at
    once (uncached)."""
    projects = sorted(set(projects))
    state = CloudState()

    async def one(project: str) -> None:
        _etag, entries, exists = await read_entries(store, project, policy)
        state.entries.update(entries)
        state.container_exists &= exists
        _etag, versions, _exists = await read_versions(store, project, policy)
        state.versions.update(versions)

    await each_project(projects, one)
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
        current = parse_hash_doc(doc, where)  # never overwrite a file we cannot read
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


async def update_versions(store: Store, project: str, updates: Mapping[str, CloudEntry], *,
                          ensure: Callable[[Versions], Awaitable[None]] | None = None,
                          named_only: bool = False, parts: Mapping[str, HashParts] | None = None,
                          policy: RetryPolicy | None = None) -> Versions:
    """Merge the versions ``updates`` (key -> entry) into ``project``'s versions index
    (read -> merge -> if-match write, see :func:`luisy.versions.merge_versions`, which
    also explains ``named_only``); returns the versions written. ``ensure``, when given,
    is awaited with the versions of every read before the merge, to put into the store
    the content the new index will name."""
    name = versions_object(project)
    where = f"{store.url}/{name}"
    frozen = dict(updates)
    now = time.time()

    async def prepare(doc: dict[str, Any] | None) -> None:
        if ensure is not None:
            await ensure(parse_versions_doc(doc, where))

    def merge(doc: dict[str, Any] | None) -> dict[str, Any]:
        try:
            return merge_versions(doc, frozen, now, where, named_only=named_only, parts=parts)
        except CloudHashError as exc:
            raise CorruptCloudHash(where, exc.reason) from None

    try:
        doc = await update_json_object(store, name, merge, policy=policy, prepare=prepare)
    except CorruptCloudHash:
        raise
    except ManifestError as exc:
        raise CorruptCloudHash(where, exc.reason) from None
    return parse_versions_doc(doc, where)

"""The cloud ``.luisy.hash``: one JSON object per project, output key -> entry.

luisy 1.4.7 wrote ``key -> code hash``; that form is accepted when reading. Entries
written here also name the content::

    "/proj/interim/X.pkl": {"hash": "<code hash>", "digest": "<xxh3-128>", "size": 123}
    "/proj/interim/Dir":   {"hash": "<code hash>", "size": 456,
                            "files": {"part-0.parquet": {"digest": "...", "size": 456}}}

:class:`CloudState` combines the entries with a listing of the project folders, so
that a download is only planned for content that is there and can be verified.
The file is changed only by read -> merge -> conditional write (``update_cloud_hash``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio

from luisy.cloud.remote import CloudError, hash_object, object_name
from luisy_sync.errors import ContainerNotFound, ManifestError, NotFoundError, UnsafePathError
from luisy_sync.manifest import read_json_object, update_json_object
from luisy_sync.paths import safe_relpath
from luisy_sync.retry import RetryPolicy, call_with_retry
from luisy_sync.scan import remote_tree
from luisy_sync.stores.base import Store
from luisy_sync.tree import FileEntry, Tree

Entry = dict[str, Any]


class CloudHashError(CloudError):
    """A cloud hash file exists but cannot be used."""


def _bad(where: str, why: str) -> CloudHashError:
    return CloudHashError(f"the cloud hash file {where} is corrupt ({why}); nothing was changed: "
                          f"fix or delete it")


def _file_info_ok(info: Any) -> bool:
    return (isinstance(info, dict) and isinstance(info.get("digest"), str)
            and isinstance(info.get("size"), int) and not isinstance(info.get("size"), bool))


def parse_entries(doc: Mapping[str, Any] | None, where: str) -> dict[str, Entry]:
    """Validated entries of a cloud hash document (``None`` = no file = no entries).

    A 1.4.7 string value becomes ``{"hash": value}``.
    """
    if doc is None:
        return {}
    if not isinstance(doc, Mapping):
        raise _bad(where, f"top level is a {type(doc).__name__}, not an object")
    out: dict[str, Entry] = {}
    for key, value in doc.items():
        if isinstance(value, str):
            out[key] = {"hash": value}
            continue
        if not isinstance(value, dict) or not isinstance(value.get("hash"), str):
            raise _bad(where, f"entry {key!r} has no code hash")
        files = value.get("files")
        if files is not None:
            if not isinstance(files, dict) or not all(_file_info_ok(v) for v in files.values()):
                raise _bad(where, f"entry {key!r} has a malformed file list")
        elif "digest" in value and not _file_info_ok(value):
            raise _bad(where, f"entry {key!r} has a malformed digest or size")
        out[key] = dict(value)
    return out


def local_entry(code_hash: str, key: str, is_dir: bool, local: Tree) -> Entry | None:
    """The cloud entry describing the local output ``key`` (None when it is not in ``local``)."""
    name = object_name(key)
    if not is_dir:
        fe = local.get(name)
        if fe is None or fe.digest is None:
            return None
        return {"hash": code_hash, "digest": fe.digest, "size": fe.size}
    head = name + "/"
    files = {p[len(head):]: {"digest": fe.digest, "size": fe.size}
             for p, fe in local.items() if p.startswith(head) and fe.digest is not None}
    return {"hash": code_hash, "files": files, "size": sum(f["size"] for f in files.values())}


def entry_objects(key: str, entry: Mapping[str, Any]) -> dict[str, FileEntry]:
    """Store object name -> expected content, for an entry that names its content."""
    name = object_name(key)
    files = entry.get("files")
    if files is not None:
        return {f"{name}/{rel}": FileEntry(info["size"], info["digest"]) for rel, info in files.items()}
    if "digest" in entry:
        return {name: FileEntry(entry["size"], entry["digest"])}
    return {}


@dataclass
class CloudState:
    """Cloud hash entries of some projects and the objects listed in their folders."""

    entries: dict[str, Entry] = field(default_factory=dict)
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
        name = object_name(key)
        if "files" in entry or "digest" in entry:
            if ("files" in entry) != is_dir:
                return None
            try:
                wanted = entry_objects(key, entry)
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
        listed = dict(self.objects.with_prefix(name)) if is_dir else (
            {name: self.objects[name]} if name in self.objects else {})
        if not listed or any(fe.digest is None for fe in listed.values()):
            return None
        return listed

    def verifiable_entries(self, keys: Mapping[str, bool]) -> dict[str, Entry]:
        """The entries among ``keys`` (key -> is_dir) whose content can be downloaded verified."""
        return {k: self.entries[k] for k, is_dir in keys.items()
                if k in self.entries and self.expected_files(k, is_dir) is not None}

    def content_matches(self, objects: Mapping[str, FileEntry]) -> list[str]:
        """Names in ``objects`` whose listed object has the same size and digest."""
        return [n for n, fe in objects.items()
                if (o := self.objects.get(n)) is not None and o.size == fe.size and o.digest == fe.digest]


async def read_cloud_state(store: Store, projects: Iterable[str], *,
                           policy: RetryPolicy | None = None) -> CloudState:
    """Read each project's cloud hash file and list its folder, all at once."""
    state = CloudState()
    listed: list[Any] = []

    async def one(project: str) -> None:
        where = f"{store.url}/{hash_object(project)}"
        try:
            doc, _ = await read_json_object(store, hash_object(project), policy=policy)
        except ManifestError as exc:
            raise _bad(where, exc.reason) from None
        except ContainerNotFound:
            state.container_exists = False
            return
        state.entries.update(parse_entries(doc, where))
        try:
            listed.extend(await call_with_retry(store.list, project + "/", policy=policy,
                                                describe=f"list {project}/"))
        except ContainerNotFound:
            state.container_exists = False

    try:
        async with anyio.create_task_group() as tg:
            for project in sorted(set(projects)):
                tg.start_soon(one, project)
    except* CloudHashError as group:
        raise group.exceptions[0] from None
    state.objects = remote_tree(listed)
    return state


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


def _describes(key: str, entry: Mapping[str, Any], stored: Mapping[str, FileEntry]) -> bool:
    """Whether every object ``entry`` names is stored with exactly that digest and size."""
    return all((have := stored.get(obj)) is not None and have.digest == fe.digest
               and have.size == fe.size for obj, fe in entry_objects(key, entry).items())


async def update_cloud_hash(store: Store, project: str, updates: Mapping[str, Entry], *,
                            policy: RetryPolicy | None = None) -> dict[str, Any]:
    """Merge ``updates`` into ``project``'s cloud hash file (read -> merge -> if-match write).

    After every read of the file the objects the updates name are looked up again, and an
    update is only written when the store holds exactly the content it names. When a
    concurrent writer replaced an object, its own entry is kept if it describes the
    stored object, and an entry describing neither is removed: the file never names a
    digest the store does not hold.
    """
    where = f"{store.url}/{hash_object(project)}"
    frozen = {k: dict(v) for k, v in updates.items()}
    names = sorted({obj for k, v in frozen.items() for obj in entry_objects(k, v)})
    stored: dict[str, FileEntry] = {}

    async def refresh() -> None:
        stored.clear()
        stored.update(await _stored_objects(store, project, names, policy))

    def merge(doc: dict[str, Any] | None) -> dict[str, Any]:
        current = parse_entries(doc, where)  # never overwrite a file we cannot read
        merged = dict(doc or {})
        for key, entry in frozen.items():
            if _describes(key, entry, stored):
                merged[key] = entry
            elif key in current and not _describes(key, current[key], stored):
                del merged[key]  # names content that is gone; the other writer's entry follows
        return merged

    try:
        return await update_json_object(store, hash_object(project), merge, policy=policy,
                                        refresh=refresh if names else None)
    except ManifestError as exc:
        raise _bad(where, exc.reason) from None

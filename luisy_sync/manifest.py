"""Manifests: small JSON objects in a store, updated by read → merge → conditional write.

A push manifest lists what pushes put into the store::

    {"format": "luisy-sync-manifest/1",
     "files": {"a/b.csv": {"digest": "<xxh3-128 hex>", "size": 123, ...extra}}}

``update_json_object`` is the generic optimistic-concurrency loop (any JSON object,
e.g. luisy's ``.luisy.hash``); ``update_manifest`` merges entries into a manifest with it.
Concurrent writers never lose each other's entries: a write only succeeds against the
ETag that was read (or, for a new object, only if it still does not exist).
"""

from __future__ import annotations

import json
import random
from functools import partial
from itertools import repeat
from typing import Any, Awaitable, Callable, Mapping

import anyio

from luisy_sync.conventions import MANIFEST_NAME
from luisy_sync.errors import ManifestError, NotFoundError, PreconditionFailed
from luisy_sync.retry import RetryPolicy, call_with_retry
from luisy_sync.stores.base import Store
from luisy_sync.stores.small import read_small, write_small

MANIFEST_FORMAT = "luisy-sync-manifest/1"


def _corrupt(store: Store, name: str, why: str) -> ManifestError:
    return ManifestError(f"{store.url}/{name} is not a valid JSON object ({why}); "
                         f"delete it so that the next push rebuilds it", reason=why)


async def read_json_object(store: Store, name: str, *, policy: RetryPolicy | None = None
                           ) -> tuple[dict[str, Any] | None, str | None]:
    """``(object, etag)`` of the JSON object ``name``, or ``(None, None)`` if it is missing."""
    try:
        data, etag = await call_with_retry(read_small, store, name, policy=policy,
                                           describe=f"read {name}")
    except NotFoundError:
        return None, None
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _corrupt(store, name, type(exc).__name__) from None
    if not isinstance(doc, dict):
        raise _corrupt(store, name, f"top level is a {type(doc).__name__}")
    return doc, etag


def encode_json(doc: Mapping[str, Any]) -> bytes:
    """Stable, compact UTF-8 JSON (sorted keys) for objects written to a store."""
    return json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


async def update_json_object(store: Store, name: str,
                             mutate: Callable[[dict[str, Any] | None], dict[str, Any]], *,
                             attempts: int = 20, policy: RetryPolicy | None = None,
                             rng: random.Random | None = None,
                             refresh: Callable[[], Awaitable[None]] | None = None,
                             prepare: Callable[[dict[str, Any] | None], Awaitable[None]] | None = None,
                             initial: tuple[dict[str, Any] | None, str | None] | None = None,
                             copy: bool = True) -> dict[str, Any]:
    """Read ``name``, apply ``mutate(current or None)``, write it back conditionally.

    When another writer got in between (PreconditionFailed), re-read and apply
    ``mutate`` again after a short jittered pause, up to ``attempts`` times. ``mutate``
    must therefore be a pure function of its argument. When it returns the document
    unchanged nothing is written. ``refresh``, when given, is awaited after every read
    (before ``mutate``) to re-read whatever else ``mutate`` depends on; ``prepare``, when
    given, is awaited after every read with the object read (None if missing), e.g. to
    put into the store what the new document will name. ``initial``:
    an ``(object, etag)`` read earlier (``read_json_object``) that the first attempt
    uses instead of reading again; the conditional write still guards it. ``copy=False``
    promises that ``mutate`` never changes its argument (nor anything inside it), which
    spares a deep copy of the document per attempt. Returns the resulting document.
    """
    rng = rng or random.Random()
    for attempt in range(attempts):
        if attempt == 0 and initial is not None:
            current, etag = initial
        else:
            current, etag = await read_json_object(store, name, policy=policy)
        if refresh is not None:
            await refresh()
        if prepare is not None:
            await prepare(current)
        doc = mutate(current if current is None or not copy else json.loads(json.dumps(current)))
        if not isinstance(doc, dict):
            raise TypeError(f"mutate must return a dict, got {type(doc).__name__}")
        if doc is current or doc == current:
            return doc  # nothing changed: no write
        data = encode_json(doc)
        try:
            if etag is None:
                await call_with_retry(partial(write_small, store, name, data, if_none_match=True),
                                      policy=policy, describe=f"write {name}")
            else:
                await call_with_retry(partial(write_small, store, name, data, if_match=etag),
                                      policy=policy, describe=f"write {name}")
            return doc
        except PreconditionFailed:
            await anyio.sleep(rng.uniform(0.0, min(1.0, 0.01 * 2 ** attempt)))
    raise PreconditionFailed(f"{store.url}/{name} kept changing during {attempts} update attempts; "
                             f"retry later or reduce the number of concurrent writers", status=412)


def manifest_entries(doc: Mapping[str, Any] | None, *, where: str = "manifest") -> dict[str, dict[str, Any]]:
    """The ``files`` mapping of a manifest document (empty for None); ManifestError if malformed."""
    if doc is None:
        return {}
    fmt = doc.get("format")
    files = doc.get("files")
    if fmt != MANIFEST_FORMAT or not isinstance(files, dict) or \
            not all(map(isinstance, files.values(), repeat(dict))):
        raise ManifestError(f"{where} is not a {MANIFEST_FORMAT} manifest (format={fmt!r}); "
                            f"delete it so that the next push rebuilds it", reason=f"format={fmt!r}")
    return files


async def read_manifest(store: Store, name: str = MANIFEST_NAME, *,
                        policy: RetryPolicy | None = None) -> tuple[dict[str, dict[str, Any]], str | None]:
    """``(entries, etag)`` of the manifest ``name``; ``({}, None)`` when there is none."""
    doc, etag = await read_json_object(store, name, policy=policy)
    return manifest_entries(doc, where=f"{store.url}/{name}"), etag


async def update_manifest(store: Store, name: str,
                          updates: Mapping[str, Mapping[str, Any] | None], *,
                          attempts: int = 20, policy: RetryPolicy | None = None,
                          stored: Callable[[], Awaitable[Mapping[str, Any]]] | None = None,
                          initial: tuple[dict[str, Any] | None, str | None] | None = None,
                          first_stored: Mapping[str, Any] | None = None
                          ) -> dict[str, dict[str, Any]]:
    """Merge ``updates`` into the manifest ``name`` (a None value removes that path).

    ``stored``, when given, returns what the store holds now (path -> an entry with
    ``.digest`` and ``.size``, e.g. a Tree from ``remote_tree``); it is re-read after
    every read of the manifest, and an update whose digest/size differs from the stored
    object (a concurrent push replaced it) becomes a plain entry for the stored object
    (or is dropped when the object is gone), so the manifest never names content the
    store does not have; entries of other paths whose object is gone are dropped too
    (``stored`` must then list everything the manifest covers). Returns the manifest's
    entries as written.

    ``initial`` (``(doc, etag)`` from ``read_json_object``) and ``first_stored`` let
    the first attempt reuse a manifest read and a store view the caller already has.
    Safe only when the manifest was read *before* ``first_stored`` was observed: a
    concurrent push that changed the store and then the manifest in between changes
    the ETag, so the conditional write fails and the next attempt reads both afresh.
    """
    where = f"{store.url}/{name}"
    frozen = {path: (None if entry is None else dict(entry)) for path, entry in updates.items()}
    holds: list[Mapping[str, Any]] = [{}]  # what the store holds, as of the last refresh
    first = [first_stored]

    async def refresh() -> None:
        assert stored is not None
        view, first[0] = first[0], None
        holds[0] = await stored() if view is None else view

    def agreed(path: str, entry: dict[str, Any], files: dict[str, Any], have: Any) -> dict[str, Any] | None:
        if have is None or have.digest is None:
            return None
        if (entry.get("digest"), entry.get("size")) == (have.digest, have.size):
            return entry
        old = files.get(path)
        if old is not None and (old.get("digest"), old.get("size")) == (have.digest, have.size):
            return dict(old)  # the other writer's entry already describes the stored object
        return {"digest": have.digest, "size": have.size}

    def merge(doc: dict[str, Any] | None) -> dict[str, Any]:  # never changes doc (copy=False)
        files = manifest_entries(doc, where=where)
        view = holds[0]
        changed: dict[str, Any] | None = None  # the new entries, copied at the first change
        if stored is not None and not files.keys() <= view.keys():
            changed = {p: e for p, e in files.items() if p in view}  # objects deleted from the store
        for path, entry in frozen.items():
            now = files if changed is None else changed
            value = entry if entry is None or stored is None else agreed(path, entry, now, view.get(path))
            if value is None:
                if path in now:
                    changed = dict(files) if changed is None else changed
                    del changed[path]
            elif now.get(path) != value:  # an equal entry stays as it is
                changed = dict(files) if changed is None else changed
                changed[path] = dict(value)
        if changed is None and doc is not None and len(doc) == 2:
            return doc  # nothing to change (and no other key to drop)
        return {"format": MANIFEST_FORMAT, "files": files if changed is None else changed}

    doc = await update_json_object(store, name, merge, attempts=attempts, policy=policy,
                                   refresh=None if stored is None else refresh, initial=initial,
                                   copy=False)
    files: dict[str, dict[str, Any]] = doc["files"]
    return files

"""A push's first new files, created while the store's listing is still on its way.

A push plans against what the store holds, so the listing and the manifest (read
together: one round trip) come before its uploads. On a store across a network that
round trip passes with nothing in flight. For a store that says so (``networked =
True``), the push meanwhile creates a first few files: files the stat cache does not
know (new or changed ones, so most likely missing from the store), small enough for one
put each, as many as the request limit allows at the start. Each put only creates
(If-None-Match: *), so it never replaces anything, and it is tried once: a name the
store already holds, or any failure, leaves that file to the plan as usual, which then
knows its digest (the file was read and hashed).

When the plan refuses the push after all (a name the store cannot take, a corrupt
manifest), each object created early is deleted again, and only in the version created
(If-Match), so a refused push still leaves nothing behind.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

from luisy_sync.conventions import object_name
from luisy_sync.errors import one_line
from luisy_sync.retry import RetryPolicy, call_with_retry
from luisy_sync.scan import Candidate
from luisy_sync.stores.base import Store
from luisy_sync.transfer import BATCH_FILE_MAX, Transfer
from luisy_sync.tree import FileEntry
from luisy_sync.upload import create_batch

log = logging.getLogger(__name__)

EARLY_FILE_MAX = BATCH_FILE_MAX
"""The largest file created early (a larger one would need staged blocks and a commit)."""


@dataclass
class EarlyCreates:
    """What the early creates did: ``read`` has every file read (its entry with the digest
    of its bytes), ``created`` the ETag of each object created (by path)."""

    read: dict[str, FileEntry] = field(default_factory=dict)
    created: dict[str, str | None] = field(default_factory=dict)


def creates_early(store: Store) -> bool:
    """Whether a push to ``store`` creates new files while it waits for the listing."""
    return bool(getattr(store, "networked", False))


def pick(misses: Sequence[Candidate], count: int, max_size: int = EARLY_FILE_MAX) -> list[Candidate]:
    """The first ``count`` walked files of at most ``max_size`` bytes."""
    picked: list[Candidate] = []
    for candidate in misses:
        if len(picked) == count:
            break
        if candidate[2].st_size <= max_size:
            picked.append(candidate)
    return picked


async def create_early(transfer: Transfer, store: Store, root: str, picked: Sequence[Candidate],
                       prefix: str) -> EarlyCreates:
    """Create the objects of ``picked`` files (see the module docstring)."""
    batch = [(rel, FileEntry(st.st_size, None, st.st_mtime_ns), object_name(prefix, rel))
             for rel, _, st in picked]
    early = EarlyCreates()
    for (rel, entry, _), got in zip(batch, await create_batch(transfer, store, root, batch)):
        if isinstance(got, Exception):
            continue  # not read (changed meanwhile, say): the plan's upload reads it again
        digest, info = got
        early.read[rel] = FileEntry(entry.size, digest, entry.mtime_ns)
        if info is not None:
            early.created[rel] = info.etag
    return early


async def undo(store: Store, early: EarlyCreates, prefix: str, policy: RetryPolicy | None) -> None:
    """Delete the objects created early, each only in the version created; one that
    cannot be deleted is logged (the error that refused the push is what is raised)."""
    for rel, etag in sorted(early.created.items()):
        name = object_name(prefix, rel)
        try:
            await call_with_retry(partial(store.delete, name, etag=etag), policy=policy, describe=f"delete {name}")
        except Exception as exc:  # noqa: BLE001 - the refusal is the error to report
            log.warning("could not delete %s, created before the push was refused: %s", name, one_line(exc))

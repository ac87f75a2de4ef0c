"""A push's first new files, created while the store's listing is still on its way.

A push plans against what the store holds, so the listing and the manifest (read
together: one round trip) come before its uploads. On a store across a network that
round trip passes with nothing in flight. For a store that says so (``networked =
True``), the push meanwhile creates a first few files: files the stat cache does not
know (new or changed ones, so most likely missing from the store), small enough for one
put each, as many as the request limit allows at the start. Each put only creates
(If-None-Match: *), so it never replaces anything, and it is tried once: a name the
store already holds, or any failure, leaves that file to the plan as usual, which then
knows its digest (the file was read and hashed). The creates run on while the plan is
made and the other uploads start: the upload of a file created early waits for its
create's end instead of moving it again.

When the plan refuses the push after all (a name the store cannot take, a corrupt
manifest), each object created early is deleted again, and only in the version created
(If-Match), so a refused push still leaves nothing behind.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

import anyio
from anyio.abc import TaskGroup

from luisy_sync.conventions import object_name
from luisy_sync.errors import one_line
from luisy_sync.retry import RetryPolicy, call_with_retry
from luisy_sync.scan import Candidate
from luisy_sync.stores.base import DIGEST_KEY, PutMode, Store
from luisy_sync.transfer import BATCH_FILE_MAX, Transfer
from luisy_sync.tree import FileEntry
from luisy_sync.upload import read_small_files

log = logging.getLogger(__name__)

EARLY_FILE_MAX = BATCH_FILE_MAX
"""The largest file created early (a larger one would need staged blocks and a commit)."""


@dataclass
class EarlyCreates:
    """The early creates of one push: ``read`` has every file read (its entry with the
    digest of its bytes), ``created`` the ETag of each object created so far (by path)."""

    read: dict[str, FileEntry] = field(default_factory=dict)
    created: dict[str, str | None] = field(default_factory=dict)
    ended: dict[str, anyio.Event] = field(default_factory=dict)
    """Per file being created: set once its create ended (whatever the outcome)."""

    async def outcome(self, rel: str) -> str | None:
        """After the create of ``rel`` ended: the digest stored, or None (not created)."""
        await self.ended[rel].wait()
        return self.read[rel].digest if rel in self.created else None

    async def all_ended(self) -> None:
        """Wait until every create ended."""
        for event in self.ended.values():
            await event.wait()


def creates_early(store: Store) -> bool:
    """Whether a push to ``store`` creates new files while it waits for the listing."""
    return bool(getattr(store, "networked", False))


def pick(misses: Sequence[Candidate], count: int, max_bytes: int,
         max_size: int = EARLY_FILE_MAX) -> list[Candidate]:
    """The first ``count`` walked files of at most ``max_size`` bytes each and
    ``max_bytes`` together."""
    picked: list[Candidate] = []
    total = 0
    for candidate in misses:
        if len(picked) == count:
            break
        size = candidate[2].st_size
        if size <= max_size and total + size <= max_bytes:
            picked.append(candidate)
            total += size
    return picked


async def create_early(transfer: Transfer, store: Store, root: str, picked: Sequence[Candidate],
                       prefix: str, tasks: TaskGroup) -> EarlyCreates:
    """Read the ``picked`` files and start their creates in ``tasks`` (see the module
    docstring); returns once the files are read. Their bytes count in the transfer's
    byte budget until their create ends (``picked`` must fit in it)."""
    batch = [(rel, FileEntry(st.st_size, None, st.st_mtime_ns), object_name(prefix, rel))
             for rel, _, st in picked]
    budget = transfer.budget
    held = [await budget.acquire(entry.size) for _, entry, _ in batch]
    early = EarlyCreates()
    try:
        read = await read_small_files(transfer, root, batch)
    except BaseException:
        for amount in held:
            budget.release(amount)
        raise

    async def create(rel: str, name: str, data: memoryview, digest: str, amount: int, ended: anyio.Event) -> None:
        try:
            info = await transfer.once(partial(store.put, name, data, metadata={DIGEST_KEY: digest},
                                               mode=PutMode.CREATE))
        except Exception:  # noqa: BLE001 - the name exists, or the attempt failed: moved the usual way
            pass
        else:
            early.created[rel] = info.etag
        finally:
            budget.release(amount)
            ended.set()

    for (rel, entry, name), got, amount in zip(batch, read, held):
        if isinstance(got, Exception):  # not read (changed meanwhile, say): the plan moves it
            budget.release(amount)
            continue
        data, digest = got
        early.read[rel] = FileEntry(entry.size, digest, entry.mtime_ns)
        early.ended[rel] = anyio.Event()
        tasks.start_soon(create, rel, name, data, digest, amount, early.ended[rel])
    return early


async def undo(store: Store, early: EarlyCreates, prefix: str, policy: RetryPolicy | None) -> None:
    """Once every create ended, delete the objects created early, each only in the version
    created; one that cannot be deleted is logged (the error that refused the push is
    what is raised)."""
    await early.all_ended()
    for rel, etag in sorted(early.created.items()):
        name = object_name(prefix, rel)
        try:
            await call_with_retry(partial(store.delete, name, etag=etag), policy=policy, describe=f"delete {name}")
        except Exception as exc:  # noqa: BLE001 - the refusal is the error to report
            log.warning("could not delete %s, created before the push was refused: %s", name, one_line(exc))

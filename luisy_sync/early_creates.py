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

The first new file too large for one put starts too: its first blocks are read, hashed
and staged while memory and request slots are free (``BlockUpload.stage_first``). Staged
blocks are invisible until a commit, so nothing needs undoing: the plan's upload of that
file stages the rest and commits (its progress counts the early blocks then), and a file
the plan does not upload, or whose early blocks failed, is left as if never begun (its
upload then starts over the usual way).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

import anyio
from anyio.abc import TaskGroup

from luisy_sync.conventions import object_name
from luisy_sync.errors import one_line
from luisy_sync.paths import join_under
from luisy_sync.retry import RetryPolicy, call_with_retry
from luisy_sync.scan import Candidate
from luisy_sync.stores.base import DIGEST_KEY, PutMode, Store
from luisy_sync.transfer import BATCH_FILE_MAX, Transfer
from luisy_sync.tree import FileEntry
from luisy_sync.upload import BlockUpload, read_small_files

log = logging.getLogger(__name__)

EARLY_FILE_MAX = BATCH_FILE_MAX
"""The largest file created early (a larger one would need staged blocks and a commit)."""


@dataclass
class EarlyCreates:
    """What one push began early: ``read`` has every file read for a create (its entry
    with the digest of its bytes), ``created`` the ETag of each object created so far,
    ``blocks`` the block uploads begun (each by path)."""

    read: dict[str, FileEntry] = field(default_factory=dict)
    created: dict[str, str | None] = field(default_factory=dict)
    ended: dict[str, anyio.Event] = field(default_factory=dict)
    """Per file being created: set once its create ended (whatever the outcome)."""
    blocks: dict[str, BlockUpload] = field(default_factory=dict)
    """Block uploads begun early, by path (``stage_blocks_early``)."""

    async def outcome(self, rel: str) -> str | None:
        """After the create of ``rel`` ended: the digest stored, or None (not created)."""
        await self.ended[rel].wait()
        return self.read[rel].digest if rel in self.created else None

    async def all_ended(self) -> None:
        """Wait until every create ended."""
        for event in self.ended.values():
            await event.wait()

    def started(self, transfer: Transfer, upload: Iterable[str], local: Mapping[str, FileEntry]
                ) -> dict[str, Callable[[], Awaitable[str | None]]]:
        """For ``Transfer.run_files(started=...)``: the wait for the end of each file of
        ``upload`` begun early. A block upload begun early goes on only for a file the plan
        moves with no digest known (its entry then is the one it began with); the others
        are discarded here."""
        waits: dict[str, Callable[[], Awaitable[str | None]]] = {
            p: partial(self.outcome, p) for p in upload if p in self.ended}
        moves = set(upload)
        for rel, begun in list(self.blocks.items()):
            entry = local.get(rel)
            if entry is not None and entry.digest is None and entry.size == begun.entry.size and rel in moves:
                waits[rel] = partial(_finish_begun, transfer, begun)
            else:
                begun.discard()
                del self.blocks[rel]
        return waits

    def discard_blocks(self) -> None:
        """Give up every block upload begun early that is not running (see
        ``BlockUpload.discard``; one that finished has nothing left to give up)."""
        for begun in self.blocks.values():
            begun.discard()
        self.blocks = {}


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
                       prefix: str, tasks: TaskGroup, early: EarlyCreates) -> None:
    """Read the ``picked`` files and start their creates in ``tasks``, recorded in ``early``
    (see the module docstring), each create as soon as its file is read; returns once the
    files are read. Their bytes count in the
    transfer's byte budget until their create ends (``picked`` must fit in it)."""
    batch = [(rel, FileEntry(st.st_size, None, st.st_mtime_ns), object_name(prefix, rel))
             for rel, _, st in picked]
    budget = transfer.budget
    held = [await budget.acquire(entry.size) for _, entry, _ in batch]

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

    for index, (item, amount) in enumerate(zip(batch, held)):
        try:  # one file per call (read on the loop while reads are quick, or in a thread)
            (got,) = await read_small_files(transfer, root, [item])
        except BaseException:
            for left in held[index:]:
                budget.release(left)
            raise
        rel, entry, name = item
        if isinstance(got, Exception):  # not read (changed meanwhile, say): the plan moves it
            budget.release(amount)
            continue
        data, digest = got
        early.read[rel] = FileEntry(entry.size, digest, entry.mtime_ns)
        early.ended[rel] = anyio.Event()
        tasks.start_soon(create, rel, name, data, digest, amount, early.ended[rel])
        await anyio.lowlevel.checkpoint()  # the create goes out before the next file is read


def pick_large(misses: Sequence[Candidate], in_blocks: Callable[[int], bool],
               created: Mapping[str, object]) -> Candidate | None:
    """The first walked file that moves in blocks (``in_blocks`` of its size, the
    transfer's rule) and is not ``created`` early."""
    return next((c for c in misses if in_blocks(c[2].st_size) and c[0] not in created), None)


async def stage_blocks_early(transfer: Transfer, store: Store, root: str, candidate: Candidate, prefix: str,
                             tasks: TaskGroup, stop: anyio.Event, early: EarlyCreates) -> None:
    """Begin the block upload of ``candidate`` and stage its first blocks in ``tasks`` until
    ``stop`` is set or memory or request slots run out (see the module docstring); kept
    in ``early.blocks`` for the plan. A file that cannot be read is left to the plan."""
    rel, _, st = candidate
    begun = BlockUpload(transfer, store, join_under(root, rel), rel, FileEntry(st.st_size, None, st.st_mtime_ns),
                        object_name(prefix, rel), counted=False)
    try:
        await begun.stage_first(tasks, stop)
    except Exception as exc:  # noqa: BLE001 - read again by the usual upload, which reports it
        begun.discard()
        log.debug("early blocks of %s: %s", rel, one_line(exc))
        return
    except BaseException:
        begun.discard()
        raise
    early.blocks[rel] = begun


async def _finish_begun(transfer: Transfer, begun: BlockUpload) -> str | None:
    """The rest of a block upload begun early; None (its bytes un-counted again) when it
    failed, so that the file is uploaded the usual way."""
    try:
        return await begun.finish()
    except Exception as exc:  # noqa: BLE001 - the usual upload reports a failure that stays
        transfer.tracker.retried(begun.path, 1, one_line(exc), restart=True)
        return None


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

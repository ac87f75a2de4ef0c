"""A pull's first files, fetched while the store's listing is still on its way.

A pull plans against the store's listing, and a listing of many objects is slow: 1000
objects behind a 20 ms round trip take 60-100 ms, the push manifest alone 22-25 ms (each
asked for on its own). On a networked store the pull meanwhile reads the manifest and
fetches small files it names that do not exist locally, each tried once, into memory: a
file is picked only once a request slot is free, and the early bytes stay within half the
transfer's byte budget. No fetch starts once the listing answered.

Nothing is written before the plan. A file fetched early is written only when the plan
downloads it and the listing shows the size and digest the manifest named; its bytes are
then checked against that digest like any download's, together with the other early
files ready by then (one ``Transfer.write`` call). Every other fetch is dropped (all of
them when the plan refuses the pull), and a file whose fetch failed or whose bytes did
not match is downloaded the usual way. So a pull writes exactly what it would without
early gets, only sooner.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

import anyio
from anyio.abc import TaskGroup

from luisy_sync.conventions import object_name
from luisy_sync.download import write_many
from luisy_sync.errors import IntegrityError, SyncError, one_line
from luisy_sync.manifest import manifest_entries
from luisy_sync.paths import join_under
from luisy_sync.stores.base import Store
from luisy_sync.stores.small import read_small
from luisy_sync.transfer import BATCH_FILE_MAX, BATCH_FILES, Transfer
from luisy_sync.tree import FileEntry, Tree

log = logging.getLogger(__name__)

Select = Callable[[Tree], Sequence[str]]
"""The paths of a store's tree that a pull would download into an empty directory."""


@dataclass
class _Fetch:
    """One file fetched early: its manifest entry, object name and bytes of budget held."""

    path: str
    entry: FileEntry
    name: str
    held: int
    data: bytes | None = None
    ended: anyio.Event = field(default_factory=anyio.Event)
    wanted: bool = True
    """False once dropped: its budget goes back as soon as the fetch ended."""
    kept: bool = False
    """True once the plan agreed with it: it is to be written."""
    taken: bool = False
    """True once a write took it (``written`` is set when that write ended)."""
    written: anyio.Event = field(default_factory=anyio.Event)
    error: BaseException | None = None


class EarlyGets:
    """The early fetches of one pull into ``dest`` (see the module docstring): ``run``
    starts them beside the listing, ``stop`` ends the starting once it answered, and
    ``started`` hands the ones the plan agrees with to ``Transfer.run_files``."""

    def __init__(self, transfer: Transfer, store: Store, dest: str, prefix: str, select: Select):
        self.transfer, self.store, self.dest, self.prefix = transfer, store, dest, prefix
        self.select = select
        self.fetches: dict[str, _Fetch] = {}
        self._ready: dict[str, _Fetch] = {}
        """Fetches the plan kept whose bytes are here, not yet taken by a write."""
        self._holding = 0
        self._stopped = False
        self._reading = anyio.CancelScope()
        self._todo: Iterator[tuple[str, FileEntry]] = iter(())

    async def run(self, manifest: str, tasks: TaskGroup) -> None:
        """Read the manifest ``manifest`` and start the fetches in ``tasks``; an unreadable
        or malformed manifest fetches nothing (the pull goes on the usual way)."""
        with self._reading:
            try:
                data, _ = await read_small(self.store, object_name(self.prefix, manifest))
                todo = await anyio.to_thread.run_sync(self._to_fetch, data)
            except Exception as exc:  # noqa: BLE001 - no manifest to go by: nothing early
                log.debug("no early gets: %s", one_line(exc))
                return
        if self._stopped or not todo:
            return
        self._todo = iter(todo)
        for _ in range(min(self.transfer.workers, len(todo))):
            tasks.start_soon(self._fetch_each)

    def _to_fetch(self, manifest: bytes) -> list[tuple[str, FileEntry]]:
        """The small files named in the ``manifest`` (its bytes) that the pull downloads
        and that do not exist locally (parsed in a worker thread: a manifest of 100k files
        is ~10 MB of JSON)."""
        named = _small_entries(manifest_entries(json.loads(manifest)), self._largest())
        picked = self.select(named)
        return absent(self.dest, [(p, named[p]) for p in picked])

    def stop(self) -> None:
        """Start no more fetches (the ones under way run to their end)."""
        self._stopped = True
        self._reading.cancel()

    def started(self, download: Iterable[str], listed: Mapping[str, FileEntry]
                ) -> dict[str, Callable[[], Awaitable[str | None]]]:
        """For ``Transfer.run_files(started=...)``: the wait that writes each file of
        ``download`` fetched early whose ``listed`` entry is the manifest's (it returns the
        digest written, or None: download the file the usual way). Drops the others."""
        self.stop()
        moves = set(download)
        waits: dict[str, Callable[[], Awaitable[str | None]]] = {}
        for path, fetch in self.fetches.items():
            entry = listed.get(path)
            if path in moves and entry is not None and \
                    (entry.size, entry.digest) == (fetch.entry.size, fetch.entry.digest):
                fetch.kept = True
                if fetch.data is not None:
                    self._ready[path] = fetch
                waits[path] = partial(self._written, fetch)
            else:
                fetch.wanted = False
                if fetch.ended.is_set():
                    self._release(fetch)
        return waits

    def _largest(self) -> int:
        """The largest file fetched early: one that the transfer moves in a single get."""
        return min(BATCH_FILE_MAX, self.transfer.block_size)

    async def _fetch_each(self) -> None:
        """Fetch the next file to fetch until there is none, the listing answered, or its
        bytes do not fit now in half the transfer's byte budget (the rest stays free for
        the plan's downloads). A file is picked only once a request slot is free, so a
        fetch never holds memory while it waits for one."""
        budget = self.transfer.budget
        while True:
            async with self.transfer.limiter:
                if self._stopped:
                    return
                item = next(self._todo, None)
                if item is None:
                    return
                path, entry = item
                fits = self._holding + entry.size <= budget.limit // 2
                held = budget.try_acquire(entry.size) if fits else None
                if held is None:
                    return
                self._holding += held
                fetch = self.fetches[path] = _Fetch(path, entry, object_name(self.prefix, path), held)
                try:
                    got = await self.transfer.attempt(self.store.get, fetch.name)
                    if len(got.data) == entry.size:
                        fetch.data = got.data
                except Exception as exc:  # noqa: BLE001 - tried once: the plan downloads it the usual way
                    log.debug("early get of %s: %s", fetch.name, one_line(exc))
                finally:
                    fetch.ended.set()
                    if fetch.data is None or not fetch.wanted:
                        self._release(fetch)
                    elif fetch.kept:
                        self._ready[path] = fetch

    def _release(self, fetch: _Fetch) -> None:
        fetch.data = None
        if fetch.held:
            self.transfer.budget.release(fetch.held)
            self._holding -= fetch.held
            fetch.held = 0

    async def _written(self, fetch: _Fetch) -> str | None:
        """Once ``fetch`` was written (by this wait, with every other fetch then ready, up to
        BATCH_FILES in one write call): its digest, or None when the file is to be
        downloaded the usual way (its fetch failed, or its bytes did not match)."""
        await fetch.ended.wait()
        if not fetch.taken:
            if fetch.data is None:
                return None
            await self._write_ready(fetch)
        await fetch.written.wait()
        if fetch.error is None:
            return fetch.entry.digest
        if isinstance(fetch.error, IntegrityError):
            return None
        raise fetch.error

    async def _write_ready(self, first: _Fetch) -> None:
        self._ready.pop(first.path, None)
        batch = [first]
        while self._ready and len(batch) < BATCH_FILES:
            batch.append(self._ready.pop(next(iter(self._ready))))
        for fetch in batch:
            fetch.taken = True
        try:
            datas: list[bytes | BaseException] = [
                IntegrityError(f"{f.path}: not fetched") if f.data is None else f.data for f in batch]
            errors = await self.transfer.write(
                write_many, self.dest, [(f.path, f.entry, f.name) for f in batch], datas, self.transfer.fsync,
                nbytes=sum(f.entry.size for f in batch))
            for fetch, error in zip(batch, errors):
                fetch.error = error
        except BaseException as exc:
            for fetch in batch:  # cancelled, say: none of them is known to be written
                fetch.error = IntegrityError(f"{fetch.path}: not written ({one_line(exc)})")
            raise
        finally:
            for fetch in batch:
                self._release(fetch)
                fetch.written.set()


def _small_entries(entries: Mapping[str, Mapping[str, object]], largest: int) -> Tree:
    """The manifest's well-formed entries of files up to ``largest`` bytes."""
    def small(size: object, digest: object) -> bool:
        return isinstance(size, int) and not isinstance(size, bool) and 0 <= size <= largest \
            and isinstance(digest, str)

    return Tree((p, FileEntry(e["size"], e["digest"])) for p, e in entries.items()  # type: ignore[arg-type]
                if small(e.get("size"), e.get("digest")))


def absent(dest: str, items: Sequence[tuple[str, FileEntry]]) -> list[tuple[str, FileEntry]]:
    """The ``items`` with nothing at their path below ``dest`` (one listing per folder;
    unsafe names and folders that cannot be read are left out)."""
    folders: dict[str, set[str] | None] = {}
    out = []
    for path, entry in items:
        try:
            folder, base = os.path.split(join_under(dest, path))
        except SyncError:
            continue
        if folder not in folders:
            try:
                folders[folder] = set(os.listdir(folder))
            except FileNotFoundError:
                folders[folder] = set()
            except OSError:
                folders[folder] = None
        names = folders[folder]
        if names is not None and base not in names:
            out.append((path, entry))
    return out

"""A pull from a networked store fetches small files the manifest names while the listing
is on its way (``luisy_sync.early_gets``): each file is fetched once, the report and
progress are those of a pull without early gets, and nothing fetched early is written
unless the plan downloads it with the listing's size and digest equal to the manifest's.
A refused pull writes nothing at all, not even a folder."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest

from luisy_sync import MemoryStore, pull, push
from luisy_sync.conventions import MANIFEST_NAME
from luisy_sync.errors import StoreError, SyncError, SyncFailed, TransientError
from luisy_sync.hashing import hash_bytes
from luisy_sync.stores.base import DIGEST_KEY
from luisy_sync.stores.wrappers import ForwardingStore
from test_sync_push_early import Counting, make_files

EARLY = 8  # fetches that end before the held listing answers


class HeldListing(ForwardingStore):
    """A store across a (pretend) network whose listing answers only once ``hold`` gets of
    data objects ended (0: at once); then ``before_listing`` runs, if set. Counts the gets
    of each name, those that ended before the listing answered apart, and fails the first
    get of each name in ``fail``."""

    def __init__(self, inner: Any, hold: int = EARLY, networked: bool = True, fail: tuple[str, ...] = ()):
        super().__init__(inner)
        self._networked, self.hold, self.fail = networked, hold, set(fail)
        self.gets: Counter[str] = Counter()
        self.early: Counter[str] = Counter()
        self.listed = False
        self._enough = anyio.Event()
        self.before_listing: Any = None

    @property
    def networked(self) -> bool:
        return self._networked

    async def _forward(self, verb: str, *args: Any, **kw: Any) -> Any:
        with anyio.fail_after(10):
            if verb == "list":
                if self.hold:
                    await self._enough.wait()
                if self.before_listing is not None:
                    await self.before_listing()
                try:
                    return await super()._forward(verb, *args, **kw)
                finally:
                    self.listed = True
            if verb != "get" or args[0].endswith(MANIFEST_NAME):
                return await super()._forward(verb, *args, **kw)
            name = args[0]
            self.gets[name] += 1
            try:
                if name in self.fail:
                    self.fail.discard(name)
                    raise TransientError(f"injected failure of {name}", status=503)
                return await super()._forward(verb, *args, **kw)
            finally:
                if not self.listed:
                    self.early[name] += 1
                    if sum(self.early.values()) >= self.hold:
                        self._enough.set()


async def pushed(tmp_path: Path, count: int = 30) -> tuple[MemoryStore, dict[str, bytes]]:
    files = make_files(tmp_path / "src", count)
    inner = MemoryStore()
    await push(tmp_path / "src", inner, cache=False)
    return inner, files


def tree_of(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def data_files(root: Path) -> dict[str, bytes]:
    return {p: d for p, d in tree_of(root).items() if not p.startswith(".luisy")}


async def test_files_fetched_before_the_listing_answered_are_written_once(tmp_path: Path) -> None:
    inner, files = await pushed(tmp_path)
    store = HeldListing(inner)
    progress = Counting()
    dest = tmp_path / "dest"
    report = await pull(store, dest, cache=False, progress=progress)
    assert sum(store.early.values()) >= EARLY  # fetched before the listing answered
    assert store.gets == Counter({rel: 1 for rel in files})  # each file fetched once
    assert data_files(dest) == files
    assert report.downloaded == tuple(sorted(files)) and report.failed == () and report.conflicts == ()
    assert report.bytes_transferred == sum(map(len, files.values()))
    assert progress.begun == [(len(files), sum(map(len, files.values())))]
    assert sorted(progress.done) == sorted(files) and progress.bytes == sum(map(len, files.values()))
    # a second pull finds every file in place (the sync record holds the early ones too)
    again = await pull(HeldListing(inner, hold=0), dest, cache=False)
    assert again.downloaded == () and sorted(again.skipped) == sorted(files)


async def test_a_store_that_is_not_networked_gets_nothing_early(tmp_path: Path) -> None:
    inner, files = await pushed(tmp_path)
    store = HeldListing(inner, hold=0, networked=False)
    store.before_listing = lambda: anyio.sleep(0.05)  # time enough for early gets
    await pull(store, tmp_path / "dest", cache=False)
    assert store.early == Counter() and data_files(tmp_path / "dest") == files


async def test_a_refused_pull_writes_nothing_it_fetched_early(tmp_path: Path) -> None:
    inner, files = await pushed(tmp_path)
    await inner.put("d1", b"an object where the pull needs a folder")  # refused: d1 is both
    store = HeldListing(inner)
    dest = tmp_path / "dest"
    with pytest.raises(SyncError, match="refused"):
        await pull(store, dest, cache=False)
    assert sum(store.early.values()) >= EARLY
    assert not dest.exists()  # no file and no folder


async def test_an_object_replaced_meanwhile_is_downloaded_as_listed(tmp_path: Path) -> None:
    """The early bytes match the manifest but not the listing: they are dropped, and the
    file comes again, as the listing shows it."""
    inner, files = await pushed(tmp_path)
    store = HeldListing(inner)
    early: dict[str, int] = {}
    new = b"replaced after the manifest was read"

    async def replace_the_early_ones() -> None:
        early.update(store.early)
        for name in early:
            await inner.put(name, new, metadata={DIGEST_KEY: hash_bytes(new)})

    store.before_listing = replace_the_early_ones
    dest = tmp_path / "dest"
    report = await pull(store, dest, cache=False)
    assert len(early) >= EARLY
    assert data_files(dest) == {**files, **{name: new for name in early}}
    assert all(store.gets[name] == 2 for name in early)  # fetched early, then again as listed
    assert report.downloaded == tuple(sorted(files)) and report.failed == ()


async def test_an_early_get_that_failed_is_downloaded_the_usual_way(tmp_path: Path) -> None:
    inner, files = await pushed(tmp_path)
    first = sorted(files)[0]
    store = HeldListing(inner, fail=(first,))
    report = await pull(store, tmp_path / "dest", cache=False)
    assert store.early[first] == 1 and store.gets[first] == 2
    assert data_files(tmp_path / "dest") == files and report.failed == ()


async def test_early_bytes_that_do_not_match_the_digest_are_fetched_again(tmp_path: Path) -> None:
    """The early gets find other bytes than the digest the manifest and the listing name
    (the store repaired in between): those bytes are not written; the file is fetched again
    and checked as any download."""
    inner, files = await pushed(tmp_path)
    for name, data in files.items():
        damaged = bytes([data[0] ^ 1]) + data[1:]  # the same size: only the digest tells
        await inner.put(name, damaged, metadata={DIGEST_KEY: hash_bytes(data)})
    store = HeldListing(inner)

    async def repair() -> None:
        for name, data in files.items():
            await inner.put(name, data, metadata={DIGEST_KEY: hash_bytes(data)})

    store.before_listing = repair
    report = await pull(store, tmp_path / "dest", cache=False)
    assert sum(store.early.values()) >= EARLY
    assert all(store.gets[name] == 2 for name in store.early)
    assert data_files(tmp_path / "dest") == files and report.failed == ()


async def test_local_files_and_unselected_paths_are_not_fetched_early(tmp_path: Path) -> None:
    inner, files = await pushed(tmp_path)
    dest = tmp_path / "dest"
    mine = sorted(p for p in files if p.startswith("d1/"))[0]
    (dest / "d1").mkdir(parents=True)
    (dest / mine).write_bytes(b"a local file never pulled: kept")
    store = HeldListing(inner, hold=3)
    report = await pull(store, dest, cache=False, paths=["d1"], raise_on_failure=False)
    assert store.early and all(name.startswith("d1/") and name != mine for name in store.early)
    assert store.gets[mine] == 0
    assert (dest / mine).read_bytes() == b"a local file never pulled: kept"
    assert [p for p, _ in report.conflicts] == [mine]
    assert data_files(dest) == {**{p: d for p, d in files.items() if p.startswith("d1/")},
                                mine: b"a local file never pulled: kept"}


async def test_only_small_files_are_fetched_early(tmp_path: Path) -> None:
    src = tmp_path / "src"
    files = make_files(src, 12)
    big = os.urandom(3 * 2 ** 20 + 5)
    (src / "big.bin").write_bytes(big)
    inner = MemoryStore()
    await push(src, inner, cache=False, block_size=2 ** 20)
    store = HeldListing(inner)
    await pull(store, tmp_path / "dest", cache=False, block_size=2 ** 20)
    assert "big.bin" not in store.early and sum(store.early.values()) >= EARLY
    assert data_files(tmp_path / "dest") == {**files, "big.bin": big}


@pytest.mark.parametrize("manifest", [None, b"not json", b'{"format": "something else"}'])
async def test_a_missing_or_unreadable_manifest_fetches_nothing_early(tmp_path: Path, manifest: bytes | None) -> None:
    inner, files = await pushed(tmp_path)
    if manifest is None:
        await inner.delete(MANIFEST_NAME)
    else:
        await inner.put(MANIFEST_NAME, manifest)
    store = HeldListing(inner, hold=0)
    store.before_listing = lambda: anyio.sleep(0.05)
    report = await pull(store, tmp_path / "dest", cache=False)
    assert store.early == Counter() and data_files(tmp_path / "dest") == files
    assert report.downloaded == tuple(sorted(files))


async def test_a_manifest_entry_that_lies_is_dropped(tmp_path: Path) -> None:
    """A manifest naming another digest than the listing: nothing early is written for it."""
    inner, files = await pushed(tmp_path)
    doc = json.loads((await inner.get(MANIFEST_NAME)).data)
    liar = sorted(files)[0]
    doc["files"][liar]["digest"] = hash_bytes(b"something else")
    await inner.put(MANIFEST_NAME, json.dumps(doc).encode())
    store = HeldListing(inner)
    report = await pull(store, tmp_path / "dest", cache=False)
    assert store.early[liar] == 1 and store.gets[liar] == 2
    assert data_files(tmp_path / "dest") == files and report.failed == ()


async def test_a_pull_that_fails_after_early_gets_raises_and_writes_nothing(tmp_path: Path) -> None:
    """The listing itself fails for good: the error is the listing's, and nothing fetched
    early lands on disk."""
    inner, _ = await pushed(tmp_path)
    store = HeldListing(inner)

    async def fail() -> None:
        raise StoreError("the listing failed for good", status=403)

    store.before_listing = fail
    with pytest.raises((StoreError, SyncFailed), match="listing failed"):
        await pull(store, tmp_path / "dest", cache=False)
    assert not (tmp_path / "dest").exists()


async def test_early_gets_hold_at_most_half_the_byte_budget(tmp_path: Path) -> None:
    """However long the listing takes, the early bytes stay within half the transfer's
    byte budget (64 MiB by default): the plan's downloads always have the other half."""
    src = tmp_path / "src"
    src.mkdir()
    files = {f"f{i:02d}.bin": os.urandom(2 ** 20) for i in range(40)}
    for rel, data in files.items():
        (src / rel).write_bytes(data)
    inner = MemoryStore()
    await push(src, inner, cache=False)
    store = HeldListing(inner, hold=0)
    store.before_listing = lambda: anyio.sleep(0.3)
    report = await pull(store, tmp_path / "dest", cache=False)
    assert sum(store.early.values()) == 32  # 32 MiB, then no more until the plan
    assert data_files(tmp_path / "dest") == files and report.failed == ()

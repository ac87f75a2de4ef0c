"""A push to a networked store creates its first new files while the listing is on its way
(``luisy_sync.early_creates``): only creates (If-None-Match: *), each file moved once, the
same report, manifest and progress as without them, and a refused push leaves nothing
behind (each early object is deleted again, only in the version it created)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import anyio
import pytest

from luisy_sync import MemoryStore, SyncError, push
from luisy_sync.conventions import MANIFEST_NAME
from luisy_sync.errors import ManifestError
from luisy_sync.hashing import hash_bytes
from luisy_sync.progress import ProgressCallback
from luisy_sync.stores.base import DIGEST_KEY, PutMode
from luisy_sync.stores.wrappers import ForwardingStore

EARLY = 8  # the request limit a push starts with: how many files it creates early


class SlowListing(ForwardingStore):
    """A store across a (pretend) network: its listing answers only once ``hold`` puts have
    started (0: at once), and those puts land only after the listing answered (so the
    listing does not show them), or with ``landed`` before it (so it does). Records every
    put's name and mode, and may run ``on_delete`` before the first delete."""

    def __init__(self, inner: Any, hold: int = EARLY, networked: bool = True, landed: bool = False):
        super().__init__(inner)
        self._networked, self.hold, self.landed = networked, hold, landed
        self.puts: list[tuple[str, str]] = []
        self.ended = 0
        self._started, self._ended, self._listed = anyio.Event(), anyio.Event(), anyio.Event()
        self.on_delete: Any = None

    @property
    def networked(self) -> bool:
        return self._networked

    async def _forward(self, verb: str, *args: Any, **kw: Any) -> Any:
        with anyio.fail_after(10):
            if verb == "list" and self.hold:
                await (self._ended if self.landed else self._started).wait()
                try:
                    return await super()._forward(verb, *args, **kw)
                finally:
                    self._listed.set()
            if verb == "delete" and self.on_delete is not None:
                hook, self.on_delete = self.on_delete, None
                await hook(args[0])
            if verb != "put":
                return await super()._forward(verb, *args, **kw)
            self.puts.append((args[0], kw.get("mode", PutMode.OVERWRITE).kind))
            if len(self.puts) >= self.hold:
                self._started.set()
            if self.hold and not self.landed:
                await self._listed.wait()
            try:
                return await super()._forward(verb, *args, **kw)
            finally:
                self.ended += 1
                if self.ended >= self.hold:
                    self._ended.set()

    def data_puts(self) -> list[tuple[str, str]]:
        return [p for p in self.puts if p[0] != MANIFEST_NAME]


def make_files(root: Path, count: int = 20, tag: bytes = b"") -> dict[str, bytes]:
    files = {f"d{i % 3}/f{i:03d}.txt": tag + f"file {i}".encode() * (i + 1) for i in range(count)}
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


async def contents(store: MemoryStore) -> dict[str, tuple[bytes, str | None]]:
    return {o.name: ((await store.get(o.name)).data, o.etag) for o in await store.list()}


class Counting(ProgressCallback):
    def __init__(self) -> None:
        self.begun: list[tuple[int, int]] = []
        self.done: list[str] = []
        self.bytes = 0

    def begin(self, direction: str, files: int, total_bytes: int) -> None:
        self.begun.append((files, total_bytes))

    def advanced(self, path: str, nbytes: int) -> None:
        self.bytes += nbytes

    def finished(self, path: str) -> None:
        self.done.append(path)


async def test_the_first_new_files_are_created_while_the_listing_is_on_its_way(tmp_path: Path) -> None:
    files = make_files(tmp_path / "src")
    inner = MemoryStore()
    store = SlowListing(inner)
    progress = Counting()
    report = await push(tmp_path / "src", store, cache=False, progress=progress)
    puts = store.data_puts()
    assert [kind for _, kind in puts[:EARLY]] == ["create"] * EARLY  # before the listing answered
    assert all(kind == "overwrite" for _, kind in puts[EARLY:])
    assert sorted(name for name, _ in puts) == sorted(files)  # every file moved once
    assert report.uploaded == tuple(sorted(files)) and report.skipped == () and report.failed == ()
    assert report.bytes_transferred == sum(map(len, files.values()))
    for rel, data in files.items():
        obj = await inner.get(rel)
        assert obj.data == data
        assert (await inner.head(rel)).metadata[DIGEST_KEY] == hash_bytes(data)
    manifest = json.loads((await inner.get(MANIFEST_NAME)).data)
    assert {p: e["digest"] for p, e in manifest["files"].items()} == {p: hash_bytes(d) for p, d in files.items()}
    # one progress bar for the whole push, the early files in it
    assert progress.begun == [(len(files), sum(map(len, files.values())))]
    assert sorted(progress.done) == sorted(files) and progress.bytes == sum(map(len, files.values()))


async def test_early_creates_the_listing_already_shows_count_as_uploaded(tmp_path: Path) -> None:
    files = make_files(tmp_path / "src")
    inner = MemoryStore()
    store = SlowListing(inner, landed=True)
    report = await push(tmp_path / "src", store, cache=False)
    assert sorted(name for name, _ in store.data_puts()) == sorted(files)  # none moved again
    assert report.uploaded == tuple(sorted(files)) and report.skipped == ()
    assert report.bytes_transferred == sum(map(len, files.values()))
    manifest = json.loads((await inner.get(MANIFEST_NAME)).data)
    assert set(manifest["files"]) == set(files)


async def test_files_the_store_already_holds_are_neither_replaced_nor_moved_again(tmp_path: Path) -> None:
    files = make_files(tmp_path / "src")
    inner = MemoryStore()
    await push(tmp_path / "src", inner, cache=False)
    before = await contents(inner)
    store = SlowListing(inner)
    report = await push(tmp_path / "src", store, cache=False)  # no stat cache: every file is new to it
    assert [kind for _, kind in store.data_puts()] == ["create"] * EARLY  # all refused: the names exist
    assert report.uploaded == () and report.skipped == tuple(sorted(files))
    assert await contents(inner) == before


async def test_changed_files_whose_create_fails_move_the_usual_way(tmp_path: Path) -> None:
    make_files(tmp_path / "src")
    inner = MemoryStore()
    await push(tmp_path / "src", inner, cache=False)
    files = make_files(tmp_path / "src", tag=b"v2 ")
    store = SlowListing(inner)
    report = await push(tmp_path / "src", store, cache=False)
    puts = store.data_puts()
    assert [kind for _, kind in puts[:EARLY]] == ["create"] * EARLY
    assert sorted(name for name, kind in puts if kind == "overwrite") == sorted(files)
    assert report.uploaded == tuple(sorted(files))
    for rel, data in files.items():
        assert (await inner.get(rel)).data == data


async def test_a_push_refused_after_early_creates_leaves_nothing_behind(tmp_path: Path) -> None:
    make_files(tmp_path / "src")
    inner = MemoryStore()
    await inner.put("d1", b"a file where the push needs a directory")
    before = await contents(inner)
    store = SlowListing(inner)
    with pytest.raises(SyncError, match="refused, nothing was uploaded"):
        await push(tmp_path / "src", store, cache=False)
    assert any(kind == "create" for _, kind in store.data_puts())
    assert await contents(inner) == before

    await inner.delete("d1")
    await inner.put(MANIFEST_NAME, b"{not json")
    before = await contents(inner)
    store = SlowListing(inner)
    with pytest.raises(ManifestError):
        await push(tmp_path / "src", store, cache=False)
    assert any(kind == "create" for _, kind in store.data_puts())
    assert await contents(inner) == before


async def test_the_undo_keeps_a_version_another_writer_stored_meanwhile(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    make_files(tmp_path / "src")
    inner = MemoryStore()
    await inner.put("d1", b"blocker")
    store = SlowListing(inner)
    replaced: list[str] = []

    async def other_writer(name: str) -> None:  # replaces the first object the undo deletes
        replaced.append(name)
        await inner.put(name, b"theirs")

    store.on_delete = other_writer
    with caplog.at_level(logging.WARNING, logger="luisy_sync.early_creates"), \
            pytest.raises(SyncError, match="refused"):
        await push(tmp_path / "src", store, cache=False)
    assert (await inner.get(replaced[0])).data == b"theirs"
    assert sorted(o.name for o in await inner.list()) == sorted([replaced[0], "d1"])
    assert f"could not delete {replaced[0]}" in caplog.text


async def test_a_store_that_is_not_networked_gets_no_early_creates(tmp_path: Path) -> None:
    files = make_files(tmp_path / "src")
    store = SlowListing(MemoryStore(), hold=0, networked=False)
    report = await push(tmp_path / "src", store, cache=False)
    assert {kind for _, kind in store.data_puts()} == {"overwrite"}
    assert report.uploaded == tuple(sorted(files))


async def test_large_files_and_stat_cache_hits_are_not_created_early(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "big.bin").write_bytes(b"x" * (2 * 2 ** 20))  # above the early-create size
    (src / "small.txt").write_bytes(b"small")
    store = SlowListing(MemoryStore(), hold=1)
    report = await push(src, store, cache=False)
    assert store.data_puts()[0] == ("small.txt", "create")
    assert ("big.bin", "create") not in store.data_puts()
    assert report.uploaded == ("big.bin", "small.txt")

"""A push to a networked store creates its first new files while the listing is on its way
(``luisy_sync.early_creates``): only creates (If-None-Match: *), each file moved once, the
same report, manifest and progress as without them, and a refused push leaves nothing
behind (each early object is deleted again, only in the version it created).

It also stages the first blocks of its first large new file meanwhile (``BlockUpload.
stage_first``): the plan's upload goes on with them (one attempt, each block staged once,
progress counted once), and a file the plan does not upload, a refused push, early
blocks that failed or a file that changed never commit anything."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import anyio
import pytest

from luisy_sync import MemoryStore, SyncError, early_creates, push
from luisy_sync.adaptive import INITIAL_LIMIT
from luisy_sync.conventions import MANIFEST_NAME
from luisy_sync.errors import ManifestError, StoreError
from luisy_sync.hashing import hash_bytes
from luisy_sync.progress import ProgressCallback
from luisy_sync.stores.base import DIGEST_KEY, PutMode
from luisy_sync.stores.wrappers import ForwardingStore

EARLY = INITIAL_LIMIT  # the request limit a push starts with: how many files it creates early


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


def make_files(root: Path, count: int = EARLY + 12, tag: bytes = b"") -> dict[str, bytes]:
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


async def test_each_early_create_goes_out_as_soon_as_its_file_is_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_files(tmp_path / "src")
    events: list[str] = []
    real_read = early_creates.read_small_files

    async def read(transfer: Any, root: str, batch: Any) -> Any:
        got = await real_read(transfer, root, batch)
        events.extend(f"read {rel}" for rel, _, _ in batch)
        return got

    monkeypatch.setattr(early_creates, "read_small_files", read)
    store = SlowListing(MemoryStore())
    real_forward = store._forward

    async def forward(verb: str, *args: Any, **kw: Any) -> Any:
        if verb == "put":
            events.append(f"put {args[0]}")
        return await real_forward(verb, *args, **kw)

    monkeypatch.setattr(store, "_forward", forward)
    await push(tmp_path / "src", store, cache=False)
    early = [e for e in events if e.startswith("read ")][:EARLY]
    first = early[0].split(" ", 1)[1]
    assert events.index(f"put {first}") < events.index(early[-1])  # not after every early file was read


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


BLOCK = 64 * 1024
HOLD = 3  # blocks staged before the listing answers


class BlocksBeforeListing(ForwardingStore):
    """A networked store whose listing answers only once ``hold`` calls of the ``counted``
    verbs began (or after ``patience`` seconds). Records the calls that write, in order,
    and where the listing answered; ``fail_early`` makes every block put before that fail."""

    def __init__(self, inner: Any, hold: int = HOLD, fail_early: bool = False, on_listing: Any = None,
                 counted: tuple[str, ...] = ("put_block",), patience: float = 10.0):
        super().__init__(inner)
        self.hold, self.fail_early, self.on_listing, self.counted = hold, fail_early, on_listing, counted
        self.patience = patience
        self.calls: list[tuple[str, Any]] = []
        self.listed_at: int | None = None
        self._enough = anyio.Event()

    @property
    def networked(self) -> bool:
        return True

    async def _forward(self, verb: str, *args: Any, **kw: Any) -> Any:
        with anyio.fail_after(10):
            if verb == "list" and self.listed_at is None:
                if self.hold:
                    with anyio.move_on_after(self.patience):
                        await self._enough.wait()
                if self.on_listing is not None:
                    self.on_listing()
                try:
                    return await super()._forward(verb, *args, **kw)
                finally:
                    self.listed_at = len(self.calls)
            if verb == "put_block":
                self.calls.append((verb, args[1]))
            elif verb == "commit_blocks":
                self.calls.append((verb, tuple(args[1])))
            elif verb == "put":
                self.calls.append((verb, args[0]))
            if sum(1 for c in self.calls if c[0] in self.counted) >= self.hold:
                self._enough.set()
            if verb == "put_block" and self.fail_early and self.listed_at is None:
                raise StoreError(f"block {args[1]} refused (test)")
            return await super()._forward(verb, *args, **kw)

    def blocks(self) -> list[str]:
        return [arg for verb, arg in self.calls if verb == "put_block"]

    def commits(self) -> list[tuple[str, ...]]:
        return [arg for verb, arg in self.calls if verb == "commit_blocks"]


def make_tree(root: Path, big_size: int = 20 * BLOCK + 123) -> dict[str, bytes]:
    files = {"big.bin": os.urandom(big_size), "small.txt": b"small file"}
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_the_first_blocks_are_staged_while_the_listing_is_on_its_way(tmp_path: Path) -> None:
    files = make_tree(tmp_path / "src")
    inner = MemoryStore()
    store = BlocksBeforeListing(inner)
    progress = Counting()
    report = await push(tmp_path / "src", store, cache=False, block_size=BLOCK, progress=progress)

    assert store.listed_at is not None
    early = [c for c in store.calls[:store.listed_at] if c[0] == "put_block"]
    assert len(early) >= HOLD
    blocks, commits = store.blocks(), store.commits()
    assert len(commits) == 1 and list(commits[0]) == blocks  # one attempt: every block once, in order
    assert len({b.split("-")[0] for b in blocks}) == 1
    assert len(blocks) == -(-len(files["big.bin"]) // BLOCK)
    for rel, data in files.items():
        assert (await inner.get(rel)).data == data
        assert (await inner.head(rel)).metadata[DIGEST_KEY] == hash_bytes(data)
    manifest = json.loads((await inner.get(MANIFEST_NAME)).data)
    assert {p: e["digest"] for p, e in manifest["files"].items()} == {p: hash_bytes(d) for p, d in files.items()}
    total = sum(map(len, files.values()))
    assert report.uploaded == ("big.bin", "small.txt") and report.bytes_transferred == total
    # the early blocks count once, in the push's one progress bar (small.txt, created early,
    # is in the listing, so the plan skips it and the bar holds big.bin alone)
    assert progress.begun == [(1, len(files["big.bin"]))]
    assert progress.bytes == len(files["big.bin"]) and progress.done == ["big.bin"]


async def test_early_blocks_of_a_file_the_plan_skips_are_never_committed(tmp_path: Path) -> None:
    files = make_tree(tmp_path / "src")
    inner = MemoryStore()
    await push(tmp_path / "src", inner, cache=False, block_size=BLOCK)
    etag = (await inner.head("big.bin")).etag
    store = BlocksBeforeListing(inner)
    fds = open_fds()
    report = await push(tmp_path / "src", store, cache=False, block_size=BLOCK)

    assert len(store.blocks()) >= HOLD  # begun before the listing showed the file unchanged
    assert store.commits() == []
    assert report.skipped == tuple(sorted(files)) and report.uploaded == ()
    assert (await inner.head("big.bin")).etag == etag
    assert (await inner.get("big.bin")).data == files["big.bin"]
    assert open_fds() == fds  # the file read early was closed


async def test_a_push_refused_after_early_blocks_commits_nothing(tmp_path: Path) -> None:
    make_tree(tmp_path / "src")
    inner = MemoryStore()
    await inner.put(MANIFEST_NAME, b"{not json")
    store = BlocksBeforeListing(inner)
    fds = open_fds()
    with pytest.raises(ManifestError):
        await push(tmp_path / "src", store, cache=False, block_size=BLOCK)
    assert len(store.blocks()) >= HOLD and store.commits() == []
    assert [o.name for o in await inner.list()] == [MANIFEST_NAME]
    assert open_fds() == fds


async def test_early_blocks_that_failed_leave_the_file_to_a_fresh_upload(tmp_path: Path) -> None:
    files = make_tree(tmp_path / "src")
    inner = MemoryStore()
    store = BlocksBeforeListing(inner, fail_early=True)
    progress = Counting()
    report = await push(tmp_path / "src", store, cache=False, block_size=BLOCK, progress=progress)

    assert store.listed_at is not None
    failed = {b for verb, b in store.calls[:store.listed_at] if verb == "put_block"}
    commits = store.commits()
    assert len(commits) == 1 and not failed.intersection(commits[0])  # a fresh attempt's blocks
    early_attempt = {b.split("-")[0] for b in failed}
    # it stopped there: at most the block being read when the listing answered went out after
    assert len([b for b in store.blocks() if b.split("-")[0] in early_attempt]) <= len(failed) + 1
    assert len({b.split("-")[0] for b in commits[0]}) == 1
    assert (await inner.get("big.bin")).data == files["big.bin"]
    assert report.uploaded == ("big.bin", "small.txt") and report.failed == ()
    assert progress.bytes == len(files["big.bin"])  # what the failed attempt counted was taken back


async def test_a_file_that_grows_after_its_early_blocks_is_not_stored(tmp_path: Path) -> None:
    files = make_tree(tmp_path / "src")
    big = tmp_path / "src" / "big.bin"

    def grow() -> None:  # after the first blocks were read, before the plan
        with big.open("ab") as fh:
            fh.write(b"more")

    inner = MemoryStore()
    store = BlocksBeforeListing(inner, on_listing=grow)
    report = await push(tmp_path / "src", store, cache=False, block_size=BLOCK, raise_on_failure=False)

    assert len(store.blocks()) >= HOLD and store.commits() == []
    assert [p for p, _ in report.failed] == ["big.bin"]
    assert "changed while it was uploaded" in report.failed[0][1]
    assert sorted(o.name for o in await inner.list()) == [MANIFEST_NAME, "small.txt"]
    manifest = json.loads((await inner.get(MANIFEST_NAME)).data)
    assert sorted(manifest["files"]) == ["small.txt"]
    assert (await inner.get("small.txt")).data == files["small.txt"]


async def test_a_file_created_early_is_not_also_staged_in_blocks(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    data = os.urandom(3 * BLOCK)  # small enough for an early create, above the block size
    (src / "mid.bin").write_bytes(data)
    inner = MemoryStore()
    store = BlocksBeforeListing(inner, hold=2, counted=("put", "put_block"), patience=0.3)
    report = await push(src, store, cache=False, block_size=BLOCK)
    assert store.calls[:store.listed_at] == [("put", "mid.bin")]
    assert store.blocks() == [] and store.commits() == []
    assert report.uploaded == ("mid.bin",) and (await inner.get("mid.bin")).data == data

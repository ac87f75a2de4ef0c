"""A push of a whole directory reads each file that moves once: a file whose store copy is
missing or differs in size is not hashed first, its upload hashes the bytes it sends, and
that digest is the one in the object's metadata, the manifest, the sync record and the stat
cache (only when the file did not change while it was read). Files whose store copy has
their size are hashed before planning, and every rule of a scan-then-plan push still holds
(refusals and a corrupt manifest before any upload, verification, the same report)."""

from __future__ import annotations

import builtins
import importlib
import json
import os
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from luisy_sync import MemoryStore, SyncError, SyncFailed, UnsafePathError, push
from luisy_sync.conventions import MANIFEST_NAME
from luisy_sync.errors import ManifestError
from luisy_sync.hashing import hash_bytes
from luisy_sync.statcache import NullStatCache, StatCache, StatKey, stat_key
from luisy_sync.stores.wrappers import Fault, FaultStore
from luisy_sync.syncrecord import read_sync_record

scan_mod = importlib.import_module("luisy_sync.scan")  # the package's ``scan`` is the function
push_mod = importlib.import_module("luisy_sync.directory_push")

BLOCK = 64 * 1024  # push(block_size=BLOCK): files larger than this go up in staged blocks


def make_files(root: Path, count: int, size: int = 100) -> dict[str, bytes]:
    files = {f"d{i % 4}/f{i:04d}.bin": bytes([i % 251]) * size for i in range(count)}
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def mixed_files(root: Path) -> dict[str, bytes]:
    """Small files (batched puts), one of a single put, and two of staged blocks."""
    files = {f"small/{i:02d}.txt": os.urandom(10 + i) for i in range(20)}
    files["one-put.bin"] = os.urandom(BLOCK)
    files["blocks/big.bin"] = os.urandom(3 * BLOCK + 17)
    files["blocks/bigger.bin"] = os.urandom(5 * BLOCK)
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def recording_store() -> tuple[FaultStore, threading.Event]:
    """A memory store and an event set by its first put."""
    first_put = threading.Event()
    return FaultStore(MemoryStore(), Fault("put", before=first_put.set)), first_put


class RecordingCache(NullStatCache):
    """A stat cache that remembers every ``put`` (and answers nothing)."""

    def __init__(self) -> None:
        self.puts: dict[str, tuple[StatKey, str]] = {}
        self.lock = threading.Lock()

    def put(self, path: str, key: StatKey, digest: str) -> None:
        with self.lock:
            assert path not in self.puts, f"{path} recorded twice"
            self.puts[path] = (key, digest)


def count_opens(monkeypatch: pytest.MonkeyPatch, root: Path) -> Counter[str]:
    """Every open of a file below ``root`` (``open`` and ``os.open``), by relative path."""
    opened: Counter[str] = Counter()
    prefix = str(root) + os.sep
    real_open, real_os_open = builtins.open, os.open

    def note(path: Any) -> None:
        if isinstance(path, (str, os.PathLike)) and os.fspath(path).startswith(prefix):
            opened[os.path.relpath(os.fspath(path), root).replace(os.sep, "/")] += 1

    def spy_open(file: Any, *args: Any, **kw: Any) -> Any:
        note(file)
        return real_open(file, *args, **kw)

    def spy_os_open(path: Any, *args: Any, **kw: Any) -> int:
        note(path)
        return real_os_open(path, *args, **kw)

    monkeypatch.setattr(builtins, "open", spy_open)
    monkeypatch.setattr(os, "open", spy_os_open)
    return opened


async def stored_digest(store: Any, name: str) -> tuple[bytes, str | None]:
    got = await store.get(name)
    return got.data, (await store.head(name)).digest


async def test_a_cold_push_reads_each_file_once_and_hashes_none_first(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = mixed_files(tmp_path / "src")
    hashed: list[int] = []
    original = scan_mod._hash_batch

    def hash_batch(batch: Any, cache: Any) -> Any:
        hashed.append(len(batch))
        return original(batch, cache)

    monkeypatch.setattr(scan_mod, "_hash_batch", hash_batch)
    opened = count_opens(monkeypatch, tmp_path / "src")
    store = MemoryStore()
    report = await push(tmp_path / "src", store, cache=False, block_size=BLOCK)
    monkeypatch.undo()
    assert sorted(report.uploaded) == sorted(files)
    assert hashed == []  # nothing hashed before the upload
    assert opened == Counter({rel: 1 for rel in files})  # each file opened (and read) once
    for rel, data in files.items():
        assert await stored_digest(store, rel) == (data, hash_bytes(data))


async def test_the_digest_recorded_everywhere_is_that_of_the_bytes_uploaded(tmp_path: Path) -> None:
    src = tmp_path / "src"
    files = mixed_files(src)
    cache = RecordingCache()
    store = MemoryStore()
    await push(src, store, cache=cache, block_size=BLOCK)
    manifest = json.loads((await store.get(MANIFEST_NAME)).data.decode())["files"]
    record = read_sync_record(str(src))
    for rel, data in files.items():
        digest = hash_bytes(data)
        assert await stored_digest(store, rel) == (data, digest)
        assert manifest[rel]["digest"] == digest and manifest[rel]["size"] == len(data)
        assert record[rel] == digest
        assert cache.puts[str(src / rel)] == (stat_key(os.stat(src / rel)), digest)
    assert len(cache.puts) == len(files)


async def test_files_hashed_on_upload_are_stat_cache_hits_next_time(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    files = mixed_files(src)
    for rel in files:  # old enough for the cache to trust (see statcache.RACY_WINDOW_NS)
        os.utime(src / rel, ns=(10**18, 10**18))
    time.sleep(0.2)  # and their ctime too (see statcache.CTIME_RACY_WINDOW_NS)
    cache = StatCache(tmp_path / "cache.sqlite")
    store = MemoryStore()
    await push(src, store, cache=cache, block_size=BLOCK)
    cache.close()
    reopened = StatCache(tmp_path / "cache.sqlite")  # what the push wrote to the file
    for rel, data in files.items():
        assert reopened.get(str(src / rel), stat_key(os.stat(src / rel))) == hash_bytes(data)
    opened = count_opens(monkeypatch, src)
    report = await push(src, MemoryStore(), cache=reopened, block_size=BLOCK)  # a fresh store
    monkeypatch.undo()
    reopened.close()
    assert sorted(report.uploaded) == sorted(files)
    assert opened == Counter({rel: 1 for rel in files})  # digests from the cache, verified on upload


@pytest.mark.parametrize("rel", ["small/03.txt", "one-put.bin", "blocks/big.bin"])
async def test_a_file_rewritten_while_it_is_read_fails_and_is_recorded_nowhere(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rel: str) -> None:
    src = tmp_path / "src"
    files = mixed_files(src)
    victim = src / rel
    os.utime(victim, ns=(10**18, 10**18))  # its rewrite below surely moves its mtime
    inode = os.stat(victim).st_ino
    real_fstat = os.fstat
    rewritten: list[bool] = []

    def fstat(fd: int) -> os.stat_result:  # the victim changes right after its upload first looks
        st = real_fstat(fd)
        if st.st_ino == inode and not rewritten:
            rewritten.append(True)
            with builtins.open(victim, "r+b") as fh:
                fh.write(bytes(reversed(files[rel])))
        return st

    monkeypatch.setattr(os, "fstat", fstat)
    cache = RecordingCache()
    store = MemoryStore()
    with pytest.raises(SyncFailed, match="changed while it was uploaded .modified while it was read") as caught:
        await push(src, store, cache=cache, block_size=BLOCK)
    monkeypatch.undo()
    assert rewritten == [True] and [p for p, _ in caught.value.report.failed] == [rel]
    await assert_recorded_nowhere(store, src, cache, files, rel)


async def assert_recorded_nowhere(store: Any, src: Path, cache: RecordingCache, files: dict[str, bytes],
                                  rel: str) -> None:
    """``rel`` is not in the store, the manifest, the sync record or the cache; the others are."""
    assert rel not in {o.name for o in await store.list()}
    manifest = json.loads((await store.get(MANIFEST_NAME)).data.decode())["files"]
    assert sorted(manifest) == sorted(set(files) - {rel})
    assert rel not in read_sync_record(str(src)) and str(src / rel) not in cache.puts
    assert len(cache.puts) == len(files) - 1


@pytest.mark.parametrize("rel", ["small/03.txt", "blocks/big.bin"])
@pytest.mark.parametrize("grows", [False, True], ids=["same-size", "grown"])
async def test_a_file_changed_between_the_walk_and_its_upload(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              rel: str, grows: bool) -> None:
    src = tmp_path / "src"
    files = mixed_files(src)
    new = bytes(reversed(files[rel])) + (b"more" if grows else b"")
    real_walk = push_mod.walk_files

    def walk_files(*args: Any) -> Any:
        found = real_walk(*args)
        (src / rel).write_bytes(new)
        return found

    monkeypatch.setattr(push_mod, "walk_files", walk_files)
    cache = RecordingCache()
    store = MemoryStore()
    if grows:  # not the size the walk saw: fails, recorded nowhere
        with pytest.raises(SyncFailed, match="changed while it was uploaded") as caught:
            await push(src, store, cache=cache, block_size=BLOCK)
        assert [p for p, _ in caught.value.report.failed] == [rel]
        await assert_recorded_nowhere(store, src, cache, files, rel)
        return
    report = await push(src, store, cache=cache, block_size=BLOCK)  # uploaded as it is now
    assert sorted(report.uploaded) == sorted(files)
    digest = hash_bytes(new)
    assert await stored_digest(store, rel) == (new, digest)
    manifest = json.loads((await store.get(MANIFEST_NAME)).data.decode())["files"]
    assert manifest[rel]["digest"] == digest and read_sync_record(str(src))[rel] == digest
    assert cache.puts[str(src / rel)] == (stat_key(os.stat(src / rel)), digest)


async def test_a_file_whose_store_copy_has_its_size_is_hashed_first(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    files = make_files(tmp_path / "src", 50)
    store = MemoryStore()
    await push(tmp_path / "src", store, cache=False)
    (tmp_path / "src" / "d1/f0001.bin").write_bytes(b"y" * 100)  # same size, new content
    (tmp_path / "src" / "new.bin").write_bytes(b"new")
    opened = count_opens(monkeypatch, tmp_path / "src")
    report = await push(tmp_path / "src", store, cache=False)
    monkeypatch.undo()
    assert sorted(report.uploaded) == ["d1/f0001.bin", "new.bin"]
    assert len(report.skipped) == len(files) - 1
    assert (await store.get("d1/f0001.bin")).data == b"y" * 100
    # same-size files are hashed to plan (the changed one read again to upload); new.bin once
    assert opened == Counter({**{rel: 1 for rel in files}, "d1/f0001.bin": 2, "new.bin": 1})


async def test_a_hash_error_stops_the_push_before_any_upload(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    files = make_files(tmp_path / "src", 600)
    store, first_put = recording_store()
    await push(tmp_path / "src", store, cache=False)
    for rel, data in files.items():  # same sizes: all hashed before planning (three batches)
        (tmp_path / "src" / rel).write_bytes(bytes([(data[0] + 1) % 256]) * len(data))
    first_put.clear()
    original = scan_mod._hash_batch
    calls: list[int] = []

    def hash_batch(batch: Any, cache: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise SyncError("d0/f0000.bin kept changing while it was hashed; retry once it is complete")
        return original(batch, cache)

    monkeypatch.setattr(scan_mod, "_hash_batch", hash_batch)
    with pytest.raises(SyncError, match="kept changing"):
        await push(tmp_path / "src", store, cache=False)
    assert not first_put.is_set()


async def test_refused_names_and_a_corrupt_manifest_stop_the_push_before_any_upload(tmp_path: Path) -> None:
    make_files(tmp_path / "src", 20)
    (tmp_path / "src" / "back\\slash").write_bytes(b"x")
    store, first_put = recording_store()
    with pytest.raises(UnsafePathError):
        await push(tmp_path / "src", store, cache=False)
    assert not first_put.is_set()
    (tmp_path / "src" / "back\\slash").unlink()
    await store.put(MANIFEST_NAME, b"{not json")
    first_put.clear()
    with pytest.raises(ManifestError):
        await push(tmp_path / "src", store, cache=False)
    assert not first_put.is_set()


async def test_a_missing_directory_fails_before_the_store_is_opened(tmp_path: Path) -> None:
    with pytest.raises(SyncError, match="does not exist"):
        await push(tmp_path / "nope", "bogus-scheme://nowhere")


class _ListingStore(MemoryStore):
    """A MemoryStore that notes when its listing starts (``networked`` as given)."""

    def __init__(self, networked: bool, events: list[str], listing_started: threading.Event):
        super().__init__()
        self.networked = networked
        self.events, self.listing_started = events, listing_started

    async def list(self, prefix: str = "") -> list[Any]:
        self.events.append("list")
        self.listing_started.set()
        return await super().list(prefix)


@pytest.mark.parametrize("networked", [False, True])
async def test_the_walk_overlaps_the_listing_only_on_a_networked_store(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, networked: bool) -> None:
    """A local store's listing is a walk in this process too: it follows the walk (two at
    once only hand the interpreter lock back and forth); a networked one's overlaps it."""
    files = make_files(tmp_path / "src", 6)
    events: list[str] = []
    listing_started = threading.Event()
    real_walk = push_mod.walk_files

    def walk(*args: Any) -> Any:
        events.append("walk")
        started = listing_started.wait(5 if networked else 0.3)  # does the listing start meanwhile?
        assert started == networked
        found = real_walk(*args)
        events.append("walked")
        return found

    monkeypatch.setattr(push_mod, "walk_files", walk)
    store = _ListingStore(networked, events, listing_started)
    report = await push(tmp_path / "src", store, cache=False)
    assert sorted(report.uploaded) == sorted(files)
    if networked:
        assert events.index("list") < events.index("walked")
    else:
        assert events[:3] == ["walk", "walked", "list"]

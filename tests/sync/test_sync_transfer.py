"""The transfer engine: sizes and names, verification, retries, limits, cancellation."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest

from luisy_sync.errors import StoreError, TransientError
from luisy_sync.hashing import hash_bytes, hash_file
from luisy_sync.progress import ProgressCallback
from luisy_sync.retry import RetryPolicy
from luisy_sync.statcache import NullStatCache, StatKey, stat_key
from luisy_sync.stores.base import DIGEST_KEY
from luisy_sync.stores.memory import MemoryStore
from luisy_sync.stores.wrappers import CountingStore, Fault, FaultStore
from luisy_sync.moves import download_paths, upload_paths
from luisy_sync.budget import BUFFER_MIN, BUFFER_UNIT
from luisy_sync.transfer import Transfer
from luisy_sync.tree import FileEntry, Tree
from test_download_writer import recording_takes

BLOCK = 256 * 1024
FAST_RETRY = RetryPolicy(base=0.001, cap=0.005)

SAMPLES = {
    "empty.txt": b"",
    "one.bin": b"\x01",
    "exactly-one-block.bin": bytes(range(256)) * (BLOCK // 256),
    "one-block-plus-one.bin": b"z" * (BLOCK + 1),
    "multi/block/file.bin": os.urandom(3 * BLOCK + 12345),
    "ünïcødé/日本語 name.csv": "a,b\n1,2\n".encode() * 100,
    "deep/a/b/c/d/e.txt": b"nested",
}


def write_tree(root: Path, files: dict[str, bytes]) -> Tree:
    """Write ``files`` below ``root`` and return their Tree."""
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return Tree({rel: FileEntry(len(data), hash_file(root / rel)) for rel, data in files.items()},
                root=str(root))


def all_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def temp_files(root: Path) -> list[str]:
    return [p.name for p in root.rglob("*") if ".luisy-tmp-" in p.name]


def transfer(**kw: Any) -> Transfer:
    return Transfer(block_size=kw.pop("block_size", BLOCK), policy=kw.pop("policy", FAST_RETRY), **kw)


DATA_VERBS = ("put", "put_block", "commit_blocks", "get")


def flaky(inner: Any, n: int) -> FaultStore:
    """Fails the first ``n`` calls of each data verb with TransientError."""
    return FaultStore(inner, *(Fault(verb, times=n, error=partial(TransientError, f"{verb}: connection reset (injected)"))
                               for verb in DATA_VERBS))


def counting(inner: Any) -> CountingStore:
    """Counts data requests in flight (each takes a little while)."""
    return CountingStore(inner, verbs=DATA_VERBS, delay=0.002)


class Recorder(ProgressCallback):
    """Keeps the net byte count and the events per kind."""

    def __init__(self) -> None:
        self.bytes = 0
        self.events: dict[str, int] = {}

    def _note(self, kind: str) -> None:
        self.events[kind] = self.events.get(kind, 0) + 1

    def started(self, path: str, size: int) -> None:
        self._note("started")

    def advanced(self, path: str, nbytes: int) -> None:
        self.bytes += nbytes

    def retried(self, path: str, attempt: int, reason: str) -> None:
        self._note("retried")

    def finished(self, path: str) -> None:
        self._note("finished")

    def failed(self, path: str, reason: str) -> None:
        self._note("failed")


async def test_round_trip_of_every_size_and_name(any_store: Any, tmp_path: Path) -> None:
    tree = write_tree(tmp_path / "src", SAMPLES)
    up = await upload_paths(any_store, tree.root, list(tree), tree, prefix="data", transfer=transfer())
    assert up.failed == [] and sorted(up.done) == sorted(SAMPLES)
    assert up.bytes_transferred == tree.total_bytes
    listed = {o.name: o for o in await any_store.list("data/")}
    assert {n: (o.size, o.digest) for n, o in listed.items()} == {
        f"data/{p}": (e.size, e.digest) for p, e in tree.items()}

    dest = tmp_path / "dest"
    down = await download_paths(any_store, dest, list(tree), tree, prefix="data", transfer=transfer())
    assert down.failed == [] and sorted(down.done) == sorted(SAMPLES)
    assert all_files(dest) == SAMPLES
    assert temp_files(dest) == []


async def test_paths_go_to_and_come_from_the_names_given(any_store: Any, tmp_path: Path) -> None:
    tree = write_tree(tmp_path / "src", SAMPLES)
    names = {p: f"by-name/{i:03d}" for i, p in list(enumerate(sorted(tree)))[::2]}  # others: prefix + path
    up = await upload_paths(any_store, tree.root, list(tree), tree, prefix="data", names=names,
                            transfer=transfer())
    assert up.failed == [] and sorted(up.done) == sorted(SAMPLES)
    listed = {o.name for o in await any_store.list("")}
    assert listed == {names.get(p, f"data/{p}") for p in tree}
    dest = tmp_path / "dest"
    down = await download_paths(any_store, dest, list(tree), tree, prefix="data", names=names,
                                transfer=transfer())
    assert down.failed == [] and all_files(dest) == SAMPLES


@pytest.mark.parametrize("size", [100, 3 * BLOCK + 7], ids=["small", "multi-block"])
async def test_corrupted_blob_is_caught_and_never_lands(any_store: Any, tmp_path: Path, size: int) -> None:
    good = os.urandom(size)
    tree = write_tree(tmp_path / "src", {"x/victim.bin": good, "ok.txt": b"fine"})
    await upload_paths(any_store, tree.root, list(tree), tree, transfer=transfer())
    bad = bytearray(good)
    bad[size // 2] ^= 0xFF
    await any_store.put("x/victim.bin", bytes(bad), metadata={DIGEST_KEY: tree["x/victim.bin"].digest})

    dest = tmp_path / "dest"
    result = await download_paths(any_store, dest, list(tree), tree, transfer=transfer())
    assert result.done == ["ok.txt"]
    [(path, reason)] = result.failed
    assert path == "x/victim.bin" and reason.startswith("IntegrityError") and "\n" not in reason
    assert not (dest / "x" / "victim.bin").exists()
    assert temp_files(dest) == []


async def test_transient_failures_are_retried(tmp_path: Path) -> None:
    inner = MemoryStore()
    flaky_store = flaky(inner, n=3)
    tree = write_tree(tmp_path / "src", SAMPLES)
    progress = Recorder()
    up = await upload_paths(flaky_store, tree.root, list(tree), tree, transfer=transfer(progress=progress))
    assert up.failed == []
    assert flaky_store.failures == 9  # put, put_block and commit_blocks failed 3 times each
    assert progress.events["retried"] == 9
    assert progress.bytes == tree.total_bytes  # retries never count bytes twice

    down = await download_paths(flaky_store, tmp_path / "dest", list(tree), tree, transfer=transfer())
    assert down.failed == [] and flaky_store.failures == 12  # and get 3 times
    assert all_files(tmp_path / "dest") == SAMPLES


async def test_whole_file_restart_uncounts_bytes(tmp_path: Path) -> None:
    data = os.urandom(2 * BLOCK + 5)
    tree = write_tree(tmp_path / "src", {"f.bin": data})
    store = MemoryStore()
    await store.put("f.bin", b"\x00" * len(data), metadata={DIGEST_KEY: tree["f.bin"].digest})

    async def repair() -> None:  # the first attempt saw the corrupt copy; repair it now
        await store.put("f.bin", data, metadata={DIGEST_KEY: tree["f.bin"].digest})

    heals_after_first_read = FaultStore(store, Fault("get", skip=2, times=1, before=repair))
    progress = Recorder()
    result = await download_paths(heals_after_first_read, tmp_path / "dest", ["f.bin"], tree,
                                  transfer=transfer(progress=progress))
    assert result.done == ["f.bin"]
    assert progress.events["retried"] == 1
    assert progress.bytes == len(data) == result.bytes_transferred
    assert (tmp_path / "dest" / "f.bin").read_bytes() == data


async def test_permanent_failure_is_recorded_and_others_continue(tmp_path: Path) -> None:
    denies = FaultStore(MemoryStore(), Fault("put", name="b.txt", error=partial(
        StoreError, "put b.txt: 403 this request is not authorized", status=403)))
    tree = write_tree(tmp_path / "src", {"a.txt": b"a", "b.txt": b"b", "c.txt": b"c"})
    progress = Recorder()
    result = await upload_paths(denies, tree.root, list(tree), tree,
                                transfer=transfer(progress=progress))
    assert result.done == ["a.txt", "c.txt"]
    assert result.failed == [("b.txt", "StoreError: put b.txt: 403 this request is not authorized")]
    assert progress.events == {"started": 3, "finished": 2, "failed": 1}
    assert result.bytes_transferred == 2


async def test_concurrency_limit_covers_blocks_and_small_files(tmp_path: Path) -> None:
    files = {f"small/{i:03d}.txt": f"file {i}".encode() for i in range(60)}
    files["big.bin"] = os.urandom(10 * BLOCK)
    tree = write_tree(tmp_path / "src", files)
    counts = counting(MemoryStore())
    await upload_paths(counts, tree.root, list(tree), tree, transfer=transfer(concurrency=4))
    assert 1 < counts.peak <= 4 and counts.calls["put_block"] == 10 and counts.now == 0
    counts.peak = 0
    await download_paths(counts, tmp_path / "dest", list(tree), tree, transfer=transfer(concurrency=3))
    assert 1 < counts.peak <= 3 and counts.calls["get"] > 0
    assert all_files(tmp_path / "dest") == files


async def test_file_changed_after_scan_is_not_uploaded(tmp_path: Path) -> None:
    tree = write_tree(tmp_path / "src", {"small.txt": b"before", "big.bin": os.urandom(2 * BLOCK)})
    (tmp_path / "src" / "small.txt").write_bytes(b"after!")
    with open(tmp_path / "src" / "big.bin", "r+b") as fh:
        fh.seek(BLOCK + 3)
        fh.write(b"changed")
    store = MemoryStore()
    result = await upload_paths(store, tree.root, list(tree), tree, transfer=transfer())
    assert [p for p, _ in result.failed] == ["big.bin", "small.txt"]
    assert all(r.startswith("IntegrityError") and "changed" in r for _, r in result.failed)
    assert await store.list() == []


async def test_entries_without_a_digest_are_hashed_as_they_are_uploaded(tmp_path: Path) -> None:
    tree = write_tree(tmp_path / "src", SAMPLES)
    bare = Tree({p: FileEntry(e.size, None, e.mtime_ns) for p, e in tree.items()}, root=tree.root)
    recorded: dict[str, str] = {}

    class Recording(NullStatCache):
        def put(self, path: str, key: StatKey, digest: str) -> None:
            assert key == stat_key(os.stat(path))
            recorded[os.path.relpath(path, tree.root).replace(os.sep, "/")] = digest

    store = MemoryStore()
    result = await upload_paths(store, bare.root, list(bare), bare, transfer=transfer(stat_cache=Recording()))
    expected = {p: e.digest for p, e in tree.items()}
    assert result.failed == [] and result.digests == recorded == expected
    assert {p: (await store.head(p)).digest for p in tree} == expected
    again = await upload_paths(MemoryStore(), tree.root, list(tree), tree, transfer=transfer())
    assert again.digests == expected  # checked against the tree, and reported the same way


async def test_unsafe_names_are_refused_per_file(tmp_path: Path) -> None:
    store = MemoryStore()
    await store.put("ok.txt", b"ok", metadata={DIGEST_KEY: hash_bytes(b"ok")})
    expected = Tree({"ok.txt": FileEntry(2, hash_bytes(b"ok")),
                     "../escape.txt": FileEntry(2, hash_bytes(b"ok"))})
    dest = tmp_path / "dest"
    result = await download_paths(store, dest, list(expected), expected, transfer=transfer())
    assert result.done == ["ok.txt"]
    assert result.failed[0][0] == "../escape.txt" and "UnsafePathError" in result.failed[0][1]
    assert not (tmp_path / "escape.txt").exists()


def stalls(inner: Any) -> tuple[FaultStore, anyio.Event]:
    """A store that serves the first data request (then sets the event), then blocks
    every later one forever."""
    served = anyio.Event()
    verbs = ("get", "put_block")
    return FaultStore(inner, Fault(verbs, times=1, after=served.set),
                      Fault(verbs, skip=1, before=anyio.sleep_forever)), served


async def _cancel_when_served(served: anyio.Event, fn: Any, *args: Any, **kw: Any) -> None:
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: fn(*args, **kw))
            await served.wait()
            await anyio.sleep(0.05)
            tg.cancel_scope.cancel()


async def test_cancelled_download_leaves_no_temp_file(tmp_path: Path) -> None:
    data = os.urandom(4 * BLOCK)
    tree = write_tree(tmp_path / "src", {"d/big.bin": data})
    store = MemoryStore()
    await upload_paths(store, tree.root, list(tree), tree, transfer=transfer())
    stalling, served = stalls(store)
    dest = tmp_path / "dest"
    await _cancel_when_served(served, download_paths, stalling, dest, list(tree), tree, transfer=transfer())
    assert (dest / "d").is_dir()
    assert list(dest.rglob("*.bin")) == [] and temp_files(dest) == []


async def test_cancelled_large_upload_commits_nothing(any_store: Any, tmp_path: Path) -> None:
    tree = write_tree(tmp_path / "src", {"big.bin": os.urandom(4 * BLOCK)})
    stalling, served = stalls(any_store)
    await _cancel_when_served(served, upload_paths, stalling, tree.root, list(tree), tree, transfer=transfer())
    assert [o.name for o in await any_store.list()] == []


@pytest.fixture(params=["local_store", pytest.param("azure_store", marks=pytest.mark.azurite)])
def real_store(request: pytest.FixtureRequest) -> Any:
    """The local store, then the Azurite store."""
    return request.getfixturevalue(request.param)


@pytest.mark.slow
async def test_100_mib_file_with_default_block_size(real_store: Any, tmp_path: Path) -> None:
    store = real_store
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "big.bin", "wb") as fh:
        for _ in range(25):
            fh.write(os.urandom(4 * 2 ** 20))
    tree = Tree({"big.bin": FileEntry(100 * 2 ** 20, hash_file(src / "big.bin"))}, root=str(src))
    up = await upload_paths(store, src, ["big.bin"], tree, transfer=Transfer())
    assert up.failed == [] and up.bytes_transferred == 100 * 2 ** 20
    assert (await store.head("big.bin")).digest == tree["big.bin"].digest
    down = await download_paths(store, tmp_path / "dest", ["big.bin"], tree, transfer=Transfer())
    assert down.failed == []
    assert hash_file(tmp_path / "dest" / "big.bin") == tree["big.bin"].digest
    assert temp_files(tmp_path / "dest") == []


async def test_ranges_arriving_early_are_hashed_in_order_kept_or_read_back(tmp_path: Path) -> None:
    """The first range of a file comes last: the others arrive early, half the byte
    budget of them is kept in memory for the hasher and the rest is read back from the
    file; the download still verifies, and every byte of the budget is given back."""
    data = os.urandom(12 * BLOCK + 99)
    store = MemoryStore()
    await store.put("big.bin", data, metadata={DIGEST_KEY: hash_bytes(data)})
    slow_first = FaultStore(store, Fault("get", times=1, before=partial(anyio.sleep, 0.2)))
    entry = FileEntry(len(data), hash_bytes(data))
    moving = transfer(memory_limit=6 * BLOCK)
    result = await download_paths(slow_first, tmp_path, ["big.bin"], Tree({"big.bin": entry}),
                                  transfer=moving)
    assert result.done == ["big.bin"] and (tmp_path / "big.bin").read_bytes() == data
    assert moving.budget.held == 0 and 6 * BLOCK >= moving.budget.peak > 4 * BLOCK


async def test_a_batch_read_into_one_buffer_keeps_each_file_to_its_own_part(tmp_path: Path) -> None:
    """Small files of a batch share one pooled buffer: a file that grew or shrank since it
    was listed fails alone, its neighbours are stored byte for byte, and a second batch
    reuses the buffer the first one gave back."""
    files = {f"d/{i}.bin": os.urandom(5000 + i) for i in range(6)}
    tree = write_tree(tmp_path / "src", files)
    (tmp_path / "src" / "d/1.bin").write_bytes(files["d/1.bin"] + b"grown")
    (tmp_path / "src" / "d/4.bin").write_bytes(files["d/4.bin"][:-7])
    store = MemoryStore()
    moving = transfer()
    taken = recording_takes(moving)
    result = await upload_paths(store, tree.root, list(tree), tree, transfer=moving)
    assert [p for p, _ in result.failed] == ["d/1.bin", "d/4.bin"]
    assert "size larger" in result.failed[0][1] and "size 4997, expected 5004" in result.failed[1][1]
    for rel in ("d/0.bin", "d/2.bin", "d/3.bin", "d/5.bin"):
        assert (await store.get(rel)).data == files[rel]
    good = ["d/0.bin", "d/2.bin", "d/3.bin", "d/5.bin"]  # 20 KiB: the same 32 KiB size class
    again = await upload_paths(MemoryStore(), tree.root, good, tree, transfer=moving)
    assert sorted(again.done) == good and taken[-1] == taken[0] and moving.budget.held == 0


def test_read_buffers_come_in_size_classes_and_are_reused() -> None:
    moving = transfer()
    with moving.read_buffer(10) as first:
        assert len(first) == BUFFER_MIN
        with moving.read_buffer(BUFFER_UNIT + 1) as second:
            assert len(second) == 2 * BUFFER_UNIT
        with moving.read_buffer(5000) as third:
            assert len(third) == 8192
        with moving.read_buffer(BUFFER_UNIT) as whole:
            assert len(whole) == BUFFER_UNIT
        with moving.read_buffer(0) as empty:
            assert len(empty) == BUFFER_MIN and empty is not first
    with moving.read_buffer(BUFFER_MIN) as again:
        assert again is first or again is empty
    with moving.read_buffer(BUFFER_UNIT - 1) as reused:
        assert reused is whole

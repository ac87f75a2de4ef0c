"""The transfer engine: sizes and names, verification, retries, limits, cancellation."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio
import pytest

from luisy_sync.errors import StoreError, TransientError
from luisy_sync.hashing import hash_bytes, hash_file
from luisy_sync.progress import ProgressCallback
from luisy_sync.retry import RetryPolicy
from luisy_sync.stores.base import DIGEST_KEY
from luisy_sync.stores.memory import MemoryStore
from luisy_sync.transfer import Transfer, download_paths, upload_paths
from luisy_sync.tree import FileEntry, Tree

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


class Wrapper:
    """A store that forwards everything to ``inner`` unless a subclass overrides it."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.url = inner.url

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class Flaky(Wrapper):
    """Fails the first ``n`` calls of each data method with TransientError."""

    def __init__(self, inner: Any, n: int):
        super().__init__(inner)
        self.left = {m: n for m in ("put", "put_block", "commit_blocks", "get")}
        self.failures = 0

    def _maybe_fail(self, method: str) -> None:
        if self.left[method] > 0:
            self.left[method] -= 1
            self.failures += 1
            raise TransientError(f"{method}: connection reset (injected)")

    async def put(self, *a: Any, **kw: Any) -> Any:
        self._maybe_fail("put")
        return await self.inner.put(*a, **kw)

    async def put_block(self, *a: Any, **kw: Any) -> Any:
        self._maybe_fail("put_block")
        return await self.inner.put_block(*a, **kw)

    async def commit_blocks(self, *a: Any, **kw: Any) -> Any:
        self._maybe_fail("commit_blocks")
        return await self.inner.commit_blocks(*a, **kw)

    async def get(self, *a: Any, **kw: Any) -> Any:
        self._maybe_fail("get")
        return await self.inner.get(*a, **kw)


class Counting(Wrapper):
    """Counts store requests in flight (each takes a little while)."""

    def __init__(self, inner: Any):
        super().__init__(inner)
        self.now = self.peak = self.total = 0

    async def _counted(self, method: str, *a: Any, **kw: Any) -> Any:
        self.now += 1
        self.total += 1
        self.peak = max(self.peak, self.now)
        try:
            await anyio.sleep(0.002)
            return await getattr(self.inner, method)(*a, **kw)
        finally:
            self.now -= 1

    async def put(self, *a: Any, **kw: Any) -> Any:
        return await self._counted("put", *a, **kw)

    async def put_block(self, *a: Any, **kw: Any) -> Any:
        return await self._counted("put_block", *a, **kw)

    async def commit_blocks(self, *a: Any, **kw: Any) -> Any:
        return await self._counted("commit_blocks", *a, **kw)

    async def get(self, *a: Any, **kw: Any) -> Any:
        return await self._counted("get", *a, **kw)


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
    flaky = Flaky(inner, n=3)
    tree = write_tree(tmp_path / "src", SAMPLES)
    progress = Recorder()
    up = await upload_paths(flaky, tree.root, list(tree), tree, transfer=transfer(progress=progress))
    assert up.failed == []
    assert flaky.failures == 9  # put, put_block and commit_blocks failed 3 times each
    assert progress.events["retried"] == 9
    assert progress.bytes == tree.total_bytes  # retries never count bytes twice

    down = await download_paths(flaky, tmp_path / "dest", list(tree), tree, transfer=transfer())
    assert down.failed == []
    assert all_files(tmp_path / "dest") == SAMPLES


async def test_whole_file_restart_uncounts_bytes(tmp_path: Path) -> None:
    data = os.urandom(2 * BLOCK + 5)
    tree = write_tree(tmp_path / "src", {"f.bin": data})
    store = MemoryStore()
    await store.put("f.bin", b"\x00" * len(data), metadata={DIGEST_KEY: tree["f.bin"].digest})

    class HealsAfterFirstRead(Wrapper):
        reads = 0

        async def get(self, name: str, start: int = 0, length: int | None = None) -> Any:
            self.reads += 1
            if self.reads == 3:  # the first attempt saw the corrupt copy; repair it now
                await self.inner.put(name, data, metadata={DIGEST_KEY: tree["f.bin"].digest})
            return await self.inner.get(name, start, length)

    progress = Recorder()
    result = await download_paths(HealsAfterFirstRead(store), tmp_path / "dest", ["f.bin"], tree,
                                  transfer=transfer(progress=progress))
    assert result.done == ["f.bin"]
    assert progress.events["retried"] == 1
    assert progress.bytes == len(data) == result.bytes_transferred
    assert (tmp_path / "dest" / "f.bin").read_bytes() == data


async def test_permanent_failure_is_recorded_and_others_continue(tmp_path: Path) -> None:
    class Denies(Wrapper):
        async def put(self, name: str, data: bytes, **kw: Any) -> Any:
            if name == "b.txt":
                raise StoreError("put b.txt: 403 this request is not authorized", status=403)
            return await self.inner.put(name, data, **kw)

    tree = write_tree(tmp_path / "src", {"a.txt": b"a", "b.txt": b"b", "c.txt": b"c"})
    progress = Recorder()
    result = await upload_paths(Denies(MemoryStore()), tree.root, list(tree), tree,
                                transfer=transfer(progress=progress))
    assert result.done == ["a.txt", "c.txt"]
    assert result.failed == [("b.txt", "StoreError: put b.txt: 403 this request is not authorized")]
    assert progress.events == {"started": 3, "finished": 2, "failed": 1}
    assert result.bytes_transferred == 2


async def test_concurrency_limit_covers_blocks_and_small_files(tmp_path: Path) -> None:
    files = {f"small/{i:03d}.txt": f"file {i}".encode() for i in range(60)}
    files["big.bin"] = os.urandom(10 * BLOCK)
    tree = write_tree(tmp_path / "src", files)
    counting = Counting(MemoryStore())
    await upload_paths(counting, tree.root, list(tree), tree, transfer=transfer(concurrency=4))
    assert 1 < counting.peak <= 4
    counting.peak = 0
    await download_paths(counting, tmp_path / "dest", list(tree), tree, transfer=transfer(concurrency=3))
    assert 1 < counting.peak <= 3
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


class Stalls(Wrapper):
    """Serves the first data request, then blocks every later one forever."""

    def __init__(self, inner: Any):
        super().__init__(inner)
        self.served = anyio.Event()
        self.calls = 0

    async def _stall_after_first(self, method: str, *a: Any, **kw: Any) -> Any:
        self.calls += 1
        if self.calls > 1:
            await anyio.sleep_forever()
        result = await getattr(self.inner, method)(*a, **kw)
        self.served.set()
        return result

    async def get(self, *a: Any, **kw: Any) -> Any:
        return await self._stall_after_first("get", *a, **kw)

    async def put_block(self, *a: Any, **kw: Any) -> Any:
        return await self._stall_after_first("put_block", *a, **kw)


async def _cancel_when_served(stalls: Stalls, fn: Any, *args: Any, **kw: Any) -> None:
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: fn(*args, **kw))
            await stalls.served.wait()
            await anyio.sleep(0.05)
            tg.cancel_scope.cancel()


async def test_cancelled_download_leaves_no_temp_file(tmp_path: Path) -> None:
    data = os.urandom(4 * BLOCK)
    tree = write_tree(tmp_path / "src", {"d/big.bin": data})
    store = MemoryStore()
    await upload_paths(store, tree.root, list(tree), tree, transfer=transfer())
    stalls = Stalls(store)
    dest = tmp_path / "dest"
    await _cancel_when_served(stalls, download_paths, stalls, dest, list(tree), tree, transfer=transfer())
    assert (dest / "d").is_dir()
    assert list(dest.rglob("*.bin")) == [] and temp_files(dest) == []


async def test_cancelled_large_upload_commits_nothing(any_store: Any, tmp_path: Path) -> None:
    tree = write_tree(tmp_path / "src", {"big.bin": os.urandom(4 * BLOCK)})
    stalls = Stalls(any_store)
    await _cancel_when_served(stalls, upload_paths, stalls, tree.root, list(tree), tree, transfer=transfer())
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

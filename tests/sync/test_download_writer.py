"""The writing side of ranged downloads (luisy_sync.download_writer) and streamed reads end to end."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio
import pytest

from luisy_sync.budget import BufferPool
from luisy_sync.download_writer import ChunkPool, OrderedWriter, RangeSink
from luisy_sync.errors import IntegrityError, ShortReadError, TransientError
from luisy_sync.hashing import hash_bytes
from luisy_sync.moves import download_paths
from luisy_sync.retry import RetryPolicy
from luisy_sync.stores.base import DIGEST_KEY, BodySink, GetResult, feed_sink
from luisy_sync.stores.memory import MemoryStore
from luisy_sync.transfer import Transfer
from luisy_sync.tree import FileEntry, Tree
from luisy_sync.io_pace import IOPace


async def _until(check: Any) -> None:
    with anyio.fail_after(5):
        while not check():
            await anyio.sleep(0.001)


@pytest.mark.parametrize("size", [1000, 5000, 1 << 20])  # pieces off page boundaries, across them, whole pages
async def test_writer_keeps_what_fits_and_reads_back_the_rest(tmp_path: Path, size: int) -> None:
    parts = [os.urandom(size) for _ in range(5)]
    done: list[int] = []
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    try:
        writer = OrderedWriter(fd, keep_limit=2 * size)
        writer.submit(parts[3], 3 * size, lambda: done.append(3))  # early: kept
        writer.submit(parts[1], size, lambda: done.append(1))  # early: kept (the limit now)
        writer.submit(parts[2], 2 * size, lambda: done.append(2))  # early, over the limit: read back later
        await _until(lambda: done == [2])  # written: its buffer is free; the kept ones are not
        writer.submit(parts[0], 0, lambda: done.append(0))  # in turn: 1, 2 (from the file), 3 hashed
        writer.submit(parts[4], 4 * size, lambda: done.append(4))
        await writer.close()
        assert sorted(done) == [0, 1, 2, 3, 4] and done[0] == 2
        assert writer.error is None and writer.hexdigest(5 * size) == hash_bytes(b"".join(parts))
        assert Path(tmp_path / "f").read_bytes() == b"".join(parts)
    finally:
        os.close(fd)


async def test_writer_reports_a_temp_file_cut_short_before_its_reread(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    done: list[int] = []
    try:
        writer = OrderedWriter(fd, keep_limit=0)
        writer.submit(b"b" * 10, 10, lambda: done.append(1))  # early, not kept: read back later
        await _until(lambda: done == [1])
        os.ftruncate(fd, 12)  # someone cut the temp file
        writer.submit(b"a" * 10, 0, lambda: done.append(0))
        await writer.close()
    finally:
        os.close(fd)
    assert isinstance(writer.error, ShortReadError) and "re-reading 10 bytes at 10" in str(writer.error)
    assert sorted(done) == [0, 1]


async def test_writer_error_is_kept_and_every_buffer_still_comes_back(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"")
    fd = os.open(tmp_path / "f", os.O_RDONLY)  # writes fail
    done: list[int] = []
    try:
        writer = OrderedWriter(fd, keep_limit=10)
        for i in range(3):
            writer.submit(b"x" * 5, 5 * (2 - i), lambda i=i: done.append(i))
        await writer.close()
    finally:
        os.close(fd)
    assert isinstance(writer.error, OSError) and sorted(done) == [0, 1, 2]
    with pytest.raises(RuntimeError, match="hashed 0 of 15"):
        writer.hexdigest(15)


def test_chunk_pool_makes_chunks_as_needed_and_wakes_waiters_in_order() -> None:
    pool = ChunkPool(2, 8)
    woken: list[str] = []
    a, b = pool.take(lambda: woken.append("x")), pool.take(lambda: woken.append("x"))
    assert a is not None and b is not None and len(a) == 8 and a is not b

    def first() -> None:
        woken.append("first")

    assert pool.take(first) is None and pool.take(first) is None  # one wake-up, however often asked
    assert pool.take(lambda: woken.append("second")) is None
    pool.give(a)
    assert woken == ["first"] and pool.take(first) is a
    pool.give(b)
    assert woken == ["first", "second"]


def test_chunk_pool_takes_its_chunks_from_a_source_and_gives_them_back_on_close() -> None:
    source = BufferPool(1 << 20)
    first = ChunkPool(2, 8, source)
    a, b = first.take(lambda: None), first.take(lambda: None)
    assert a is not None and b is not None
    first.give(a)
    first.give(b)
    first.close()
    second = ChunkPool(2, 8, source)
    assert {id(second.take(lambda: None)), id(second.take(lambda: None))} == {id(a), id(b)}


async def test_range_sink_hands_full_chunks_on_and_resumes_after_a_cut(tmp_path: Path) -> None:
    data = os.urandom(10)
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    try:
        writer = OrderedWriter(fd)
        pool = ChunkPool(2, 4)
        sink = RangeSink(writer, pool, 0, 10, "f: get f bytes 0+10")
        with pytest.raises(ShortReadError, match="read 9 of 10"):
            sink.start(9)
        with pytest.raises(IntegrityError, match="range is 11 bytes, expected 10"):
            sink.start(11)
        sink.start(10)
        view = sink.buffer(lambda: None)
        assert view is not None and len(view) == 4
        view[:4] = data[:4]
        sink.received(4)  # a full chunk: handed to the writer
        view = sink.buffer(lambda: None)
        assert view is not None
        view[:3] = data[4:7]
        sink.received(3)
        assert sink.committed == 4
        sink.restart()  # the read was cut: the 3 bytes not handed on are dropped
        await feed_sink(sink, data[4:])  # the read again, from the first byte not handed on
        sink.check_complete()
        await writer.close()
        assert writer.hexdigest(10) == hash_bytes(data) and Path(tmp_path / "f").read_bytes() == data
    finally:
        os.close(fd)
    cut = RangeSink(writer, ChunkPool(1, 4), 0, 10, "f")
    with pytest.raises(ShortReadError, match="read 0 of 10"):
        cut.check_complete()


class StreamingStore(MemoryStore):
    """A MemoryStore with ``get_stream``: hands ranges over in 100 KiB pieces; the first
    ``cuts`` reads break after their first piece (as a reset connection does)."""

    def __init__(self, cuts: int = 0, first_late: float = 0.0):
        super().__init__()
        self.cuts, self.first_late = cuts, first_late
        self.reads: list[tuple[int, int]] = []

    async def get_stream(self, name: str, start: int, length: int, sink: BodySink) -> GetResult:
        self.reads.append((start, length))
        if start == 0 and self.first_late:
            await anyio.sleep(self.first_late)  # every later range arrives before the first
        got = await self.get(name, start, length)
        sink.start(len(got.data))
        view = memoryview(got.data)
        piece = 100 * 1024
        for i in range(0, len(view), piece):
            if i and self.cuts:
                self.cuts -= 1
                raise TransientError(f"read {name!r}: connection reset (injected)")
            await feed_sink(sink, view[i:i + piece], start=False)
            await anyio.sleep(0)
        return GetResult(b"", got.etag)


@pytest.mark.parametrize("cuts", [0, 3])
async def test_streamed_download_verifies_and_resumes_cut_reads(tmp_path: Path, cuts: int,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    block, chunk = 256 * 1024, 64 * 1024
    monkeypatch.setattr("luisy_sync.download.STREAM_CHUNK", chunk)
    data = os.urandom(20 * block + 12345)
    store = StreamingStore(cuts)
    await store.put("big.bin", data, metadata={DIGEST_KEY: hash_bytes(data)})
    moving = Transfer(block_size=block, policy=RetryPolicy(base=0.001, cap=0.005))
    result = await download_paths(store, tmp_path, ["big.bin"],
                                  Tree({"big.bin": FileEntry(len(data), hash_bytes(data))}), transfer=moving)
    assert result.done == ["big.bin"] and (tmp_path / "big.bin").read_bytes() == data
    assert moving.budget.held == 0 and sorted(os.listdir(tmp_path)) == ["big.bin"]
    # a retry starts after the chunks the cut read had handed on (one: its first 100 KiB piece)
    resumed = [s for s, _ in store.reads if s % block]
    assert len(resumed) == cuts and all(s % block == chunk for s in resumed)


async def test_streamed_download_of_damaged_content_fails_and_leaves_nothing(tmp_path: Path) -> None:
    block = 256 * 1024
    data, damaged = os.urandom(9 * block), os.urandom(9 * block)
    store = StreamingStore()  # its copy is not what its digest says
    await store.put("big.bin", damaged, metadata={DIGEST_KEY: hash_bytes(data)})
    entry = FileEntry(len(data), hash_bytes(data))
    moving = Transfer(block_size=block, policy=RetryPolicy(base=0.001, cap=0.005))
    result = await download_paths(store, tmp_path, ["big.bin"], Tree({"big.bin": entry}), transfer=moving)
    assert result.done == [] and "does not match its digest" in result.failed[0][1]
    assert os.listdir(tmp_path) == [] and moving.budget.held == 0


async def test_streamed_download_with_a_pool_of_one_chunk_does_not_stall(tmp_path: Path) -> None:
    """A chunk kept for the in-order hash must never be the pool's last: with one chunk
    in the pool nothing is kept, and the late first range still gets its chunk."""
    block = 256 * 1024
    data = os.urandom(3 * block + 99)
    store = StreamingStore(first_late=0.05)
    await store.put("f.bin", data, metadata={DIGEST_KEY: hash_bytes(data)})
    moving = Transfer(block_size=block, memory_limit=2 * block, policy=RetryPolicy(base=0.001, cap=0.005))
    with anyio.fail_after(10):
        result = await download_paths(store, tmp_path, ["f.bin"],
                                      Tree({"f.bin": FileEntry(len(data), hash_bytes(data))}), transfer=moving)
    assert result.done == ["f.bin"] and (tmp_path / "f.bin").read_bytes() == data
    assert moving.budget.held == 0


class ConcurrencyStore(StreamingStore):
    """Records, per object, the most streamed reads of it in flight at once."""

    def __init__(self) -> None:
        super().__init__()
        self.now: dict[str, int] = {}
        self.most: dict[str, int] = {}

    async def get_stream(self, name: str, start: int, length: int, sink: BodySink) -> GetResult:
        self.now[name] = self.now.get(name, 0) + 1
        self.most[name] = max(self.most.get(name, 0), self.now[name])
        try:
            await anyio.sleep(0.02)  # long enough for every reader of the file to start
            return await super().get_stream(name, start, length, sink)
        finally:
            self.now[name] -= 1


@pytest.mark.parametrize("names", [["big.bin"], ["a.bin", "b.bin"], ["a.bin", "b.bin", "c.bin"]])
async def test_streamed_reads_per_file_spread_over_the_large_files_of_a_pull(tmp_path: Path,
                                                                            names: list[str]) -> None:
    """A large file pulled alone has STREAMS_PER_FILE reads in flight; several large files
    pulled together have STREAMS_PER_FILE_AMONG_SEVERAL each. A file beside them that
    moves on its own but fits one block (one read, no ranges) does not count."""
    from luisy_sync.download import STREAMS_PER_FILE, STREAMS_PER_FILE_AMONG_SEVERAL

    block = 2 * 1024 * 1024  # above the batch limit (1 MiB), so "one.bin" moves on its own
    store = ConcurrencyStore()
    files = {name: os.urandom(4 * block) for name in names}  # 4 ranges of one block each
    files["one.bin"] = os.urandom(block * 3 // 4)
    for name, data in files.items():
        await store.put(name, data, metadata={DIGEST_KEY: hash_bytes(data)})
    moving = Transfer(block_size=block, policy=RetryPolicy(base=0.001, cap=0.005))
    tree = Tree({name: FileEntry(len(data), hash_bytes(data)) for name, data in files.items()})
    result = await download_paths(store, tmp_path, sorted(files), tree, transfer=moving)
    assert result.done == sorted(files)
    assert all((tmp_path / name).read_bytes() == data for name, data in files.items())
    expected = STREAMS_PER_FILE if len(names) == 1 else STREAMS_PER_FILE_AMONG_SEVERAL
    assert STREAMS_PER_FILE_AMONG_SEVERAL < STREAMS_PER_FILE
    assert {name: store.most[name] for name in names} == {name: expected for name in names}
    assert store.most["one.bin"] == 1 and len(store.reads) == 4 * len(names) + 1


def recording_takes(moving: Transfer) -> list[int]:
    """The ids of the buffers ``moving`` takes from its pool from now on, in order."""
    taken: list[int] = []
    real_take = moving.buffers.take

    def take(size: int) -> bytearray:
        buffer = real_take(size)
        taken.append(id(buffer))
        return buffer

    moving.buffers.take = take  # type: ignore[method-assign]
    return taken


@pytest.mark.parametrize("cuts", [0, 3])
async def test_small_objects_stream_into_pooled_buffers_and_resume_cut_reads(tmp_path: Path, cuts: int) -> None:
    """Whole small objects land in the transfer's pooled buffers (batched ones and those
    read on their own, up to a block): a second pull takes no new buffer, and a read cut
    short starts again into the same buffer."""
    block = 512 * 1024
    sizes = [0, 1, 4095, 4096, 70_000, 300_000, block]
    files = {f"d/{i}.bin": os.urandom(size) for i, size in enumerate(sizes)}
    store = StreamingStore(cuts)
    for rel, data in files.items():
        await store.put(rel, data, metadata={DIGEST_KEY: hash_bytes(data)})
    tree = Tree({rel: FileEntry(len(data), hash_bytes(data)) for rel, data in files.items()})
    moving = Transfer(block_size=block, policy=RetryPolicy(base=0.001, cap=0.005))
    taken = recording_takes(moving)
    rounds = []
    for dest in (tmp_path / "a", tmp_path / "b"):
        result = await download_paths(store, dest, list(files), tree, transfer=moving)
        assert sorted(result.done) == sorted(files) and not result.failed
        assert {rel: (dest / rel).read_bytes() for rel in files} == files
        assert sorted(os.listdir(dest / "d")) == sorted(p.split("/")[1] for p in files)
        rounds.append(list(taken))
        taken.clear()
    assert len(rounds[0]) == len(files) and set(rounds[1]) <= set(rounds[0])
    assert all(length is None for start, length in store.reads if start == 0)
    assert moving.budget.held == 0


async def test_a_small_object_that_changed_since_its_listing_fails_alone(tmp_path: Path) -> None:
    """A streamed whole object longer or shorter than listed is refused at its head: that
    file fails (nothing written under its name), its neighbours are stored."""
    files = {f"{i}.bin": os.urandom(3000 + i) for i in range(4)}
    store = StreamingStore()
    for rel, data in files.items():
        await store.put(rel, data, metadata={DIGEST_KEY: hash_bytes(data)})
    tree = Tree({rel: FileEntry(len(data), hash_bytes(data)) for rel, data in files.items()})
    await store.put("1.bin", files["1.bin"] + b"grown")
    await store.put("2.bin", files["2.bin"][:-7])
    moving = Transfer(policy=RetryPolicy(base=0.001, cap=0.005, max_attempts=2))
    result = await download_paths(store, tmp_path, list(files), tree, transfer=moving)
    assert sorted(result.done) == ["0.bin", "3.bin"]
    reasons = dict(result.failed)
    assert "is 3006 bytes, expected 3001; it changed since it was listed" in reasons["1.bin"]
    assert "read 2995 of 3002 bytes" in reasons["2.bin"]
    assert sorted(os.listdir(tmp_path)) == ["0.bin", "3.bin"]
    assert all((tmp_path / rel).read_bytes() == files[rel] for rel in ("0.bin", "3.bin"))
    assert moving.budget.held == 0


async def test_writer_writes_inline_and_hands_buffers_back_after_the_call(tmp_path: Path) -> None:
    """Quick writes happen in ``submit`` itself (no thread); ``done`` runs soon after on the
    loop, never inside ``submit`` (a buffer handed back may wake another read)."""
    parts = [os.urandom(4096) for _ in range(3)]
    done: list[int] = []
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    try:
        writer = OrderedWriter(fd)
        writer.submit(parts[1], 4096, lambda: done.append(1))  # early: written, read back later
        writer.submit(parts[0], 0, lambda: done.append(0))
        assert done == [] and Path(tmp_path / "f").read_bytes() == parts[0] + parts[1]
        await anyio.sleep(0)
        assert done == [1, 0]
        writer.submit(parts[2], 8192, lambda: done.append(2))
        await writer.close()
        assert not writer.threaded and done == [1, 0, 2]
        assert writer.hexdigest(3 * 4096) == hash_bytes(b"".join(parts))
    finally:
        os.close(fd)


async def test_writer_moves_to_a_thread_once_its_writes_turn_slow(tmp_path: Path) -> None:
    size = 64 * 1024
    parts = [os.urandom(size) for _ in range(6)]
    done: list[int] = []
    pace = IOPace()
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    try:
        writer = OrderedWriter(fd, keep_limit=size, pace=pace)
        writer.submit(parts[2], 2 * size, lambda: done.append(2))  # early, kept; inline
        assert not writer.threaded
        pace.record(0.2, size)  # a write blocked for 200 ms: the pace turns slow
        for i in (5, 4, 1, 0, 3):  # to the thread, which keeps or reads back the early ones
            writer.submit(parts[i], i * size, lambda i=i: done.append(i))
            assert writer.threaded
        await writer.close()
        assert writer.error is None and sorted(done) == list(range(6))
        assert writer.hexdigest(6 * size) == hash_bytes(b"".join(parts))
        assert Path(tmp_path / "f").read_bytes() == b"".join(parts)
    finally:
        os.close(fd)

"""hashing: xxh3-128 digests of bytes and files, streamed in chunks."""

from __future__ import annotations

import io
import os
import tracemalloc

import pytest
import xxhash

from luisy_sync.hashing import hash_bytes, hash_file, hash_fileobj, new_hasher

CHUNK = 1024


@pytest.mark.parametrize(("data", "digest"), [
    (b"", "99aa06d3014798d86001c324468d497f"),
    (b"abc", "06b05ab6733a618578af5f94892f3950"),
], ids=["empty", "abc"])
def test_hash_bytes_known_vectors(data: bytes, digest: str) -> None:
    assert hash_bytes(data) == digest


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5],
                         ids=["empty", "one", "chunk-1", "chunk", "chunk+1", "several"])
def test_hash_file_equals_hash_of_bytes_across_chunk_boundaries(tmp_path, size: int) -> None:
    data = os.urandom(size)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert hash_file(path, chunk_size=CHUNK) == hash_bytes(data) == xxhash.xxh3_128(data).hexdigest()
    assert hash_file(str(path)) == hash_bytes(data)


def test_hash_fileobj_hashes_from_the_current_position() -> None:
    fh = io.BytesIO(b"header" + b"payload")
    fh.seek(6)
    assert hash_fileobj(fh, chunk_size=3) == hash_bytes(b"payload")


def test_incremental_hasher_agrees_with_one_shot() -> None:
    hasher = new_hasher()
    for part in (b"a", b"bc", b""):
        hasher.update(part)
    assert hasher.hexdigest() == hash_bytes(b"abc")


@pytest.mark.parametrize("chunk_size", [0, -1])
def test_non_positive_chunk_size_is_refused(tmp_path, chunk_size: int) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x")
    with pytest.raises(ValueError, match="chunk_size"):
        hash_file(path, chunk_size=chunk_size)


def test_hash_file_memory_stays_near_one_chunk(tmp_path) -> None:
    path = tmp_path / "big.bin"
    block = os.urandom(1 << 20)
    with open(path, "wb") as fh:
        for _ in range(24):
            fh.write(block)
    tracemalloc.start()
    try:
        hash_file(path, chunk_size=1 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 << 20, f"hashing a 24 MiB file peaked at {peak} bytes"


def test_missing_file_raises_file_not_found(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        hash_file(tmp_path / "nope")


@pytest.mark.parametrize("hint", [0, 10, CHUNK * 100], ids=["zero", "too-small", "large"])
def test_size_hint_only_sizes_the_buffer(hint: int) -> None:
    data = os.urandom(5 * CHUNK + 3)
    assert hash_fileobj(io.BytesIO(data), chunk_size=CHUNK, size_hint=hint) == hash_bytes(data)

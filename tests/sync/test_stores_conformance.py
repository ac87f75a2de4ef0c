"""The Store protocol, checked identically against memory, local and Azurite stores."""

from __future__ import annotations

import os

import pytest
import xxhash

from luisy_sync.errors import NotFoundError, PreconditionFailed, StoreError, UnsafePathError
from luisy_sync.stores.base import DIGEST_KEY, ObjectInfo, Store


def digest(data: bytes) -> str:
    return xxhash.xxh3_128_hexdigest(data)


async def test_is_a_store_with_a_url(any_store: Store) -> None:
    assert isinstance(any_store, Store)
    assert isinstance(any_store.url, str) and "://" in any_store.url


async def test_put_head_list_get(any_store: Store) -> None:
    data = os.urandom(1000)
    info = await any_store.put("dir/a.bin", data, metadata={DIGEST_KEY: digest(data)})
    assert (info.name, info.size, info.digest) == ("dir/a.bin", 1000, digest(data))
    assert info.etag
    head = await any_store.head("dir/a.bin")
    assert (head.name, head.size, head.digest, head.etag) == ("dir/a.bin", 1000, digest(data), info.etag)
    listed = await any_store.list()
    assert [(o.name, o.size, o.digest, o.etag) for o in listed] == [("dir/a.bin", 1000, digest(data), info.etag)]
    assert await any_store.get_range("dir/a.bin") == data
    assert await any_store.get_range("dir/a.bin", 10) == data[10:]
    assert await any_store.get_range("dir/a.bin", 10, 90) == data[10:100]
    assert await any_store.get_range("dir/a.bin", 999, 1) == data[999:]
    assert await any_store.get_range("dir/a.bin", 0, 1000) == data


async def test_empty_and_one_byte_objects(any_store: Store) -> None:
    await any_store.put("empty", b"", metadata={DIGEST_KEY: digest(b"")})
    await any_store.put("one", b"x")
    assert (await any_store.head("empty")).size == 0
    assert (await any_store.head("empty")).digest == digest(b"")
    assert await any_store.get_range("empty") == b""
    assert await any_store.get_range("one") == b"x"
    assert await any_store.get_range("one", 0, 1) == b"x"
    assert (await any_store.head("one")).digest is None


async def test_overwrite_replaces_content_and_metadata(any_store: Store) -> None:
    first = await any_store.put("f", b"one", metadata={DIGEST_KEY: digest(b"one")})
    second = await any_store.put("f", b"second")
    assert first.etag != second.etag
    head = await any_store.head("f")
    assert (head.size, head.digest) == (6, None)
    assert await any_store.get_range("f") == b"second"


async def test_list_with_prefix_and_sorted(any_store: Store) -> None:
    for name in ["b/x", "a/2", "a/1", "ab", "a/sub/deep"]:
        await any_store.put(name, name.encode())
    assert [o.name for o in await any_store.list()] == ["a/1", "a/2", "a/sub/deep", "ab", "b/x"]
    assert [o.name for o in await any_store.list("a/")] == ["a/1", "a/2", "a/sub/deep"]
    assert [o.name for o in await any_store.list("a")] == ["a/1", "a/2", "a/sub/deep", "ab"]
    assert [o.name for o in await any_store.list("a/s")] == ["a/sub/deep"]
    assert await any_store.list("zzz/") == []


async def test_unicode_and_nested_names(any_store: Store) -> None:
    names = ["données/été.csv", "日本/データ/ファイル.txt", "with space/and+plus=eq.txt", "a/b/c/d/e/f/g.bin"]
    for i, name in enumerate(names):
        await any_store.put(name, bytes([i]) * (i + 1), metadata={DIGEST_KEY: f"{i:032x}"})
    listed = {o.name: o for o in await any_store.list()}
    assert sorted(listed) == sorted(names)
    for i, name in enumerate(names):
        assert listed[name].digest == f"{i:032x}"
        assert await any_store.get_range(name) == bytes([i]) * (i + 1)


async def test_blocks_commit_in_order(any_store: Store) -> None:
    blocks = {f"{i:05d}": os.urandom(100 + i) for i in range(40)}
    order = sorted(blocks)
    for block_id in reversed(order):
        await any_store.put_block("big/file", block_id, blocks[block_id])
    assert await any_store.list() == []  # staged blocks are invisible
    with pytest.raises(NotFoundError):
        await any_store.head("big/file")
    data = b"".join(blocks[b] for b in order)
    info = await any_store.commit_blocks("big/file", order, metadata={DIGEST_KEY: digest(data)})
    assert (info.name, info.size, info.digest) == ("big/file", len(data), digest(data))
    assert await any_store.get_range("big/file") == data
    assert await any_store.get_range("big/file", 150, 300) == data[150:450]
    assert [o.name for o in await any_store.list()] == ["big/file"]


async def test_uncommitted_blocks_do_not_replace_the_object(any_store: Store) -> None:
    await any_store.put("obj", b"original")
    await any_store.put_block("obj", "blk-0001", b"staged but never committed")
    assert await any_store.get_range("obj") == b"original"
    assert [(o.name, o.size) for o in await any_store.list()] == [("obj", 8)]


async def test_commit_of_a_missing_block_fails_clearly(any_store: Store) -> None:
    await any_store.put_block("x", "blk-0001", b"data")
    with pytest.raises(StoreError) as err:
        await any_store.commit_blocks("x", ["blk-0001", "blk-0002"])
    assert "\n" not in str(err.value) and "block" in str(err.value)
    with pytest.raises(NotFoundError):
        await any_store.head("x")


async def test_delete_and_delete_missing(any_store: Store) -> None:
    await any_store.put("d/x", b"1")
    await any_store.put("d/y", b"2")
    await any_store.delete("d/x")
    await any_store.delete("d/x")
    await any_store.delete("never/existed")
    assert [o.name for o in await any_store.list()] == ["d/y"]
    with pytest.raises(NotFoundError):
        await any_store.get_range("d/x")


async def test_not_found(any_store: Store) -> None:
    with pytest.raises(NotFoundError):
        await any_store.head("missing")
    with pytest.raises(NotFoundError):
        await any_store.get_range("missing", 0, 10)
    with pytest.raises(NotFoundError):
        await any_store.read_small("missing")


async def test_small_writes_if_none_match(any_store: Store) -> None:
    etag = await any_store.write_small("meta/manifest.json", b"v1", if_none_match=True)
    data, read_etag = await any_store.read_small("meta/manifest.json")
    assert (data, read_etag) == (b"v1", etag)
    with pytest.raises(PreconditionFailed):
        await any_store.write_small("meta/manifest.json", b"v2", if_none_match=True)
    assert (await any_store.read_small("meta/manifest.json"))[0] == b"v1"


async def test_small_writes_if_match(any_store: Store) -> None:
    first = await any_store.write_small("m", b"v1")
    second = await any_store.write_small("m", b"v2", if_match=first)
    assert second != first
    with pytest.raises(PreconditionFailed):
        await any_store.write_small("m", b"stale writer", if_match=first)
    assert await any_store.read_small("m") == (b"v2", second)
    with pytest.raises(PreconditionFailed):
        await any_store.write_small("absent", b"x", if_match=first)
    with pytest.raises(NotFoundError):
        await any_store.read_small("absent")


async def test_unsafe_names_refused(any_store: Store) -> None:
    for bad in ["../escape", "/abs", "a/../../b", "a\\b", "", "a//b"]:
        with pytest.raises(UnsafePathError):
            await any_store.put(bad, b"x")
    assert await any_store.list() == []


async def test_ensure_container_is_idempotent(any_store: Store) -> None:
    await any_store.ensure_container(create=True)
    await any_store.ensure_container(create=False)
    await any_store.put("x", b"1")
    await any_store.ensure_container(create=True)
    assert [o.name for o in await any_store.list()] == ["x"]


async def test_objectinfo_digest_property() -> None:
    assert ObjectInfo("a", 1, None, {DIGEST_KEY: "d"}).digest == "d"
    assert ObjectInfo("a", 1).digest is None


async def test_block_ids_must_share_one_length(any_store: Store) -> None:
    await any_store.put_block("x", "blk-0001", b"1")
    with pytest.raises(StoreError, match="same length"):
        await any_store.put_block("x", "blk-00002", b"2")
    with pytest.raises(StoreError):
        await any_store.put_block("y", "b" * 65, b"2")

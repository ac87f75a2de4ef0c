"""The Store protocol, checked identically against memory, local and Azurite stores."""

from __future__ import annotations

import os
import time

import pytest
import xxhash

from luisy_sync.errors import NotFoundError, PreconditionFailed, StoreError, UnsafePathError
from luisy_sync.stores.base import DIGEST_KEY, GetResult, ObjectInfo, PutMode, Store
from luisy_sync.stores.small import read_small, write_small


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
    assert (await any_store.get("dir/a.bin")).data == data
    assert (await any_store.get("dir/a.bin", 10)).data == data[10:]
    assert (await any_store.get("dir/a.bin", 10, 90)).data == data[10:100]
    assert (await any_store.get("dir/a.bin", 999, 1)).data == data[999:]
    assert (await any_store.get("dir/a.bin", 0, 1000)).data == data


async def test_empty_and_one_byte_objects(any_store: Store) -> None:
    await any_store.put("empty", b"", metadata={DIGEST_KEY: digest(b"")})
    await any_store.put("one", b"x")
    assert (await any_store.head("empty")).size == 0
    assert (await any_store.head("empty")).digest == digest(b"")
    assert (await any_store.get("empty")).data == b""
    assert (await any_store.get("one")).data == b"x"
    assert (await any_store.get("one", 0, 1)).data == b"x"
    assert (await any_store.head("one")).digest is None


async def test_overwrite_replaces_content_and_metadata(any_store: Store) -> None:
    first = await any_store.put("f", b"one", metadata={DIGEST_KEY: digest(b"one")})
    second = await any_store.put("f", b"second")
    assert first.etag != second.etag
    head = await any_store.head("f")
    assert (head.size, head.digest) == (6, None)
    assert (await any_store.get("f")).data == b"second"


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
        assert (await any_store.get(name)).data == bytes([i]) * (i + 1)


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
    assert (await any_store.get("big/file")).data == data
    assert (await any_store.get("big/file", 150, 300)).data == data[150:450]
    assert [o.name for o in await any_store.list()] == ["big/file"]


async def test_uncommitted_blocks_do_not_replace_the_object(any_store: Store) -> None:
    await any_store.put("obj", b"original")
    await any_store.put_block("obj", "blk-0001", b"staged but never committed")
    assert (await any_store.get("obj")).data == b"original"
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
        (await any_store.get("d/x")).data


async def test_delete_of_one_version(any_store: Store) -> None:
    """With an ETag, delete removes only that version and leaves a newer one in place."""
    old = await any_store.put("v/x", b"old")
    new = await any_store.put("v/x", b"new")
    assert old.etag != new.etag
    with pytest.raises(PreconditionFailed):
        await any_store.delete("v/x", etag=old.etag)
    assert (await any_store.get("v/x")).data == b"new"
    await any_store.delete("v/x", etag=new.etag)
    assert [o.name for o in await any_store.list()] == []
    await any_store.delete("v/x", etag=new.etag)  # already gone: fine, as without one


async def test_not_found(any_store: Store) -> None:
    with pytest.raises(NotFoundError):
        await any_store.head("missing")
    with pytest.raises(NotFoundError):
        await any_store.get("missing", 0, 10)
    with pytest.raises(NotFoundError):
        await read_small(any_store, "missing")


async def test_small_writes_if_none_match(any_store: Store) -> None:
    etag = await write_small(any_store, "meta/manifest.json", b"v1", if_none_match=True)
    data, read_etag = await read_small(any_store, "meta/manifest.json")
    assert (data, read_etag) == (b"v1", etag)
    with pytest.raises(PreconditionFailed):
        await write_small(any_store, "meta/manifest.json", b"v2", if_none_match=True)
    assert (await read_small(any_store, "meta/manifest.json"))[0] == b"v1"


async def test_small_writes_if_match(any_store: Store) -> None:
    first = await write_small(any_store, "m", b"v1")
    second = await write_small(any_store, "m", b"v2", if_match=first)
    assert second != first
    with pytest.raises(PreconditionFailed):
        await write_small(any_store, "m", b"stale writer", if_match=first)
    assert await read_small(any_store, "m") == (b"v2", second)
    with pytest.raises(PreconditionFailed):
        await write_small(any_store, "absent", b"x", if_match=first)
    with pytest.raises(NotFoundError):
        await read_small(any_store, "absent")


async def test_one_etag_per_object_version(any_store: Store) -> None:
    """put == head == list == get (whole, ranged, empty range) for every way of writing."""
    data = b"0123456789" * 30
    written = {
        "e/put": await any_store.put("e/put", data, metadata={DIGEST_KEY: digest(data)}),
        "e/create": await any_store.put("e/create", data, mode=PutMode.CREATE),
    }
    written["e/update"] = await any_store.put("e/update", b"old")
    written["e/update"] = await any_store.put("e/update", data, metadata={"k": "v"},
                                              mode=PutMode.update(written["e/update"].etag or ""))
    for i, chunk in enumerate((data[:100], data[100:])):
        await any_store.put_block("e/blocks", f"b{i}", chunk)
    written["e/blocks"] = await any_store.commit_blocks("e/blocks", ["b0", "b1"])
    listed = {o.name: o for o in await any_store.list("e/")}
    assert sorted(listed) == sorted(written)
    for name, info in written.items():
        head = await any_store.head(name)
        whole, ranged = await any_store.get(name), await any_store.get(name, 5, 10)
        empty, past = await any_store.get(name, 5, 0), await any_store.get(name, len(data) + 5)
        assert (whole.data, ranged.data, empty.data, past.data) == (data, data[5:15], b"", b"")
        assert isinstance(whole, GetResult) and info.etag, name
        assert {info.etag, head.etag, listed[name].etag, whole.etag, ranged.etag, empty.etag,
                past.etag} == {info.etag}, name
        assert (info.size, head.size, listed[name].size) == (len(data),) * 3


async def test_put_modes(any_store: Store) -> None:
    created = await any_store.put("p/m", b"v1", metadata={DIGEST_KEY: digest(b"v1")}, mode=PutMode.CREATE)
    with pytest.raises(PreconditionFailed):
        await any_store.put("p/m", b"again", mode=PutMode.CREATE)
    updated = await any_store.put("p/m", b"v2", metadata={DIGEST_KEY: digest(b"v2")},
                                  mode=PutMode.update(created.etag or ""))
    with pytest.raises(PreconditionFailed):
        await any_store.put("p/m", b"stale", mode=PutMode.update(created.etag or ""))
    head = await any_store.head("p/m")
    assert (head.etag, head.digest, head.size) == (updated.etag, digest(b"v2"), 2)
    assert await any_store.get("p/m") == GetResult(b"v2", updated.etag or "")
    with pytest.raises(PreconditionFailed):
        await any_store.put("p/absent", b"x", mode=PutMode.update(updated.etag or ""))
    assert [o.name for o in await any_store.list("p/")] == ["p/m"]
    overwritten = await any_store.put("p/m", b"v3")
    assert overwritten.etag not in (created.etag, updated.etag)
    with pytest.raises(ValueError):
        PutMode("update")
    with pytest.raises(ValueError):
        PutMode("create", '"x"')


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


def _recent(info: ObjectInfo, since: float) -> bool:
    """``info.modified`` lies between ``since`` and now, give or take a few seconds (Azure
    reports whole seconds; the clocks of one machine)."""
    return info.modified is not None and since - 3 <= info.modified <= time.time() + 3


async def test_modified_is_the_time_of_the_last_write(any_store: Store) -> None:
    since = time.time()
    written = [await any_store.put("t/a", b"one"), await any_store.put("t/b", b"two", mode=PutMode.CREATE)]
    await any_store.put_block("t/c", "b0", b"three")
    written.append(await any_store.commit_blocks("t/c", ["b0"]))
    heads = [await any_store.head(n) for n in ("t/a", "t/b", "t/c")]
    listed = await any_store.list("t/")
    for info in written + heads + listed:
        assert _recent(info, since), info
    first = heads[0].modified
    assert first is not None
    time.sleep(0.05)
    again = await any_store.put("t/a", b"one, overwritten")
    later = await any_store.head("t/a")
    assert again.modified is not None and later.modified is not None
    assert again.modified >= first and later.modified >= first
    assert [o.modified for o in await any_store.list("t/a")] == [later.modified]


async def test_objectinfo_digest_property() -> None:
    assert ObjectInfo("a", 1, None, {DIGEST_KEY: "d"}).digest == "d"
    assert ObjectInfo("a", 1).digest is None


async def test_block_ids_must_share_one_length(any_store: Store) -> None:
    await any_store.put_block("x", "blk-0001", b"1")
    with pytest.raises(StoreError, match="same length"):
        await any_store.put_block("x", "blk-00002", b"2")
    with pytest.raises(StoreError):
        await any_store.put_block("y", "b" * 65, b"2")


async def test_copy_keeps_bytes_size_and_metadata(any_store: Store) -> None:
    data = os.urandom(3000)
    source = await any_store.put("cas/ab/cdef", data, metadata={DIGEST_KEY: digest(data), "k": "v"})
    copied = await any_store.copy("cas/ab/cdef", "view/out.bin")
    assert (copied.name, copied.size, copied.digest) == ("view/out.bin", 3000, digest(data))
    assert dict(copied.metadata) == {DIGEST_KEY: digest(data), "k": "v"}
    assert copied.etag and copied.modified is not None and copied.modified <= time.time() + 3
    head, got = await any_store.head("view/out.bin"), await any_store.get("view/out.bin")
    listed = {o.name: o for o in await any_store.list()}
    assert got.data == data and (await any_store.get("view/out.bin", 100, 50)).data == data[100:150]
    assert {copied.etag, head.etag, got.etag, listed["view/out.bin"].etag} == {copied.etag}
    assert (head.size, head.digest, dict(head.metadata)) == (3000, digest(data), dict(copied.metadata))
    assert head.modified == copied.modified == listed["view/out.bin"].modified
    assert sorted(listed) == ["cas/ab/cdef", "view/out.bin"]
    source_now = await any_store.head("cas/ab/cdef")
    assert (source_now.etag, source_now.digest) == (source.etag, digest(data))


async def test_copy_overwrites_and_the_two_names_stay_apart(any_store: Store) -> None:
    await any_store.put("v/dst", b"old content", metadata={DIGEST_KEY: digest(b"old content"), "x": "1"})
    await any_store.put("c/src", b"first", metadata={DIGEST_KEY: digest(b"first")})
    copied = await any_store.copy("c/src", "v/dst")
    head = await any_store.head("v/dst")
    assert (await any_store.get("v/dst")).data == b"first"
    assert (head.size, dict(head.metadata), head.etag) == (5, {DIGEST_KEY: digest(b"first")}, copied.etag)
    again = await any_store.copy("c/src", "v/dst")  # copying the same version again is fine
    assert (await any_store.get("v/dst")) == GetResult(b"first", again.etag or "")
    # a write of the source afterwards leaves the copy as it was, and the other way round
    await any_store.put("c/src", b"second!", metadata={DIGEST_KEY: digest(b"second!")})
    assert (await any_store.get("v/dst")) == GetResult(b"first", again.etag or "")
    assert (await any_store.head("v/dst")).digest == digest(b"first")
    await any_store.put("v/dst", b"third", metadata={DIGEST_KEY: digest(b"third")})
    assert (await any_store.get("c/src")).data == b"second!"
    assert (await any_store.head("c/src")).digest == digest(b"second!")
    await any_store.delete("c/src")
    assert (await any_store.get("v/dst")).data == b"third"
    assert [o.name for o in await any_store.list()] == ["v/dst"]


async def test_copy_of_a_missing_source_and_onto_itself(any_store: Store) -> None:
    with pytest.raises(NotFoundError):
        await any_store.copy("missing", "dst")
    with pytest.raises(NotFoundError):
        await any_store.head("dst")
    await any_store.put("dst", b"kept")
    with pytest.raises(NotFoundError):
        await any_store.copy("missing", "dst")
    assert (await any_store.get("dst")).data == b"kept"
    info = await any_store.put("same", b"itself", metadata={DIGEST_KEY: digest(b"itself")})
    assert (await any_store.copy("same", "same")).etag == info.etag
    assert await any_store.get("same") == GetResult(b"itself", info.etag or "")
    with pytest.raises(UnsafePathError):
        await any_store.copy("dst", "../escape")
    with pytest.raises(UnsafePathError):
        await any_store.copy("../escape", "x")
    assert sorted(o.name for o in await any_store.list()) == ["dst", "same"]


async def test_copy_of_an_empty_and_a_committed_object(any_store: Store) -> None:
    await any_store.put("e", b"", metadata={DIGEST_KEY: digest(b"")})
    assert (await any_store.copy("e", "e2")).size == 0
    assert (await any_store.get("e2")).data == b"" and (await any_store.head("e2")).digest == digest(b"")
    for i in range(2):
        await any_store.put_block("big", f"b{i}", bytes([i]) * 100)
    data = bytes([0]) * 100 + bytes([1]) * 100
    await any_store.commit_blocks("big", ["b0", "b1"], metadata={DIGEST_KEY: digest(data)})
    copied = await any_store.copy("big", "deep/er/big")
    assert (copied.size, copied.digest) == (200, digest(data))
    assert (await any_store.get("deep/er/big")).data == data

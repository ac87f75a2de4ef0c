"""LocalStore specifics: plain files, the sqlite object index, atomicity, inter-process conditional writes."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
from pathlib import Path

import pytest

from luisy_sync.conventions import STORE_DIR, TEMP_NAME
from luisy_sync.errors import ContainerNotFound, NotFoundError, PreconditionFailed, StoreError, UnsafePathError
from luisy_sync.stores.base import DIGEST_KEY, GetResult, ObjectInfo, PutMode
from luisy_sync.stores.local import LocalStore, content_etag
from luisy_sync.stores.small import read_small, write_small


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


async def test_objects_are_plain_files(local_store: LocalStore) -> None:
    root = Path(local_store.root)
    await local_store.put("a/b/c.txt", b"hello", metadata={DIGEST_KEY: "d" * 32})
    assert (root / "a" / "b" / "c.txt").read_bytes() == b"hello"
    assert local_store.url == root.as_uri() and local_store.url.startswith("file:///")
    visible = [p for p in _files(root) if not p.startswith(STORE_DIR)]
    assert visible == ["a/b/c.txt"]


async def test_files_put_by_hand_are_listed_without_digest(local_store: LocalStore) -> None:
    root = Path(local_store.root)
    (root / "hand").mkdir()
    (root / "hand" / "made.txt").write_bytes(b"12345")
    [info] = await local_store.list()
    assert (info.name, info.size, info.digest) == ("hand/made.txt", 5, None)
    assert (await local_store.get("hand/made.txt", 1, 3)).data == b"234"


@pytest.mark.parametrize("how", ["rewrite", "replace_same_size"])
async def test_metadata_ignored_when_content_replaced_behind_its_back(local_store: LocalStore, how: str) -> None:
    root = Path(local_store.root)
    await local_store.put("f.bin", b"original", metadata={DIGEST_KEY: "a" * 32})
    assert (await local_store.head("f.bin")).digest == "a" * 32
    if how == "rewrite":
        (root / "f.bin").write_bytes(b"other content, longer")
    else:  # same size, new inode: as an editor saving the file would do
        (root / "new.tmp").write_bytes(b"ORIGINAL")
        os.replace(root / "new.tmp", root / "f.bin")
    head = await local_store.head("f.bin")
    assert head.digest is None and head.metadata == {}
    [listed] = await local_store.list()
    assert listed.digest is None
    assert head.etag == listed.etag


async def test_metadata_of_deleted_object_does_not_come_back(local_store: LocalStore) -> None:
    root = Path(local_store.root)
    await local_store.put("x", b"abc", metadata={DIGEST_KEY: "b" * 32})
    await local_store.delete("x")
    (root / "x").write_bytes(b"xyz")
    assert (await local_store.head("x")).digest is None


async def test_bookkeeping_and_temp_files_never_listed(local_store: LocalStore) -> None:
    root = Path(local_store.root)
    await local_store.put_block("staged", "b1", b"x")
    await write_small(local_store, "m", b"1")
    (root / "d").mkdir()
    (root / "d" / ".f.luisy-tmp-0123456789abcdef0123456789abcdef").write_bytes(b"partial")
    assert [o.name for o in await local_store.list()] == ["m"]
    for bad in [f"{STORE_DIR}/meta/m.json", "d/.f.luisy-tmp-0123456789abcdef0123456789abcdef"]:
        with pytest.raises(UnsafePathError):
            await local_store.put(bad, b"x")


async def test_failed_commit_leaves_no_temp_file(local_store: LocalStore, monkeypatch: pytest.MonkeyPatch) -> None:
    root = Path(local_store.root)
    await local_store.put("dir/keep", b"k")
    for i in range(3):
        await local_store.put_block("dir/big", f"b{i}", os.urandom(1000))
    real_open = open
    blocks = str(root / STORE_DIR / "blocks")

    def failing_open(path, *args, **kw):  # the last block vanishes mid-commit
        if str(path).startswith(blocks) and not str(path).endswith("idlen"):
            failing_open.calls += 1
            if failing_open.calls == 3:
                raise FileNotFoundError(path)
        return real_open(path, *args, **kw)

    failing_open.calls = 0
    monkeypatch.setattr("builtins.open", failing_open)
    with pytest.raises(StoreError, match="upload the blocks again"):
        await local_store.commit_blocks("dir/big", ["b0", "b1", "b2"])
    monkeypatch.undo()
    assert failing_open.calls == 3
    assert not any(TEMP_NAME.match(p.name) for p in root.rglob("*"))
    assert [o.name for o in await local_store.list()] == ["dir/keep"]


async def test_commit_streams_and_cleans_staging(local_store: LocalStore) -> None:
    root = Path(local_store.root)
    parts = [os.urandom(300_000) for _ in range(8)]
    ids = [f"{i:04d}" for i in range(8)]
    for block_id, part in zip(ids, parts):
        await local_store.put_block("big", block_id, part)
    await local_store.commit_blocks("big", ids)
    assert (root / "big").read_bytes() == b"".join(parts)
    assert list((root / STORE_DIR / "blocks").iterdir()) == []


async def test_small_etag_is_content_based(local_store: LocalStore) -> None:
    etag = await write_small(local_store, "m", b"payload")
    assert etag == content_etag(b"payload") == (await local_store.head("m")).etag
    other = LocalStore(local_store.root)
    assert (await read_small(other, "m"))[1] == etag


async def test_delete_prunes_empty_directories(local_store: LocalStore) -> None:
    root = Path(local_store.root)
    await local_store.put("a/b/c", b"1")
    await local_store.put("a/d", b"2")
    await local_store.delete("a/b/c")
    assert not (root / "a" / "b").exists() and (root / "a" / "d").exists()
    assert root.exists()


async def test_name_conflicting_with_directory_is_a_clear_error(local_store: LocalStore) -> None:
    await local_store.put("a/b", b"1")
    with pytest.raises(StoreError, match="conflict"):
        await local_store.put("a", b"2")


async def test_ensure_container_create_and_refuse(tmp_path: Path) -> None:
    missing = LocalStore(tmp_path / "nope", create=False)
    with pytest.raises(ContainerNotFound) as err:
        await missing.ensure_container(create=False)
    assert "\n" not in str(err.value) and str(tmp_path / "nope") in str(err.value)
    with pytest.raises(ContainerNotFound):
        await missing.put("x", b"1")
    with pytest.raises(ContainerNotFound):
        await missing.list()
    assert not (tmp_path / "nope").exists()
    await missing.ensure_container(create=True)
    assert (tmp_path / "nope").is_dir()
    await missing.put("x", b"1")


async def test_missing_root_with_create_lists_nothing_and_creates_on_write(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "lazy")
    assert await store.list() == []
    await store.put("x", b"1")
    assert (tmp_path / "lazy" / "x").read_bytes() == b"1"


async def test_list_many_objects_mixed_with_hand_made_files(local_store: LocalStore) -> None:
    root = Path(local_store.root)
    for d in range(10):
        (root / f"d{d}").mkdir()
        for i in range(100):
            (root / f"d{d}" / f"f{i:03d}").write_bytes(b"x")
    for i in range(50):
        await local_store.put(f"d3/p{i:02d}", b"yy", metadata={DIGEST_KEY: f"{i:032x}"})
    listed = await local_store.list()
    assert len(listed) == 1050 and listed[0].name == "d0/f000"
    assert [o.name for o in listed] == sorted(o.name for o in listed)
    with_digest = {o.name: o.digest for o in listed if o.digest}
    assert with_digest == {f"d3/p{i:02d}": f"{i:032x}" for i in range(50)}


def _increment(root: str, count: int, errors: "multiprocessing.Queue[str]") -> None:
    async def run() -> None:
        store = LocalStore(root)
        for _ in range(count):
            while True:
                data, etag = await read_small(store, "counter.json")
                value = json.loads(data)["n"] + 1
                try:
                    await write_small(store, "counter.json", json.dumps({"n": value}).encode(), if_match=etag)
                    break
                except PreconditionFailed:
                    continue

    try:
        asyncio.run(run())
    except BaseException as exc:  # reported to the parent
        errors.put(repr(exc))


def test_conditional_writes_from_four_processes(tmp_path: Path) -> None:
    root = str(tmp_path / "shared")
    asyncio.run(write_small(LocalStore(root), "counter.json", b'{"n": 0}', if_none_match=True))
    ctx = multiprocessing.get_context("spawn")
    errors = ctx.Queue()
    procs = [ctx.Process(target=_increment, args=(root, 25, errors)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert all(p.exitcode == 0 for p in procs)
    assert errors.empty()
    data, _ = asyncio.run(read_small(LocalStore(root), "counter.json"))
    assert json.loads(data) == {"n": 100}


async def test_batch_calls_use_the_modes_and_etags_of_put_and_get(local_store: LocalStore) -> None:
    first = await local_store.put("b/x", b"1")
    await local_store.put("b/there", b"t")
    results = await local_store.put_many([
        ("b/a", b"a", {DIGEST_KEY: "0" * 32}),
        ("b/x", b"22", None, PutMode.update(first.etag or "")),
        ("b/absent", b"y", None, PutMode.update(first.etag or "")),
        ("b/there", b"again", None, PutMode.CREATE),
        ("b/new", b"new", {"k": "v"}, PutMode.CREATE),
    ])
    assert [type(r).__name__ for r in results] == [
        "ObjectInfo", "ObjectInfo", "PreconditionFailed", "PreconditionFailed", "ObjectInfo"]
    names = ["b/a", "b/x", "b/new", "b/there"]
    got = await local_store.get_many(names + ["b/absent"])
    assert isinstance(got[-1], NotFoundError)
    for name, result in zip(names, got):
        assert isinstance(result, GetResult)
        assert result.etag == (await local_store.head(name)).etag == (await local_store.get(name)).etag
    assert [g.data for g in got[:4]] == [b"a", b"22", b"new", b"t"]  # type: ignore[union-attr]
    assert [r.etag for r in results if isinstance(r, ObjectInfo)] == [g.etag for g in got[:3]]  # type: ignore[union-attr]
    assert (await local_store.head("b/a")).digest == "0" * 32
    assert (await local_store.head("b/new")).metadata == {"k": "v"}


async def test_get_many_of_more_names_than_one_index_read_takes(local_store: LocalStore) -> None:
    names = [f"many/{i:04d}" for i in range(1203)]
    await local_store.put_many([(n, n.encode(), {DIGEST_KEY: f"{i:032x}"}) for i, n in enumerate(names)])
    (Path(local_store.root) / "many" / "0007").write_bytes(b"by hand")  # no row: the stat ETag
    listed = {o.name: o.etag for o in await local_store.list("many/")}
    got = await local_store.get_many(names)
    assert [g.etag for g in got] == [listed[n] for n in names]  # type: ignore[union-attr]
    assert got[7].etag.startswith('"s') and got[8].data == b"many/0008"  # type: ignore[union-attr]

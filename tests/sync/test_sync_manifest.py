"""Manifests: read, merge, conditional writes that lose nothing under concurrency."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest

from luisy_sync.api import push
from luisy_sync.errors import ManifestError, PreconditionFailed, StoreError
from luisy_sync.manifest import (MANIFEST_FORMAT, read_json_object, read_manifest, update_json_object,
                                 update_manifest)
from luisy_sync.stores.memory import MemoryStore
from luisy_sync.stores.small import read_small, write_small
from luisy_sync.stores.wrappers import CountingStore, Fault, FaultStore

NAME = ".luisy-sync.json"


def entry(n: int) -> dict[str, Any]:
    return {"digest": f"{n:032x}", "size": n}


async def test_missing_manifest_reads_empty(any_store: Any) -> None:
    assert await read_manifest(any_store, NAME) == ({}, None)


async def test_update_merges_and_removes(any_store: Any) -> None:
    written = await update_manifest(any_store, NAME, {"a": entry(1), "b": entry(2)})
    assert written == {"a": entry(1), "b": entry(2)}
    await update_manifest(any_store, NAME, {"b": None, "c": {**entry(3), "hash": "code-v1"}})
    files, etag = await read_manifest(any_store, NAME)
    assert files == {"a": entry(1), "c": {**entry(3), "hash": "code-v1"}}
    assert etag is not None
    raw, _ = await read_small(any_store, NAME)
    assert json.loads(raw)["format"] == MANIFEST_FORMAT


async def test_unchanged_update_does_not_write(any_store: Any) -> None:
    await update_manifest(any_store, NAME, {"a": entry(1)})
    _, before = await read_manifest(any_store, NAME)
    await update_manifest(any_store, NAME, {"a": entry(1)})
    _, after = await read_manifest(any_store, NAME)
    assert before == after


@pytest.mark.parametrize("content, reason", [
    (b"{not json", "JSONDecodeError"),
    (b"[1, 2]", "top level is a list"),
    (b'{"format": "other/9", "files": {}}', "format='other/9'"),
    (b"\xff\xfe", "UnicodeDecodeError"),
])
async def test_corrupt_manifest_is_one_clear_line(content: bytes, reason: str) -> None:
    store = MemoryStore()
    await write_small(store, NAME, content)
    with pytest.raises(ManifestError) as info:
        await read_manifest(store, NAME)
    message = str(info.value)
    assert "\n" not in message and NAME in message and "delete it" in message
    assert info.value.reason == reason  # a structured field: callers never parse the message
    with pytest.raises(ManifestError):
        await update_manifest(store, NAME, {"a": entry(1)})


@pytest.fixture(params=["memory_store", "local_store"])
def shared_store(request: pytest.FixtureRequest) -> Any:
    """MemoryStore, then LocalStore."""
    return request.getfixturevalue(request.param)


async def test_eight_concurrent_writers_lose_no_entry(shared_store: Any) -> None:
    # the reads take a little while (widening the read→write window so the writers really
    # collide); the counting view sees the conflicts
    store = CountingStore(FaultStore(shared_store, Fault("get", after=lambda: anyio.sleep(0.002))))

    async def writer(task: int) -> None:
        for i in range(5):
            await update_manifest(store, NAME, {f"t{task}/f{i}": entry(task * 10 + i)}, attempts=200)

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for task in range(8):
                tg.start_soon(writer, task)
    files, _ = await read_manifest(shared_store, NAME)
    assert files == {f"t{t}/f{i}": entry(t * 10 + i) for t in range(8) for i in range(5)}
    assert store.failed["put"] > 0  # the test really exercised the retry path


async def test_update_json_object_is_generic() -> None:
    store = MemoryStore()
    doc = await update_json_object(store, "proj/.luisy.hash", lambda d: {**(d or {}), "Task": "h1"})
    assert doc == {"Task": "h1"}
    doc = await update_json_object(store, "proj/.luisy.hash", lambda d: {**(d or {}), "Other": "h2"})
    assert doc == {"Task": "h1", "Other": "h2"}
    with pytest.raises(TypeError):
        await update_json_object(store, "proj/.luisy.hash", lambda d: [1])  # type: ignore[arg-type, return-value]


async def test_update_json_object_copies_unless_mutate_promises_not_to_change_its_argument() -> None:
    store = MemoryStore()
    await update_json_object(store, "doc.json", lambda d: {"n": 1, "inner": {"k": "v"}})
    seen: list[dict[str, Any]] = []

    def in_place(doc: dict[str, Any] | None) -> dict[str, Any]:
        assert doc is not None
        seen.append(doc)
        doc["inner"]["k"] = "changed"  # allowed: it works on a copy of what was read
        return doc

    initial = await read_json_object(store, "doc.json")
    written = await update_json_object(store, "doc.json", in_place, initial=initial)
    assert written == {"n": 1, "inner": {"k": "changed"}}
    assert initial[0] == {"n": 1, "inner": {"k": "v"}} and seen[0] is not initial[0]
    assert written is not initial[0]

    def pure(doc: dict[str, Any] | None) -> dict[str, Any]:
        assert doc is not None
        seen.append(doc)
        return {**doc, "n": 2}

    initial = await read_json_object(store, "doc.json")
    assert await update_json_object(store, "doc.json", pure, initial=initial, copy=False) == {
        "n": 2, "inner": {"k": "changed"}}
    assert seen[-1] is initial[0]  # no copy taken


async def test_manifest_update_leaves_the_document_it_was_given_alone() -> None:
    store = MemoryStore()
    await update_manifest(store, NAME, {"a": entry(1), "b": entry(2)})
    doc, etag = await read_json_object(store, NAME)
    assert doc is not None
    snapshot = json.loads(json.dumps(doc))
    files = await update_manifest(store, NAME, {"a": entry(3), "b": None, "c": entry(4)},
                                  initial=(doc, etag))
    assert files == {"a": entry(3), "c": entry(4)}
    assert doc == snapshot
    unchanged = await update_manifest(store, NAME, {"a": entry(3)})
    assert unchanged == {"a": entry(3), "c": entry(4)}


async def test_prepare_sees_every_read_before_the_merge() -> None:
    store = MemoryStore()
    seen: list[Any] = []

    async def prepare(doc: dict[str, Any] | None) -> None:
        seen.append(doc)
        if len(seen) == 1:  # another writer gets in between this read and the write
            await write_small(store, "x.json", json.dumps({"other": 1}).encode())

    doc = await update_json_object(store, "x.json", lambda d: {**(d or {}), "mine": 2}, prepare=prepare)
    assert seen == [None, {"other": 1}] and doc == {"other": 1, "mine": 2}


async def test_update_gives_up_after_attempts() -> None:
    always_loses = FaultStore(MemoryStore(), Fault("put", name=NAME, error=partial(
        PreconditionFailed, f"{NAME!r} changed since it was read", status=412)))
    with pytest.raises(PreconditionFailed, match="kept changing during 3 update attempts"):
        await update_manifest(always_loses, NAME, {"a": entry(1)}, attempts=3)
    assert always_loses.failures == 3


async def test_push_manifest_names_only_content_that_is_there(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    for name in ("a.txt", "sub/b.txt", "bad.txt"):
        (src / name).write_text(name)

    store = FaultStore(MemoryStore(), Fault("put", name=lambda n: n.endswith("bad.txt"), error=partial(
        StoreError, "put bad.txt: 400 rejected (injected)", status=400)))
    report = await push(src, store, prefix="p", cache=False, raise_on_failure=False,
                        manifest_extra={"a.txt": {"hash": "task-hash"}})
    assert [p for p, _ in report.failed] == ["bad.txt"]
    files, _ = await read_manifest(store, "p/" + NAME)
    assert sorted(files) == ["a.txt", "sub/b.txt"]
    assert files["a.txt"]["hash"] == "task-hash" and files["a.txt"]["size"] == 5
    listed = {o.name: o.digest for o in await store.list("p/")}
    assert all(listed[f"p/{path}"] == e["digest"] for path, e in files.items())


@pytest.mark.parametrize("change", ["replace", "add"])
async def test_push_reading_the_manifest_with_the_listing_loses_no_concurrent_change(
        tmp_path: Path, change: str) -> None:
    """The manifest and the listing are read at the same time. Another push that lands
    between the listing and the manifest read (its object, then its manifest entry) is
    described as it is stored afterwards, not as this push's stale listing saw it."""
    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    for root in (mine, theirs):
        root.mkdir()
        (root / "keep.txt").write_text("same in both")
    (mine / "x.txt").write_text("old x")
    inner = MemoryStore()
    await push(mine, inner, cache=False)  # x.txt is stored as "old x": this push will skip it
    (theirs / ("x.txt" if change == "replace" else "y.txt")).write_text("theirs, newer")
    listed = anyio.Event()

    async def push_theirs_after_my_listing() -> None:
        await listed.wait()
        await push(theirs, inner, cache=False)

    store = FaultStore(inner, Fault("list", times=1, after=listed.set),
                       Fault("get", name=NAME, times=1, before=push_theirs_after_my_listing))
    await push(mine, store, cache=False)
    files, _ = await read_manifest(inner, NAME)
    stored = {o.name: (o.digest, o.size) for o in await inner.list()}
    assert {p: (e["digest"], e["size"]) for p, e in files.items()} == {
        p: v for p, v in stored.items() if p != NAME}

"""What a push asks of the store: the request count of a no-op push, and the manifest
read happening before the listing (so a push landing in between is never overwritten
with a stale view)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import anyio
import pytest

from luisy_sync import hash_bytes, push, read_manifest
from luisy_sync.stores.memory import MemoryStore
from luisy_sync.stores.wrappers import CountingStore, Fault, FaultStore

MANIFEST = ".luisy-sync.json"


def make_tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


FILES = {f"d{i % 3}/f{i}.txt": f"file {i}".encode() * (i + 1) for i in range(12)}


async def test_a_no_op_push_reads_the_manifest_once_lists_once_and_writes_nothing(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src", FILES)
    store = MemoryStore()
    await push(src, store, prefix="p", cache=False)
    counting = CountingStore(store)
    report = await push(src, counting, prefix="p", cache=False)
    assert report.uploaded == () and len(report.skipped) == len(FILES)
    assert counting.calls == Counter({"get": 1, "list": 1})
    assert counting.requests == [("get", f"p/{MANIFEST}"), ("list", "p/")]


async def test_a_push_of_one_change_reads_and_lists_once(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src", FILES)
    store = MemoryStore()
    await push(src, store, cache=False)
    (src / "d0/f0.txt").write_bytes(b"changed")
    counting = CountingStore(store)
    report = await push(src, counting, cache=False)
    assert report.uploaded == ("d0/f0.txt",)
    assert counting.calls == Counter({"get": 1, "list": 1, "put": 2})
    assert counting.requests == [("get", MANIFEST), ("list", ""), ("put", "d0/f0.txt"), ("put", MANIFEST)]
    entries, _ = await read_manifest(store)
    assert entries["d0/f0.txt"] == {"digest": hash_bytes(b"changed"), "size": 7}


@pytest.mark.parametrize("manifest_first", [True, False])
async def test_a_push_landing_between_the_listing_and_the_manifest_update_wins(
        tmp_path: Path, manifest_first: bool) -> None:
    """A lists (its file is up to date), then B pushes other content for the same path and
    writes the manifest, then A updates the manifest: it must describe B's blob."""
    a_src = make_tree(tmp_path / "a", {"same.txt": b"old content"})
    b_src = make_tree(tmp_path / "b", {"same.txt": b"B's newer content"})
    shared = MemoryStore()
    await push(a_src, shared, cache=False, manifest=MANIFEST if manifest_first else None)

    async def b_pushes() -> None:
        await push(b_src, shared, cache=False)

    a = FaultStore(shared, Fault("list", times=1, after=b_pushes))  # B pushes right after A lists
    with anyio.fail_after(10):
        report = await push(a_src, a, cache=False)
    assert report.skipped == ("same.txt",) and report.uploaded == ()
    blob = (await shared.get("same.txt")).data
    entries, _ = await read_manifest(shared)
    assert blob == b"B's newer content"
    assert entries == {"same.txt": {"digest": hash_bytes(blob), "size": len(blob)}}

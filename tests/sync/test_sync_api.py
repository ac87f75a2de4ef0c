"""push / pull end to end: round trips, incremental runs, dry runs, refusals, failures."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from luisy_sync import (MemoryStore, ObjectInfo, Report, SyncError, SyncFailed, Tree, TransientError,
                        UnsafePathError, pull, push, scan)
from luisy_sync.errors import StoreError
from luisy_sync.retry import RetryPolicy
from luisy_sync.stores.wrappers import Fault, FaultStore

BLOCK = 256 * 1024
FAST = RetryPolicy(base=0.001, cap=0.005)
FILES = {
    "empty": b"",
    "one": b"1",
    "block.bin": b"b" * BLOCK,
    "multi.bin": os.urandom(2 * BLOCK + 99),
    "ñämé/データ.txt": "grüße".encode(),
    "a/b/c/deep.csv": b"x,y\n" * 50,
}


def make_dir(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def read_dir(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


async def test_push_pull_round_trip_and_incremental_runs(any_store: Any, tmp_path: Path) -> None:
    src = make_dir(tmp_path / "src", FILES)
    first = await push(src, any_store, prefix="proj", block_size=BLOCK, cache=False)
    assert sorted(first.uploaded) == sorted(FILES) and first.failed == ()
    assert first.bytes_transferred == sum(map(len, FILES.values())) == first.bytes_planned
    assert first.summary_line().startswith(f"uploaded {len(FILES)} files (")

    again = await push(src, any_store, prefix="proj", block_size=BLOCK, cache=False)
    assert again.uploaded == () and sorted(again.skipped) == sorted(FILES)
    assert again.bytes_transferred == 0

    dest = tmp_path / "dest"
    pulled = await pull(any_store, dest, prefix="proj", block_size=BLOCK, cache=False)
    assert sorted(pulled.downloaded) == sorted(FILES)
    assert read_dir(dest) == FILES  # byte-identical, no manifest, no temp files

    (src / "a/b/c/deep.csv").write_bytes(b"changed\n")
    third = await push(src, any_store, prefix="proj", block_size=BLOCK, cache=False)
    assert third.uploaded == ("a/b/c/deep.csv",) and len(third.skipped) == len(FILES) - 1
    pulled = await pull(any_store, dest, prefix="proj", block_size=BLOCK, cache=False)
    assert pulled.downloaded == ("a/b/c/deep.csv",)
    assert read_dir(dest) == read_dir(src)


async def test_push_accepts_a_scanned_tree_and_paths(tmp_path: Path) -> None:
    src = make_dir(tmp_path / "src", {"keep/a.txt": b"a", "keep/b.txt": b"b", "other.txt": b"o"})
    store = MemoryStore()
    tree = await scan(src)
    report = await push(tree, store, paths=["keep"], manifest=None)
    assert report.uploaded == ("keep/a.txt", "keep/b.txt")
    assert [o.name for o in await store.list()] == ["keep/a.txt", "keep/b.txt"]
    with pytest.raises(SyncError, match="root directory"):
        await push(Tree(dict(tree)), store)


async def test_prefixes_are_isolated(tmp_path: Path) -> None:
    store = MemoryStore()
    await push(make_dir(tmp_path / "one", {"f.txt": b"1"}), store, prefix="p", cache=False)
    await push(make_dir(tmp_path / "two", {"f.txt": b"2"}), store, prefix="p2", cache=False)
    report = await pull(store, tmp_path / "out", prefix="p", cache=False)
    assert report.downloaded == ("f.txt",)
    assert read_dir(tmp_path / "out") == {"f.txt": b"1"}


async def test_dry_run_writes_nothing(any_store: Any, tmp_path: Path) -> None:
    src = make_dir(tmp_path / "src", FILES)
    report = await push(src, any_store, dry_run=True, cache=False)
    assert report.dry_run and report.files_planned == len(FILES) and report.uploaded == ()
    assert report.summary_line().startswith(f"dry run: would have uploaded {len(FILES)} files")
    assert await any_store.list() == []

    await push(src, any_store, cache=False)
    dest = tmp_path / "dest"
    report = await pull(any_store, dest, dry_run=True, cache=False)
    assert report.files_planned == len(FILES) and report.downloaded == ()
    assert not dest.exists()


def listing(extra: list[str]) -> FaultStore:
    """A MemoryStore whose listing also shows names another tool might have written."""
    return FaultStore(MemoryStore(), Fault("list", alter=lambda listed: [
        *listed, *(ObjectInfo(n, 4, None, {}) for n in extra)]))


@pytest.mark.parametrize("bad", ["p/../../evil.txt", "p/sub/../../../evil.txt", "p/a\\..\\evil.txt"])
async def test_unsafe_remote_names_refuse_the_pull(tmp_path: Path, bad: str) -> None:
    store = listing([bad])
    await push(make_dir(tmp_path / "src", {"ok.txt": b"ok"}), store, prefix="p", cache=False)
    dest = tmp_path / "deep" / "dest"
    with pytest.raises(UnsafePathError) as info:
        await pull(store, dest, prefix="p", cache=False)
    assert "\n" not in str(info.value) and "nothing was downloaded" in str(info.value)
    assert not dest.exists()
    assert not list(tmp_path.rglob("evil.txt"))


async def test_permanent_failure_raises_sync_failed_naming_the_file(tmp_path: Path) -> None:
    src = make_dir(tmp_path / "src", {"a.txt": b"a", "b/bad.bin": b"bad", "c.txt": b"c"})
    store = FaultStore(MemoryStore(), Fault("put", name="b/bad.bin", error=partial(
        StoreError, "put b/bad.bin: 400 InvalidHeaderValue (injected)", status=400)))
    with pytest.raises(SyncFailed) as info:
        await push(src, store, cache=False, policy=FAST)
    message = str(info.value)
    assert message == ("1 of 3 files failed; first: b/bad.bin: "
                       "StoreError: put b/bad.bin: 400 InvalidHeaderValue (injected)")
    report = info.value.report
    assert isinstance(report, Report) and report.uploaded == ("a.txt", "c.txt")
    assert not report.ok and report.to_dict()["failed"][0]["path"] == "b/bad.bin"

    quiet = await push(src, store, cache=False, raise_on_failure=False, policy=FAST)
    assert quiet.uploaded == () and [p for p, _ in quiet.failed] == ["b/bad.bin"]


async def test_transient_errors_do_not_fail_a_push(tmp_path: Path) -> None:
    hiccups = FaultStore(MemoryStore(), Fault("put", times=4, error=partial(
        TransientError, "503 server busy (injected)", status=503)))
    src = make_dir(tmp_path / "src", {f"f{i}.txt": b"%d" % i for i in range(5)})
    report = await push(src, hiccups, cache=False, policy=FAST)
    assert len(report.uploaded) == 5 and report.ok and hiccups.failures == 4


async def test_missing_requested_path_is_a_failure(tmp_path: Path) -> None:
    store = MemoryStore()
    await push(make_dir(tmp_path / "src", {"there.txt": b"x"}), store, cache=False)
    with pytest.raises(SyncFailed, match="not-there.txt: not found in the store"):
        await pull(store, tmp_path / "dest", paths=["there.txt", "not-there.txt"], cache=False)
    assert read_dir(tmp_path / "dest") == {"there.txt": b"x"}


async def test_store_urls_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = make_dir(tmp_path / "src", {"x/y.txt": b"hello"})
    url = (tmp_path / "remote").as_uri()
    assert (await push(src, url, prefix="p", cache=False)).uploaded == ("x/y.txt",)
    assert (tmp_path / "remote" / "p" / "x" / "y.txt").read_bytes() == b"hello"
    monkeypatch.setenv("LUISY_REMOTE", url)
    report = await pull(None, tmp_path / "dest", prefix="p", cache=False)
    assert report.downloaded == ("x/y.txt",)
    assert read_dir(tmp_path / "dest") == {"x/y.txt": b"hello"}


async def test_pull_into_a_file_is_refused(tmp_path: Path) -> None:
    store = MemoryStore()
    await push(make_dir(tmp_path / "src", {"a": b"a"}), store, cache=False)
    (tmp_path / "file").write_text("I am a file")
    with pytest.raises(SyncError, match="it is a file"):
        await pull(store, tmp_path / "file", cache=False)


def test_report_summary_and_json() -> None:
    import json

    report = Report("push", uploaded=tuple(f"f{i}" for i in range(1000)), skipped=("s",),
                    bytes_transferred=int(62.5 * 2 ** 20), seconds=2.1, files_planned=1000,
                    bytes_planned=int(62.5 * 2 ** 20))
    assert report.summary_line() == "uploaded 1000 files (62.5 MiB) in 2.1 s, 29.8 MiB/s; 1 skipped; 0 failed"
    one = Report("pull", downloaded=("a",), failed=(("b", "IntegrityError: bad"),), bytes_transferred=3,
                 seconds=1.0)
    assert one.summary_line() == "downloaded 1 file (3 B) in 1.0 s, 3 B/s; 0 skipped; 1 failed"
    data = json.loads(json.dumps(one.to_dict(paths=True)))
    assert data["failed"] == [{"path": "b", "reason": "IntegrityError: bad"}]
    assert data["paths"]["downloaded"] == ["a"] and data["downloaded"] == 1

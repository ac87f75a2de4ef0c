"""A push of a directory starts uploading while its scan still hashes, and keeps every rule of a
scan-then-plan push (refusals and a corrupt manifest before any upload, verification, the same
report). No timing asserts: the overlap is shown by a hash batch that waits for an upload."""

from __future__ import annotations

import importlib
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from luisy_sync import MemoryStore, SyncError, UnsafePathError, push
from luisy_sync.conventions import MANIFEST_NAME
from luisy_sync.errors import ManifestError
from luisy_sync.stores.wrappers import Fault, FaultStore

scan_mod = importlib.import_module("luisy_sync.scan")  # the package's ``scan`` is the function


def make_files(root: Path, count: int, size: int = 100) -> dict[str, bytes]:
    files = {f"d{i % 4}/f{i:04d}.bin": bytes([i % 251]) * size for i in range(count)}
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def recording_store() -> tuple[FaultStore, threading.Event]:
    """A memory store and an event set by its first put."""
    first_put = threading.Event()
    return FaultStore(MemoryStore(), Fault("put", before=first_put.set)), first_put


async def test_uploads_start_before_the_last_batch_is_hashed(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    files = make_files(tmp_path / "src", 600)  # three hash batches of 256 files at most
    store, first_put = recording_store()
    original = scan_mod._hash_batch
    calls: list[int] = []
    saw_upload: list[bool] = []
    lock = threading.Lock()

    def hash_batch(batch: Any, cache: Any) -> Any:
        with lock:
            calls.append(len(batch))
            last = len(calls) == 3
        if last:  # this batch waits (in its thread) until some file of another one is stored
            saw_upload.append(first_put.wait(timeout=30))
        return original(batch, cache)

    monkeypatch.setattr(scan_mod, "_hash_batch", hash_batch)
    report = await push(tmp_path / "src", store, cache=False)
    assert saw_upload == [True]
    assert sorted(report.uploaded) == sorted(files)
    for rel, data in files.items():
        assert (await store.get(rel)).data == data
    manifest = json.loads((await store.get(MANIFEST_NAME)).data.decode())
    assert sorted(manifest["files"]) == sorted(files)


async def test_a_hash_error_stops_the_push_with_that_error(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    make_files(tmp_path / "src", 600)
    store = MemoryStore()
    original = scan_mod._hash_batch
    calls: list[int] = []

    def hash_batch(batch: Any, cache: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise SyncError("d0/f0000.bin kept changing while it was hashed; retry once it is complete")
        return original(batch, cache)

    monkeypatch.setattr(scan_mod, "_hash_batch", hash_batch)
    with pytest.raises(SyncError, match="kept changing"):
        await push(tmp_path / "src", store, cache=False)
    with pytest.raises(Exception):
        await store.get(MANIFEST_NAME)  # no manifest names content of a failed push


async def test_refused_names_and_a_corrupt_manifest_stop_the_push_before_any_upload(tmp_path: Path) -> None:
    make_files(tmp_path / "src", 20)
    (tmp_path / "src" / "back\\slash").write_bytes(b"x")
    store, first_put = recording_store()
    with pytest.raises(UnsafePathError):
        await push(tmp_path / "src", store, cache=False)
    assert not first_put.is_set()
    (tmp_path / "src" / "back\\slash").unlink()
    await store.put(MANIFEST_NAME, b"{not json")
    first_put.clear()
    with pytest.raises(ManifestError):
        await push(tmp_path / "src", store, cache=False)
    assert not first_put.is_set()


async def test_a_second_push_without_a_stat_cache_uploads_only_what_changed(tmp_path: Path) -> None:
    files = make_files(tmp_path / "src", 50)
    store = MemoryStore()
    await push(tmp_path / "src", store, cache=False)
    (tmp_path / "src" / "d1/f0001.bin").write_bytes(b"y" * 100)  # same size, new content
    (tmp_path / "src" / "new.bin").write_bytes(b"new")
    report = await push(tmp_path / "src", store, cache=False)
    assert sorted(report.uploaded) == ["d1/f0001.bin", "new.bin"]
    assert len(report.skipped) == len(files) - 1
    assert (await store.get("d1/f0001.bin")).data == b"y" * 100


async def test_a_missing_directory_fails_before_the_store_is_opened(tmp_path: Path) -> None:
    with pytest.raises(SyncError, match="does not exist"):
        await push(tmp_path / "nope", "bogus-scheme://nowhere")

"""Concurrent writers: several pushes into one prefix at once.

Different files from 4 processes: the manifest ends with every entry. The same paths
with different content from 2 processes: whatever blob wins, the manifest agrees with
it. A forced interleaving (in-process, deterministic) pins the hard ordering down.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from benchmarks.azurite import ACCOUNT, KEY
from luisy_sync import MemoryStore, hash_bytes, push, read_manifest
from luisy_sync.stores.azure import AzureBlobStore
from luisy_sync.stores.local import LocalStore
from luisy_sync.stores.wrappers import Fault, FaultStore
from rel_helpers import (MANIFEST, REPO, WORKER, assert_manifest_truthful, make_files, store_contents,
                         worker_env)

WRITERS = 4


@pytest.fixture(params=["local", pytest.param("azure", marks=pytest.mark.azurite)])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Any]:
    """(worker store spec, a fresh open Store on the same place)."""
    if request.param == "local":
        return f"local:{tmp_path / 'remote'}", LocalStore(tmp_path / "remote")
    azurite, container = request.getfixturevalue("azurite"), request.getfixturevalue("container_name")
    return (f"azure:{azurite.port}:{container}",
            AzureBlobStore.from_account_key(ACCOUNT, KEY, container, endpoint=azurite.endpoint))


def push_all_at_once(sources: list[Path], spec: str, tmp_path: Path) -> None:
    """Start one pushing process per source, release them together, all must succeed."""
    barrier = tmp_path / "go"
    env = worker_env(tmp_path)
    procs = [subprocess.Popen([sys.executable, str(WORKER), "push", str(src), spec, "proj",
                               "--barrier", str(barrier)], env=env, cwd=str(REPO),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for src in sources]
    try:
        for proc in procs:  # all started, imported and waiting: release them together
            assert proc.stdout.readline().strip() == "waiting"
        barrier.touch()
        results = [proc.communicate(timeout=45) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    for proc, (out, err) in zip(procs, results):
        assert proc.returncode == 0 and '"failed": []' in out, err[-2000:]


@pytest.mark.timeout(60)
async def test_four_processes_pushing_different_files_leave_every_entry(target, tmp_path: Path) -> None:
    spec, store = target
    expected: dict[str, bytes] = {}
    sources = []
    for i in range(WRITERS):
        src = tmp_path / f"writer{i}"
        files = make_files(src / f"w{i}", 40, seed=100 + i, big={f"w{i}/big.bin": 600_000})
        expected.update({f"w{i}/{rel}": data for rel, data in files.items()})
        sources.append(src)
    push_all_at_once(sources, spec, tmp_path)
    async with store:
        assert await store_contents(store, "proj") == expected
        entries = await assert_manifest_truthful(store, "proj")
    assert set(entries) == set(expected)


@pytest.mark.parametrize("trial", range(3))
@pytest.mark.timeout(60)
async def test_two_processes_pushing_the_same_paths_agree_with_the_blob(target, tmp_path: Path,
                                                                        trial: int) -> None:
    spec, store = target
    sources = []
    for i in range(2):
        src = tmp_path / f"writer{i}"
        make_files(src, 60, seed=1000 * trial + i, big={"big.bin": 700_000})
        sources.append(src)
    push_all_at_once(sources, spec, tmp_path)
    async with store:
        stored = await store_contents(store, "proj")
        entries = await assert_manifest_truthful(store, "proj")
    assert set(entries) == set(stored) and len(stored) == 61


def _gate(inner: MemoryStore, hold_manifest: anyio.Event, after_put: anyio.Event) -> FaultStore:
    """A MemoryStore view that sets ``after_put`` once an object was put, and whose
    manifest reads after that wait for ``hold_manifest`` (to force an interleaving)."""

    async def hold() -> None:
        if after_put.is_set():  # the update, not the pre-check
            await hold_manifest.wait()

    return FaultStore(inner, Fault("put", after=after_put.set),
                      Fault("get", name=lambda n: n.endswith(MANIFEST), before=hold))


async def test_a_late_manifest_update_does_not_describe_a_blob_that_was_replaced(tmp_path: Path) -> None:
    """A uploads, B uploads the same path and updates the manifest, then A updates it."""
    shared = MemoryStore()
    a_src, b_src = tmp_path / "a", tmp_path / "b"
    for src, text in ((a_src, b"from A"), (b_src, b"from B, longer")):
        src.mkdir()
        (src / "same.txt").write_bytes(text)
    a_put, b_done = anyio.Event(), anyio.Event()

    async def writer_b() -> None:
        await a_put.wait()
        await push(b_src, shared, cache=False)
        b_done.set()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(writer_b)
            await push(a_src, _gate(shared, hold_manifest=b_done, after_put=a_put), cache=False)
    entries, _ = await read_manifest(shared)
    blob = (await shared.get("same.txt")).data
    assert blob == b"from B, longer"
    assert entries["same.txt"]["digest"] == hash_bytes(blob) and entries["same.txt"]["size"] == len(blob)

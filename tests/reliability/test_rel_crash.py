"""Crashes: a push or pull process killed with SIGKILL at seeded random moments.

After every kill: no final-named file (local or in the store) holds anything but its
complete source bytes, temp files exist only in the known places, the manifest names
only content the store has, and a rerun converges to the complete, verified state.

Known places for temp files after a SIGKILL (nothing can clean up after it):
- pull: hidden ``.<name>.luisy-tmp-<hex>`` files beside the final name in the
  destination; the next pull of those files removes them.
- push to a LocalStore: the same hidden names beside objects in the store directory and
  staged blocks below ``.luisy-store/``; never listed as objects, never pulled.
- push to Azure: uncommitted blocks, invisible, dropped by the service after a week.
"""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from benchmarks.azurite import ACCOUNT, KEY
from luisy_sync import push
from luisy_sync.stores.azure import AzureBlobStore
from luisy_sync.stores.local import LocalStore
from luisy_sync.conventions import TEMP_NAME
from rel_helpers import (MANIFEST, TEMP_MARKER, assert_manifest_truthful, assert_no_partial_files,
                         make_files, read_tree, run_worker, start_worker, store_contents, wait_ready,
                         worker_env)

TRIALS = 6
BLOCK = 256 * 1024
BIG = {"big/a.bin": 3 * 2 ** 20 + 1000, "big/b.bin": 2 * 2 ** 20 + 7}


class Backend:
    """Names a fresh store per trial as a worker spec and as an open Store for checks."""

    def __init__(self, kind: str, tmp_path: Path, azurite: Any = None, container: str = ""):
        self.kind, self.tmp_path, self.azurite, self.container = kind, tmp_path, azurite, container

    def spec(self, name: str) -> str:
        if self.kind == "local":
            return f"local:{self.tmp_path / 'stores' / name}"
        return f"azure:{self.azurite.port}:{self.container}{name}"

    def store(self, name: str) -> Any:
        if self.kind == "local":
            return LocalStore(self.tmp_path / "stores" / name)
        return AzureBlobStore.from_account_key(ACCOUNT, KEY, f"{self.container}{name}",
                                               endpoint=self.azurite.endpoint)

    def litter_outside_known_places(self, name: str, files: dict[str, bytes]) -> list[str]:
        """LocalStore only: files in the store directory that are neither objects nor known temp/bookkeeping."""
        if self.kind != "local":
            return []
        root = self.tmp_path / "stores" / name
        bad = []
        for rel in read_tree(root):
            if rel.startswith(".luisy-store/") or TEMP_NAME.match(rel.rsplit("/", 1)[-1]):
                continue
            if rel not in files and rel != f"proj/{MANIFEST}" and not rel.startswith("proj/"):
                bad.append(rel)
        return bad


@pytest.fixture(params=["local", pytest.param("azure", marks=pytest.mark.azurite)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "local":
        return Backend("local", tmp_path)
    azurite = request.getfixturevalue("azurite")
    return Backend("azure", tmp_path, azurite, request.getfixturevalue("container_name")[:40])


def kill_at(args: list[str], env: dict[str, str], delay: float) -> str:
    """Start the worker, SIGKILL it ``delay`` seconds after it got ready; says when it died."""
    proc = start_worker(args, env)
    try:
        wait_ready(proc)
        time.sleep(delay)
        alive = proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()
    return "killed" if alive and proc.returncode == -signal.SIGKILL else "finished first"


def calibrate(runs: list[list[str]], env: dict[str, str]) -> float:
    """Seconds from ``ready`` to exit of the fastest of a few full, undisturbed runs (the kill
    delays' range; each run gets its own arguments, so none is a no-op). The first run of a
    process is the slowest (cold caches): measured alone, the later kills often landed after
    the work was done."""
    spans = []
    for args in runs:
        proc = start_worker(args, env)
        try:
            wait_ready(proc)
            started = time.monotonic()
            out, err = proc.communicate(timeout=40)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        assert proc.returncode == 0, err[-2000:]
        spans.append(time.monotonic() - started)
    return min(spans)


def temp_beside_final_names(dest: Path, files: dict[str, bytes]) -> None:
    """Temp files in a pull destination sit beside the final name of a file being pulled."""
    for rel in read_tree(dest):
        directory, _, base = rel.rpartition("/")
        if TEMP_MARKER in base:
            assert TEMP_NAME.match(base), f"unexpected temp name {rel}"
            final = TEMP_NAME.match(base).group("base")
            assert (f"{directory}/{final}" if directory else final) in files, f"stray temp file {rel}"


@pytest.mark.timeout(60)
async def test_push_killed_at_random_moments_never_lies_and_a_rerun_converges(
        backend: Backend, tmp_path: Path) -> None:
    src = tmp_path / "src"
    files = make_files(src, 150, seed=3, big=BIG)
    env = worker_env(tmp_path)
    args = lambda name: ["push", str(src), backend.spec(name), "proj"]  # noqa: E731
    span = calibrate([args("calibration0"), args("calibration1")], env)
    rng = random.Random(20240607)
    outcomes = []
    for trial in range(TRIALS):
        name = f"t{trial}"
        status = kill_at(args(name), env, rng.uniform(0, span * 0.8))
        async with backend.store(name) as store:
            stored = await store_contents(store, "proj")
            outcomes.append(f"{status}: {len(stored)}/{len(files)} objects")
            assert all(files[rel] == data for rel, data in stored.items()), "partial object visible"
            assert set(stored) <= set(files)
            await assert_manifest_truthful(store, "proj")
            assert backend.litter_outside_known_places(name, files) == []

            again = run_worker(args(name), env)
            assert again["failed"] == []
            assert await store_contents(store, "proj") == files
            assert set(await assert_manifest_truthful(store, "proj")) == set(files)
    print(f"push kills ({backend.kind}): {outcomes}")
    assert sum(o.startswith("killed") for o in outcomes) >= 3, outcomes


@pytest.mark.timeout(60)
async def test_pull_killed_at_random_moments_leaves_no_partial_file_and_a_rerun_converges(
        backend: Backend, tmp_path: Path) -> None:
    src = tmp_path / "src"
    files = make_files(src, 150, seed=4, big=BIG)
    async with backend.store("pulled") as store:
        await push(src, store, prefix="proj", block_size=BLOCK, cache=False)
    env = worker_env(tmp_path)
    args = lambda dest: ["pull", backend.spec("pulled"), str(dest), "proj"]  # noqa: E731
    span = calibrate([args(tmp_path / "calibration0"), args(tmp_path / "calibration1")], env)
    rng = random.Random(20240608)
    outcomes = []
    for trial in range(TRIALS):
        dest = tmp_path / f"dest{trial}"
        status = kill_at(args(dest), env, rng.uniform(0, span * 0.8))
        present = read_tree(dest)
        temps = sum(TEMP_MARKER in rel for rel in present)
        outcomes.append(f"{status}: {len(present) - temps}/{len(files)} files, {temps} temp")
        assert_no_partial_files(dest, files)
        temp_beside_final_names(dest, files)

        again = run_worker(args(dest), env)
        assert again["failed"] == []
        final = read_tree(dest)
        assert sorted(final) == sorted(files)  # the rerun removed the temp files
        assert final == files  # complete and byte-identical
    print(f"pull kills ({backend.kind}): {outcomes}")
    assert sum(o.startswith("killed") for o in outcomes) >= 3, outcomes


async def test_a_pull_removes_stale_temp_files_of_the_files_it_pulls_only(tmp_path: Path) -> None:
    from luisy_sync import MemoryStore, pull

    store = MemoryStore()
    src = tmp_path / "src"
    files = make_files(src, 3, seed=5)
    await push(src, store, cache=False)
    dest = tmp_path / "dest"
    names = sorted(files)
    stale = dest / f"{names[0].rsplit('/', 1)[0]}/.{names[0].rsplit('/', 1)[1]}{TEMP_MARKER}{'a' * 32}"
    fresh = dest / f"{names[1].rsplit('/', 1)[0]}/.{names[1].rsplit('/', 1)[1]}{TEMP_MARKER}{'b' * 32}"
    other = dest / f"d0/.unrelated.txt{TEMP_MARKER}{'c' * 32}"
    for path in (stale, fresh, other):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"partial")
    import os

    future = time.time() + 3600  # still being written by another pull, as far as anyone can tell
    os.utime(fresh, (future, future))
    report = await pull(store, dest, cache=False)
    assert sorted(report.downloaded) == names
    assert not stale.exists() and fresh.exists() and other.exists()

"""The figures that are not transfers: hashing, stat-cache re-check, no-op sync, code hashing.

Each function returns a list of rows (plain dicts, see ``report.row``); a method that
cannot run here becomes a row with an ``error`` and the run goes on.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from benchmarks.report import row
from benchmarks.worker import one_line

MiB = 1024 * 1024


def _best_of(reps: int, fn: Callable[[], Any]) -> tuple[float | None, list[float], str | None]:
    """Min wall time of ``reps`` runs of ``fn`` (and all times), or the error of the first failure."""
    times: list[float] = []
    for _ in range(reps):
        start = time.perf_counter()
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - a failing method is reported, not fatal
            return None, times, one_line(exc)
        times.append(time.perf_counter() - start)
    return min(times), times, None


def _md5_file(path: str) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        while chunk := fh.read(4 * MiB):
            h.update(chunk)
    return h.hexdigest()


def _xxhsum(flag: str, paths: list[str]) -> Callable[[], None]:
    def run() -> None:
        if not shutil.which("xxhsum"):
            raise RuntimeError("xxhsum not installed (apt-get install xxhash)")
        subprocess.run(["xxhsum", flag, *paths], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, timeout=600)
    return run


def hashing(paths: list[str], reps: int) -> list[dict]:
    """Single-threaded hashing throughput of the same (page-cached) files."""
    total = sum(os.path.getsize(p) for p in paths)
    for p in paths:  # warm the page cache so every method reads from memory
        _md5_file(p)

    from luisy_sync.hashing import hash_file  # imported before anything is timed

    def ours() -> None:
        for p in paths:
            hash_file(p)

    methods = {
        "luisy_sync hash_file (xxh3-128)": ours,
        "xxhsum -H3 (XXH3-64)": _xxhsum("-H3", paths),
        "xxhsum -H2 (XXH128)": _xxhsum("-H2", paths),
        "hashlib md5": lambda: [_md5_file(p) for p in paths],
    }
    rows = []
    for name, fn in methods.items():
        best, times, err = _best_of(reps, fn)
        rows.append(row("hash", f"hash {len(paths)} x {total // len(paths) // MiB} MiB", name,
                        best, times, err, nbytes=total, role=_hash_role(name)))
    return rows


def _hash_role(name: str) -> str:
    if name.startswith("luisy_sync"):
        return "ours"
    return "baseline" if "md5" in name else "peer"


def recheck(small_dir: str, reps: int) -> list[dict]:
    """scan() of unchanged files: a fresh StatCache object on a warm cache file vs no cache."""
    from luisy_sync.scan import scan
    from luisy_sync.statcache import NullStatCache, StatCache

    count = sum(len(files) for _, _, files in os.walk(small_dir))
    with tempfile.TemporaryDirectory(prefix="bench-statcache-") as tmp:
        cache_path = os.path.join(tmp, "statcache.sqlite")

        def scan_with(cache_factory: Callable[[], Any]) -> None:
            cache = cache_factory()
            try:
                asyncio.run(scan(small_dir, cache=cache))
            finally:
                cache.close()

        rows = []
        best, times, err = _best_of(reps, lambda: scan_with(NullStatCache))
        rows.append(row("recheck", f"re-check {count} unchanged files", "scan, no cache (re-hash)",
                        best, times, err, files=count, role="baseline"))
        _, _, err = _best_of(1, lambda: scan_with(lambda: StatCache(cache_path)))  # fill it
        if err is None:
            best, times, err = _best_of(reps, lambda: scan_with(lambda: StatCache(cache_path)))
        rows.append(row("recheck", f"re-check {count} unchanged files", "luisy_sync scan, warm stat cache",
                        best, times, err, files=count, role="ours"))
    return rows


def noop_sync(small_dir: str, endpoints: dict[int, str], reps: int) -> list[dict]:
    """push() of a directory whose every file is already in the container (warm stat cache)."""
    from luisy_sync import push
    from luisy_sync.statcache import StatCache
    from luisy_sync.stores import AzureBlobStore

    from benchmarks.clients import Target

    count = sum(len(files) for _, _, files in os.walk(small_dir))
    rows = []
    for rtt, endpoint in endpoints.items():
        target = Target(endpoint, "noop" + uuid.uuid4().hex[:16])
        with tempfile.TemporaryDirectory(prefix="bench-statcache-") as tmp:
            cache_path = os.path.join(tmp, "statcache.sqlite")

            async def one_push(expect_moved: bool) -> None:
                cache = StatCache(cache_path)
                try:
                    async with AzureBlobStore(target.container,
                                              connection_string=target.connection_string) as store:
                        report = await push(small_dir, store, concurrency=32, cache=cache)
                finally:
                    cache.close()
                if not expect_moved and report.moved:
                    raise AssertionError(f"no-op push moved {len(report.moved)} files")

            best, times, err = _best_of(1, lambda: asyncio.run(one_push(True)))
            if err is None:
                best, times, err = _best_of(reps, lambda: asyncio.run(one_push(False)))
            figure = f"no-op push of {count} up-to-date files @{rtt} ms"
            rows.append(row("noop", figure, "luisy_sync push", best, times, err, files=count, rtt_ms=rtt,
                            role="ours"))
            if err is None:  # the floor: listing the container alone (every push lists it)
                best, times, err = _best_of(reps, lambda: _list_blobs(target, count))
                rows.append(row("noop", figure, "List Blobs alone (luisy_sync store.list)", best, times, err,
                                files=count, rtt_ms=rtt, role="baseline"))
            _drop(target)
    return rows


def _list_blobs(target: Any, expected: int) -> None:
    """List every blob of the container with its metadata, as a push must (through
    luisy_sync's store: the SDK's own page parsing alone takes longer than a no-op push)."""
    from luisy_sync.stores import AzureBlobStore

    async def listing() -> int:
        async with AzureBlobStore(target.container, connection_string=target.connection_string) as store:
            return len(await store.list(""))

    found = asyncio.run(listing())
    if found < expected:
        raise AssertionError(f"listed {found} blobs, expected at least {expected}")


def _drop(target: Any) -> None:
    from azure.storage.blob import BlobServiceClient

    try:
        with BlobServiceClient.from_connection_string(target.connection_string) as service:
            service.delete_container(target.container)
    except Exception:  # noqa: BLE001 - cleanup only; Azurite's data dir is removed at the end
        pass


def codehash(sizes: tuple[int, ...], reps: int) -> list[dict]:
    """Code hashing of generated n-task pipelines, through benchmarks/codehash_bench.py.

    That module (owned by the luisy code-hash engineer) writes a pipeline package with
    ``generate(root, name, tasks)`` and times ``luisy.codehash.compute_task_hashes`` in a
    fresh process (``--worker ROOT NAME`` prints JSON with ``cold_s`` and ``warm_s``).
    Cold: the first hash in a new process (every module parsed); warm: a repeated call.
    """
    try:
        bench = importlib.import_module("benchmarks.codehash_bench")
        generate = getattr(bench, "generate")
    except (ImportError, AttributeError) as exc:
        return [row("codehash", f"code hash, {n}-task pipeline", "luisy codehash", None, [],
                    f"benchmarks/codehash_bench.py not usable: {one_line(exc)}", role="ours")
                for n in sizes]
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")])}
    env.pop("LUISY_REQUIREMENTS_PATH", None)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-codehash-") as tmp:
        for n in sizes:
            cold: list[float] = []
            warm: list[float] = []
            err = None
            try:
                name = f"bench_pipeline_{n}"
                generate(Path(tmp), name, n)
                for _ in range(reps):
                    out = subprocess.run([sys.executable, bench.__file__, "--worker", tmp, name],
                                         env=env, capture_output=True, text=True, timeout=600)
                    if out.returncode != 0:
                        tail = (out.stderr.strip().splitlines() or ["no output"])[-1]
                        raise RuntimeError(f"codehash worker exited {out.returncode}: {tail[:200]}")
                    timing = json.loads(out.stdout.strip().splitlines()[-1])
                    cold.append(timing["cold_s"])
                    warm.append(timing["warm_s"])
            except Exception as exc:  # noqa: BLE001 - reported in the row
                err = one_line(exc)
            for label, times in (("cold, fresh process", cold), ("warm, same process", warm)):
                rows.append(row("codehash", f"code hash, {n}-task pipeline ({label})", "luisy codehash",
                                min(times) if times and not err else None, times, err, files=n,
                                role="ours", unit="tasks"))
    return rows

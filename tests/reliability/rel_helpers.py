"""Helpers for the reliability tests (imported as ``rel_helpers``): trees, verification, counters.

Every check compares bytes and xxh3 digests: a tree is "complete" when every file is
byte-identical to its source, and a store is "consistent" when every object's digest
metadata matches its content and every manifest entry matches the object it names.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.azurite import ACCOUNT, KEY
from luisy_sync import ContainerNotFound, ProgressCallback, hash_bytes, read_manifest
from luisy_sync.stores.azure import AzureBlobStore

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("rel_worker.py")
TEMP_MARKER = ".luisy-tmp-"
MANIFEST = ".luisy-sync.json"


def make_files(root: Path, count: int, *, seed: int, big: dict[str, int] | None = None,
               max_size: int = 8192) -> dict[str, bytes]:
    """``count`` small random files in nested directories plus ``big`` (name -> size) files."""
    rng = random.Random(seed)
    files: dict[str, bytes] = {}
    for i in range(count):
        rel = f"d{i % 7}/s{i % 3}/f{i:04d}.bin"
        files[rel] = rng.randbytes(rng.randint(0, max_size))
    for rel, size in (big or {}).items():
        files[rel] = rng.randbytes(size)
    write_files(root, files)
    return files


def write_files(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def read_tree(root: Path) -> dict[str, bytes]:
    """Every regular file below ``root`` (temp files included) -> its bytes."""
    if not root.exists():
        return {}
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in root.rglob("*") if p.is_file() and not p.is_symlink()}


def temp_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob(f"*{TEMP_MARKER}*"))


def assert_no_partial_files(dest: Path, source: dict[str, bytes]) -> None:
    """Every final-named file in ``dest`` is byte-identical to its source; only known temp names else."""
    for rel, data in read_tree(dest).items():
        if TEMP_MARKER in rel.rsplit("/", 1)[-1]:
            continue
        assert rel in source, f"unexpected file {rel} in {dest}"
        assert data == source[rel], f"{rel} in {dest} differs from its source (partial or corrupt)"


async def store_contents(store: Any, prefix: str = "") -> dict[str, bytes]:
    """Every object below ``prefix`` (manifest left out), verified against its digest metadata."""
    head = f"{prefix}/" if prefix else ""
    out: dict[str, bytes] = {}
    try:
        listing = await store.list(head)
    except ContainerNotFound:  # e.g. a push killed before it created the container
        return out
    for info in listing:
        rel = info.name[len(head):]
        if rel == MANIFEST or rel.startswith(".luisy-store/"):
            continue
        data = (await store.get(info.name)).data
        assert info.digest == hash_bytes(data), f"object {info.name}: digest metadata != content"
        out[rel] = data
    return out


async def assert_manifest_truthful(store: Any, prefix: str = "") -> dict[str, dict[str, Any]]:
    """Every manifest entry names an object whose content has exactly that digest and size."""
    name = f"{prefix}/{MANIFEST}" if prefix else MANIFEST
    try:
        entries, _ = await read_manifest(store, name)
    except ContainerNotFound:
        entries = {}
    contents = await store_contents(store, prefix)
    for rel, entry in entries.items():
        assert rel in contents, f"manifest names {rel} but the store does not have it"
        assert entry["digest"] == hash_bytes(contents[rel]), f"manifest digest of {rel} != object"
        assert entry["size"] == len(contents[rel])
    return entries


class CountingProgress(ProgressCallback):
    """Counts retries per path and remembers the highest attempt number reported."""

    def __init__(self) -> None:
        self.retries: Counter[str] = Counter()
        self.max_attempt = 0
        self.reasons: list[str] = []
        self.finished_paths: set[str] = set()
        self.failed_paths: dict[str, str] = {}
        self.lines: list[str] = []

    def retried(self, path: str, attempt: int, reason: str) -> None:
        self.retries[path] += 1
        self.max_attempt = max(self.max_attempt, attempt)
        self.reasons.append(reason)
        self.lines.append(f"retried {path} {attempt} {reason}")

    def finished(self, path: str) -> None:
        self.finished_paths.add(path)

    def failed(self, path: str, reason: str) -> None:
        self.failed_paths[path] = reason
        self.lines.append(f"failed {path} {reason}")


def proxied_store(port: int, container: str, **kw: Any) -> AzureBlobStore:
    """An AzureBlobStore on Azurite reached through 127.0.0.1:``port`` (endpoint override)."""
    return AzureBlobStore.from_account_key(ACCOUNT, KEY, container,
                                           endpoint=f"http://127.0.0.1:{port}/{ACCOUNT}", **kw)


def worker_env(tmp_path: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for helper subprocesses: the repo importable, no stat cache, private HOME."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AZURE_", "LUISY_"))}
    env.update({"PYTHONPATH": str(REPO), "LUISY_SYNC_CACHE": "off", "HOME": str(tmp_path / "home"),
                "PYTHONDONTWRITEBYTECODE": "1"})
    env.update(extra or {})
    return env


def run_cli(args: list[str], env: dict[str, str], timeout: float = 45) -> subprocess.CompletedProcess:
    """``python -m luisy_sync ARGS`` with captured text output."""
    return subprocess.run([sys.executable, "-m", "luisy_sync", *args], env=env, capture_output=True,
                          text=True, timeout=timeout, cwd=str(REPO))


def start_worker(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    """``rel_worker.py ARGS`` in a subprocess (stdout piped, stderr captured)."""
    return subprocess.Popen([sys.executable, str(WORKER), *args], env=env, cwd=str(REPO),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_ready(proc: subprocess.Popen, timeout: float = 20) -> None:
    """Block until the worker printed ``ready`` (it is about to call the API)."""
    import select

    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "worker did not get ready in time"
    line = proc.stdout.readline()
    assert line.strip() == "ready", f"worker said {line!r}: {proc.stderr.read() if proc.poll() is not None else ''}"


def run_worker(args: list[str], env: dict[str, str], timeout: float = 40) -> dict[str, Any]:
    """Run the worker to completion; returns its report dict (asserts success and no traceback)."""
    import json

    proc = subprocess.run([sys.executable, str(WORKER), *args], env=env, cwd=str(REPO),
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "ready"
    return json.loads(lines[-1])

"""The workloads: what files each figure moves or hashes, generated in a temp dir.

Full sizes follow the issue (W1 1000 x 64 KiB, W2 200 x 1 MiB, W3 2 x 256 MiB,
10k small files for re-check and no-op sync); ``--quick`` uses tiny ones so the
whole run is a smoke test. File contents are random (incompressible) bytes;
names spread over a few sub-directories like real pipeline outputs.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

KiB = 1024
MiB = 1024 * KiB
OLD = 3600  # generated files get an mtime an hour old: "unchanged" files are not racy


@dataclass(frozen=True)
class Workload:
    """``count`` files of ``size`` bytes each."""

    name: str
    count: int
    size: int
    label: str

    @property
    def total_bytes(self) -> int:
        return self.count * self.size


FULL = {
    "W1": Workload("W1", 1000, 64 * KiB, "1000 x 64 KiB"),
    "W2": Workload("W2", 200, 1 * MiB, "200 x 1 MiB"),
    "W3": Workload("W3", 2, 256 * MiB, "2 x 256 MiB"),
}
QUICK = {
    "W1": Workload("W1", 60, 64 * KiB, "60 x 64 KiB (quick)"),
    "W2": Workload("W2", 8, 1 * MiB, "8 x 1 MiB (quick)"),
    "W3": Workload("W3", 2, 12 * MiB, "2 x 12 MiB (quick)"),
}
SMALL_FILES = {"full": 10_000, "quick": 1_000}  # re-check and no-op sync
SMALL_SIZE = 512
HASH_SET = {"full": (4, 256 * MiB), "quick": (2, 16 * MiB)}  # files x size for hashing
PIPELINE_SIZES = {"full": (10, 100, 500), "quick": (10, 100)}


def workloads(quick: bool) -> dict[str, Workload]:
    return QUICK if quick else FULL


def _write_random(path: str, size: int) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        left = size
        while left:
            step = min(left, 4 * MiB)
            fh.write(os.urandom(step))
            left -= step


def _age(path: str) -> None:
    old = time.time() - OLD
    os.utime(path, (old, old))


def generate(root: str, wl: Workload) -> str:
    """Write the workload's files below ``root/<name>`` and return that directory."""
    base = os.path.join(root, wl.name)
    subdirs = max(1, min(10, wl.count // 50))
    for i in range(wl.count):
        path = os.path.join(base, f"part{i % subdirs:02d}", f"file{i:05d}.bin")
        _write_random(path, wl.size)
        _age(path)
    return base


def generate_small(root: str, count: int, size: int = SMALL_SIZE) -> str:
    """``count`` small files in 100-file directories (for re-check and no-op sync)."""
    base = os.path.join(root, f"small{count}")
    for i in range(count):
        path = os.path.join(base, f"d{i // 100:03d}", f"f{i:05d}.dat")
        _write_random(path, size)
        _age(path)
    return base


def generate_hash_set(root: str, count: int, size: int) -> list[str]:
    """Large random files to hash; returns their paths."""
    paths = [os.path.join(root, "hash", f"h{i}.bin") for i in range(count)]
    for path in paths:
        _write_random(path, size)
    return paths

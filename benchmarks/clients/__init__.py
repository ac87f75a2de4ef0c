"""The clients the benchmark compares, one module each, all with the same shape.

A client module defines ``NAME``, ``unavailable() -> str | None`` (why it cannot
run here, or None), and ``upload(src, target, concurrency)`` /
``download(target, dest, concurrency)`` — plain functions or coroutines. Upload
copies every file below ``src`` to ``target.container`` under its relative path
(``/`` separated); download copies every blob of the container to ``dest``.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from types import ModuleType
from typing import Iterator

from benchmarks.azurite import ACCOUNT, KEY, connection_string_for

# Order matters: it is the order of the rows in the report.
CLIENT_MODULES = {
    "luisy_sync": "benchmarks.clients.luisy_sync_client",
    "sequential": "benchmarks.clients.sequential",
    "azure_aio": "benchmarks.clients.azure_aio",
    "obstore": "benchmarks.clients.obstore_client",
    "adlfs": "benchmarks.clients.adlfs_client",
    "rclone": "benchmarks.clients.rclone",
}
OURS = "luisy_sync"
BASELINE = "sequential"


@dataclass(frozen=True)
class Target:
    """Where a client talks to: an Azurite account endpoint (usually the proxy) and a container."""

    endpoint: str  # http://127.0.0.1:<port>/devstoreaccount1
    container: str

    @property
    def connection_string(self) -> str:
        return connection_string_for(self.endpoint)

    @property
    def account(self) -> str:
        return ACCOUNT

    @property
    def key(self) -> str:
        return KEY


def load(name: str) -> ModuleType:
    """The client module registered as ``name``."""
    return importlib.import_module(CLIENT_MODULES[name])


def iter_files(src: str) -> Iterator[tuple[str, str]]:
    """``(relative name with '/', absolute path)`` of every file below ``src``, sorted."""
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            yield os.path.relpath(path, src).replace(os.sep, "/"), path


def local_path(dest: str, name: str) -> str:
    """The local file for blob ``name`` below ``dest`` (parent directories created)."""
    path = os.path.join(dest, *name.split("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path

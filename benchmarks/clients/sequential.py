"""The sequential baseline: the sync azure SDK, one file after another (how luisy 1.4.7 moves files)."""

from __future__ import annotations

import time
from typing import Any, Iterable

from benchmarks.clients import Target, iter_files, local_path

NAME = "sequential"


def unavailable() -> str | None:
    try:
        import azure.storage.blob  # noqa: F401
    except ImportError:
        return "not installed: pip install azure-storage-blob"
    return None


def upload_one_by_one(container: Any, files: Iterable[tuple[str, str]]) -> None:
    """Upload ``(blob name, local path)`` pairs in order through a sync ``ContainerClient``."""
    for name, path in files:
        with open(path, "rb") as fh:
            container.upload_blob(name, fh, overwrite=True)


def timed_upload(connection_string: str, container_name: str,
                 files: Iterable[tuple[str, str]]) -> tuple[float, int]:
    """Create ``container_name``, upload ``files`` one by one; (seconds uploading, blobs there)."""
    from azure.storage.blob import BlobServiceClient

    with BlobServiceClient.from_connection_string(connection_string) as service:
        container = service.get_container_client(container_name)
        container.create_container()
        started = time.perf_counter()
        upload_one_by_one(container, files)
        seconds = time.perf_counter() - started
        return seconds, sum(1 for _ in container.list_blobs())


def upload(src: str, target: Target, concurrency: int) -> None:
    from azure.storage.blob import BlobServiceClient

    with BlobServiceClient.from_connection_string(target.connection_string) as service:
        upload_one_by_one(service.get_container_client(target.container), iter_files(src))


def download(target: Target, dest: str, concurrency: int) -> None:
    from azure.storage.blob import BlobServiceClient

    with BlobServiceClient.from_connection_string(target.connection_string) as service:
        container = service.get_container_client(target.container)
        for blob in container.list_blobs():
            with open(local_path(dest, blob.name), "wb") as fh:
                container.download_blob(blob.name).readinto(fh)

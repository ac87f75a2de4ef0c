"""The sequential baseline: the sync azure SDK, one file after another (how luisy 1.4.7 moves files)."""

from __future__ import annotations

from benchmarks.clients import Target, iter_files, local_path

NAME = "sequential"


def unavailable() -> str | None:
    try:
        import azure.storage.blob  # noqa: F401
    except ImportError:
        return "not installed: pip install azure-storage-blob"
    return None


def upload(src: str, target: Target, concurrency: int) -> None:
    from azure.storage.blob import BlobServiceClient

    with BlobServiceClient.from_connection_string(target.connection_string) as service:
        container = service.get_container_client(target.container)
        for name, path in iter_files(src):
            with open(path, "rb") as fh:
                container.upload_blob(name, fh, overwrite=True)


def download(target: Target, dest: str, concurrency: int) -> None:
    from azure.storage.blob import BlobServiceClient

    with BlobServiceClient.from_connection_string(target.connection_string) as service:
        container = service.get_container_client(target.container)
        for blob in container.list_blobs():
            with open(local_path(dest, blob.name), "wb") as fh:
                container.download_blob(blob.name).readinto(fh)

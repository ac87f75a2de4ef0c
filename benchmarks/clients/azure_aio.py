"""The azure SDK's aio client, fanned out with asyncio.gather and a semaphore (the usual recipe)."""

from __future__ import annotations

import asyncio

from benchmarks.clients import Target, iter_files, local_path

NAME = "azure_aio"
PER_BLOB_CONCURRENCY = 8  # blocks in flight for one large blob (SDK default: 1)


def unavailable() -> str | None:
    try:
        import azure.storage.blob.aio  # noqa: F401
        import aiohttp  # noqa: F401
    except ImportError as exc:
        return f"not installed: {exc.name}"
    return None


async def upload(src: str, target: Target, concurrency: int) -> None:
    from azure.storage.blob.aio import BlobServiceClient

    sem = asyncio.Semaphore(concurrency)
    async with BlobServiceClient.from_connection_string(target.connection_string) as service:
        container = service.get_container_client(target.container)

        async def one(name: str, path: str) -> None:
            async with sem:
                with open(path, "rb") as fh:
                    await container.upload_blob(name, fh, overwrite=True,
                                                max_concurrency=PER_BLOB_CONCURRENCY)

        await asyncio.gather(*(one(n, p) for n, p in iter_files(src)))


async def download(target: Target, dest: str, concurrency: int) -> None:
    from azure.storage.blob.aio import BlobServiceClient

    sem = asyncio.Semaphore(concurrency)
    async with BlobServiceClient.from_connection_string(target.connection_string) as service:
        container = service.get_container_client(target.container)
        names = [blob.name async for blob in container.list_blobs()]

        async def one(name: str) -> None:
            async with sem:
                stream = await container.download_blob(name, max_concurrency=PER_BLOB_CONCURRENCY)
                with open(local_path(dest, name), "wb") as fh:
                    await stream.readinto(fh)

        await asyncio.gather(*(one(n) for n in names))

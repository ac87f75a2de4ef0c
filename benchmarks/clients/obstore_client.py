"""obstore (Rust object_store): AzureStore pointed at Azurite with endpoint + allow_http."""

from __future__ import annotations

import asyncio
from pathlib import Path

from benchmarks.clients import Target, iter_files, local_path

NAME = "obstore"
READ_CHUNK = 8 * 1024 * 1024


def unavailable() -> str | None:
    try:
        import obstore  # noqa: F401
    except ImportError:
        return "not installed: pip install obstore"
    return None


def _store(target: Target):
    from obstore.store import AzureStore

    # use_emulator would force port 10000; an explicit endpoint + allow_http reaches any Azurite.
    return AzureStore(target.container, account_name=target.account, account_key=target.key,
                      endpoint=target.endpoint, client_options={"allow_http": True})


async def upload(src: str, target: Target, concurrency: int) -> None:
    import obstore

    store = _store(target)
    sem = asyncio.Semaphore(concurrency)

    async def one(name: str, path: str) -> None:
        async with sem:
            await obstore.put_async(store, name, Path(path))

    await asyncio.gather(*(one(n, p) for n, p in iter_files(src)))


async def download(target: Target, dest: str, concurrency: int) -> None:
    import obstore

    store = _store(target)
    names = [meta["path"] for batch in obstore.list(store) for meta in batch]
    sem = asyncio.Semaphore(concurrency)

    async def one(name: str) -> None:
        async with sem:
            result = await obstore.get_async(store, name)
            with open(local_path(dest, name), "wb") as fh:
                async for chunk in result.stream(min_chunk_size=READ_CHUNK):
                    fh.write(chunk)

    await asyncio.gather(*(one(n) for n in names))

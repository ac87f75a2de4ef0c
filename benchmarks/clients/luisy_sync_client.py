"""luisy_sync: ``await push(dir, store)`` / ``await pull(store, dest)``, no stat cache (a cold first sync)."""

from __future__ import annotations

from benchmarks.clients import Target

NAME = "luisy_sync"


def unavailable() -> str | None:
    try:
        import luisy_sync
        from luisy_sync.stores import AzureBlobStore  # noqa: F401
    except ImportError as exc:
        return f"cannot import luisy_sync: {exc}"
    if not callable(getattr(luisy_sync, "push", None)) or not callable(getattr(luisy_sync, "pull", None)):
        return "luisy_sync.push / pull not available yet"
    return None


def _store(target: Target):
    from luisy_sync.stores import AzureBlobStore

    return AzureBlobStore(target.container, connection_string=target.connection_string)


async def upload(src: str, target: Target, concurrency: int) -> None:
    import luisy_sync

    async with _store(target) as store:
        await luisy_sync.push(src, store, concurrency=concurrency, cache=False)


async def download(target: Target, dest: str, concurrency: int) -> None:
    import luisy_sync

    async with _store(target) as store:
        await luisy_sync.pull(store, dest, concurrency=concurrency, cache=False)

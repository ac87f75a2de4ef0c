"""luisy_sync: ``await push(dir, store)`` / ``await pull(store, dest)``, no stat cache (a cold first sync).

``concurrency`` is the cap of the adaptive request budget; ``adaptive=False`` (the
throttling figure's fixed-concurrency rows) keeps exactly that many requests in flight.
"""

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


async def upload(src: str, target: Target, concurrency: int, adaptive: bool = True) -> None:
    import luisy_sync

    async with _store(target) as store:
        await luisy_sync.push(src, store, concurrency=concurrency, cache=False, adaptive=adaptive)


async def download(target: Target, dest: str, concurrency: int, adaptive: bool = True) -> None:
    import luisy_sync

    async with _store(target) as store:
        await luisy_sync.pull(store, dest, concurrency=concurrency, cache=False, adaptive=adaptive)

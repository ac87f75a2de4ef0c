"""Fixtures of the reliability tests: fault proxies and one-request-per-connection stores."""

from __future__ import annotations

from typing import Any, AsyncIterator, Iterator

import pytest

from benchmarks.proxy import proxy_pool


@pytest.fixture
def fault_proxy() -> Iterator[Any]:
    """``fault_proxy(target_port, faults=..., seed=...)`` -> a running ThreadedProxy."""
    with proxy_pool() as start:
        yield start


@pytest.fixture
def one_request_per_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make AzureBlobStore open a new connection per request, so per-connection faults hit requests."""
    import functools

    import aiohttp

    import luisy_sync.stores.azure as azure_module
    from luisy_sync.stores.http1 import HttpPool

    class _Aiohttp:
        ClientSession = aiohttp.ClientSession

        @staticmethod
        def TCPConnector(**kw: Any) -> aiohttp.TCPConnector:  # noqa: N802 - mirrors aiohttp
            return aiohttp.TCPConnector(force_close=True, **kw)

    monkeypatch.setattr(azure_module, "aiohttp", _Aiohttp)
    monkeypatch.setattr(azure_module, "HttpPool", functools.partial(HttpPool, keep_alive=False))


@pytest.fixture
async def azure_store(azurite: Any, container_name: str) -> AsyncIterator[Any]:
    """An AzureBlobStore straight to Azurite (no proxy) on a fresh container."""
    from benchmarks.azurite import ACCOUNT, KEY
    from luisy_sync.stores.azure import AzureBlobStore

    store = AzureBlobStore.from_account_key(ACCOUNT, KEY, container_name, endpoint=azurite.endpoint)
    await store.ensure_container()
    yield store
    await store.close()

"""Store fixtures: fresh, empty, open stores of every backend (reusable by any sync test).

``any_store`` is parametrised over memory, local, prefixed (memory), azurite-sdk,
azurite-fast and azurite-sas;
``local_store``, ``azure_store`` (fast path), ``azure_sas_store`` (fast path, SAS) and
``azure_sdk_store`` give one backend each.
``canned_reply_server`` starts a 127.0.0.1 server that answers with fixed bytes.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable

import pytest

from benchmarks.azurite import ACCOUNT, KEY, Azurite, account_sas
from luisy_sync.stores.azure import AzureBlobStore
from luisy_sync.stores.local import LocalStore
from luisy_sync.stores.memory import MemoryStore
from luisy_sync.stores.wrappers import PrefixStore


@pytest.fixture
async def memory_store() -> AsyncIterator[MemoryStore]:
    """A fresh MemoryStore."""
    store = MemoryStore()
    yield store
    await store.close()


@pytest.fixture
async def local_store(tmp_path: Path) -> AsyncIterator[LocalStore]:
    """A LocalStore on a fresh directory below tmp_path (root: ``store.root``)."""
    store = LocalStore(tmp_path / "remote")
    await store.ensure_container()
    yield store
    await store.close()


async def _open_azure(azurite: Azurite, container: str, fast_path: bool) -> AzureBlobStore:
    store = AzureBlobStore.from_account_key(ACCOUNT, KEY, container, endpoint=azurite.endpoint,
                                            fast_path=fast_path)
    assert store.fast_path is fast_path
    await store.ensure_container()
    return store


@pytest.fixture
async def azure_store(azurite: Azurite, container_name: str) -> AsyncIterator[AzureBlobStore]:
    """An AzureBlobStore on a fresh Azurite container (Shared Key fast path, the default)."""
    store = await _open_azure(azurite, container_name, True)
    yield store
    await store.close()


@pytest.fixture
async def azure_sdk_store(azurite: Azurite, container_name: str) -> AsyncIterator[AzureBlobStore]:
    """An AzureBlobStore on a fresh Azurite container using the SDK for every call."""
    store = await _open_azure(azurite, container_name, False)
    yield store
    await store.close()


@pytest.fixture
async def azure_sas_store(azurite: Azurite, container_name: str) -> AsyncIterator[AzureBlobStore]:
    """An AzureBlobStore on a fresh Azurite container from an account SAS URL (fast path)."""
    store = AzureBlobStore.from_sas_url(f"{azurite.endpoint}/{container_name}?{account_sas()}")
    assert store.fast_path
    await store.ensure_container()
    yield store
    await store.close()


@pytest.fixture
async def prefixed_store() -> AsyncIterator[PrefixStore]:
    """A PrefixStore below ``pre fix/`` of a fresh MemoryStore that also holds objects
    outside the prefix (the wrapper must never show or touch them)."""
    inner = MemoryStore()
    await inner.put("pre fixed", b"beside")
    await inner.put("other/x", b"outside")
    store = PrefixStore(inner, "pre fix")
    yield store
    assert [(o.name, (await inner.get(o.name)).data) for o in await inner.list()
            if not o.name.startswith("pre fix/")] == [("other/x", b"outside"), ("pre fixed", b"beside")]
    await store.close()


@pytest.fixture(params=["memory", "local", "prefixed", pytest.param("azurite-sdk", marks=pytest.mark.azurite),
                        pytest.param("azurite-fast", marks=pytest.mark.azurite),
                        pytest.param("azurite-sas", marks=pytest.mark.azurite)])
def any_store(request: pytest.FixtureRequest):
    """Each backend in turn: a fresh, empty, open store (Azure: SDK path, and the fast path
    with an account key and with a SAS; a PrefixStore over memory)."""
    name = {"memory": "memory_store", "local": "local_store", "prefixed": "prefixed_store",
            "azurite-sdk": "azure_sdk_store", "azurite-fast": "azure_store",
            "azurite-sas": "azure_sas_store"}[request.param]
    return request.getfixturevalue(name)


async def _serve_canned_reply(reply: bytes) -> tuple[asyncio.AbstractServer, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(reply)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.fixture
def canned_reply_server() -> Callable[[bytes], Awaitable[tuple[asyncio.AbstractServer, int]]]:
    """``await canned_reply_server(reply) -> (server, port)``: a 127.0.0.1 server sending
    ``reply`` (raw HTTP bytes) to each request once its headers arrive, then closing;
    use ``async with server`` to stop it."""
    return _serve_canned_reply

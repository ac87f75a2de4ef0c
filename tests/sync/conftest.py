"""Store fixtures: fresh, empty, open stores of every backend (reusable by any sync test).

``any_store`` is parametrised over memory, local and azurite; ``local_store`` and
``azure_store`` give one backend each.
"""

from __future__ import annotations

from pathlib import Path
from typing import AsyncIterator

import pytest

from benchmarks.azurite import ACCOUNT, KEY, Azurite
from luisy_sync.stores.azure import AzureBlobStore
from luisy_sync.stores.local import LocalStore
from luisy_sync.stores.memory import MemoryStore


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


@pytest.fixture
async def azure_store(azurite: Azurite, container_name: str) -> AsyncIterator[AzureBlobStore]:
    """An AzureBlobStore on a fresh Azurite container."""
    store = AzureBlobStore.from_account_key(ACCOUNT, KEY, container_name, endpoint=azurite.endpoint)
    await store.ensure_container()
    yield store
    await store.close()


@pytest.fixture(params=["memory", "local", pytest.param("azurite", marks=pytest.mark.azurite)])
def any_store(request: pytest.FixtureRequest):
    """Each backend in turn: a fresh, empty, open store."""
    name = {"memory": "memory_store", "local": "local_store", "azurite": "azure_store"}[request.param]
    return request.getfixturevalue(name)

"""Store backends behind the Store protocol, and helpers to pick one.

``MemoryStore`` (tests), ``LocalStore`` (a directory; the embedded default remote),
``AzureBlobStore`` (Azure Blob Storage / Azurite). ``open_store(url)`` and
``store_from_env()`` build one from a URL or the environment. ``read_small`` /
``write_small`` read and conditionally write small objects over any store. The
wrappers (``ForwardingStore``, ``PrefixStore``, ``FaultStore``, ``CountingStore``)
wrap any store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from luisy_sync.stores.base import DIGEST_KEY, GetResult, ObjectInfo, PutMode, Store
from luisy_sync.stores.memory import MemoryStore
from luisy_sync.stores.small import read_small, write_small

if TYPE_CHECKING:  # the heavy backends are imported on first use
    from luisy_sync.stores.azure import AzureBlobStore
    from luisy_sync.stores.local import LocalStore
    from luisy_sync.stores.url import describe_store_source, open_store, store_from_env
    from luisy_sync.stores.wrappers import CountingStore, Fault, FaultStore, ForwardingStore, PrefixStore

__all__ = [
    "DIGEST_KEY", "ObjectInfo", "GetResult", "PutMode", "Store", "read_small", "write_small",
    "MemoryStore", "LocalStore", "AzureBlobStore",
    "open_store", "store_from_env", "describe_store_source",
    "ForwardingStore", "PrefixStore", "FaultStore", "Fault", "CountingStore",
]

_LAZY = {
    "LocalStore": "luisy_sync.stores.local",
    "AzureBlobStore": "luisy_sync.stores.azure",
    "open_store": "luisy_sync.stores.url",
    "store_from_env": "luisy_sync.stores.url",
    "describe_store_source": "luisy_sync.stores.url",
    **{name: "luisy_sync.stores.wrappers"
       for name in ("ForwardingStore", "PrefixStore", "FaultStore", "Fault", "CountingStore")},
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'luisy_sync.stores' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

"""luisy_sync: a fast, verified, asyncio sync engine between local directories and object stores.

    import luisy_sync
    report = await luisy_sync.push("data/", "az://container/project")
    report = await luisy_sync.pull("az://container/project", "data/")

Files are compared by content digest (xxh3-128), moved concurrently under one request
limit with retries, verified on arrival and renamed into place only when complete.
The backends (``LocalStore``, ``AzureBlobStore``) are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from luisy_sync.api import download_paths, pull, push, upload_paths
from luisy_sync.errors import (AuthError, BlocksNotStaged, ConfigError, ContainerNotFound, IntegrityError,
                               ManifestError, NotFoundError, PreconditionFailed, ShortReadError,
                               StoreError, SyncError, SyncFailed, TransferError, TransientError,
                               UnsafePathError)
from luisy_sync.hashing import hash_bytes, hash_file
from luisy_sync.manifest import read_manifest, update_json_object, update_manifest
from luisy_sync.plan import Plan, plan_pull, plan_push
from luisy_sync.progress import ProgressCallback
from luisy_sync.report import Report
from luisy_sync.retry import RetryPolicy, call_with_retry
from luisy_sync.scan import remote_tree, scan, tree_from_paths
from luisy_sync.stores.base import GetResult, ObjectInfo, PutMode, Store
from luisy_sync.stores.memory import MemoryStore
from luisy_sync.transfer import Transfer, TransferResult
from luisy_sync.tree import HASH_ALGORITHM, FileEntry, Tree

if TYPE_CHECKING:
    from luisy_sync.stores import AzureBlobStore, LocalStore, open_store, store_from_env

__version__ = "2.0.0.dev0"

__all__ = [
    # push / pull and the pieces for callers that plan themselves
    "push", "pull", "upload_paths", "download_paths", "Transfer", "TransferResult", "Report",
    "RetryPolicy", "call_with_retry", "ProgressCallback",
    # trees, scanning, planning, hashing
    "Tree", "FileEntry", "HASH_ALGORITHM", "scan", "tree_from_paths", "remote_tree",
    "Plan", "plan_push", "plan_pull", "hash_file", "hash_bytes",
    # manifests
    "read_manifest", "update_manifest", "update_json_object",
    # stores
    "Store", "ObjectInfo", "GetResult", "PutMode", "MemoryStore", "LocalStore", "AzureBlobStore", "open_store",
    "store_from_env",
    # errors
    "SyncError", "ConfigError", "UnsafePathError", "IntegrityError", "ShortReadError",
    "ManifestError", "TransferError", "SyncFailed", "StoreError", "NotFoundError",
    "PreconditionFailed", "AuthError", "ContainerNotFound", "BlocksNotStaged", "TransientError",
]

_FROM_STORES = {"LocalStore", "AzureBlobStore", "open_store", "store_from_env"}


def __getattr__(name: str) -> Any:
    if name in _FROM_STORES:
        from luisy_sync import stores

        value = getattr(stores, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'luisy_sync' has no attribute {name!r}")

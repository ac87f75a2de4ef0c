"""Moving an exact list of files between a local directory and a Store, through one
``Transfer``: ``upload_paths`` (push) and ``download_paths`` (pull).

Callers decide *what* moves (``luisy_sync.api`` from a plan, luisy from its outputs);
this module only pairs each file with its object name (``prefix`` + its path, or any
name the caller gives in ``names``) and hands the files to the transfer engine, small
files in batches and large ones one by one.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence

from luisy_sync.conventions import object_name
from luisy_sync.download import download_batch, download_file
from luisy_sync.stores.base import Store
from luisy_sync.transfer import BatchMove, Item, Transfer, TransferResult
from luisy_sync.tree import FileEntry, Tree
from luisy_sync.upload import upload_batch, upload_file

__all__ = ["download_paths", "upload_paths"]

_OneFile = Callable[[Transfer, Store, str, str, FileEntry, str], Awaitable[str | None]]
_Batch = Callable[[Transfer, Store, str, list[tuple[str, FileEntry, str]]],
                  Awaitable[Sequence[BaseException | str | None]]]

_DIRECTIONS: dict[str, tuple[_OneFile, _Batch, str]] = {
    "push": (upload_file, upload_batch, "put_many"),
    "pull": (download_file, download_batch, "get_many"),
}
"""direction -> (move one file, move a batch of small files, the store's batch verb)."""


def _entries(tree: Tree, paths: Iterable[str]) -> list[Item]:
    out = []
    for path in paths:
        if path not in tree:
            raise KeyError(f"{path!r} is not in the tree given to the transfer; scan or list it first")
        out.append((path, tree[path]))
    return out


def _movers(direction: str, store: Store, local: str | os.PathLike[str], prefix: str,
            names: Mapping[str, str] | None, transfer: Transfer
            ) -> tuple[Callable[[str, FileEntry], Awaitable[str | None]], BatchMove, bool]:
    """(move one file, move a batch, whether the store takes batches) for ``direction``."""
    one, many, batch_verb = _DIRECTIONS[direction]
    root = os.fspath(local)
    given = names or {}

    def name_of(path: str) -> str:
        return given.get(path) or object_name(prefix, path)

    async def move(path: str, entry: FileEntry) -> str | None:
        return await one(transfer, store, root, path, entry, name_of(path))

    async def move_batch(batch: list[Item]) -> Sequence[BaseException | str | None]:
        return await many(transfer, store, root, [(p, e, name_of(p)) for p, e in batch])

    return move, move_batch, hasattr(store, batch_verb)


async def _move(direction: str, store: Store, local: str | os.PathLike[str], paths: Iterable[str],
                tree: Tree, prefix: str, names: Mapping[str, str] | None,
                transfer: Transfer | None,
                started: Mapping[str, Callable[[], Awaitable[str | None]]] | None = None) -> TransferResult:
    transfer = transfer or Transfer()
    move, move_batch, batch_store = _movers(direction, store, local, prefix, names, transfer)
    return await transfer.run_files(direction, _entries(tree, paths), move, move_batch,
                                    batch_store=batch_store, started=started)


async def upload_paths(store: Store, root: str | os.PathLike[str], paths: Iterable[str], tree: Tree, *,
                       prefix: str = "", names: Mapping[str, str] | None = None,
                       transfer: Transfer | None = None,
                       started: Mapping[str, Callable[[], Awaitable[str | None]]] | None = None
                       ) -> TransferResult:
    """Upload ``paths`` (relative to local ``root``, described by ``tree``) to ``store``,
    each to ``names[path]`` when given, else to ``prefix`` + its path.

    Each file is checked against its digest in ``tree`` while it is read; a file that
    changed since the scan fails with IntegrityError instead of uploading other bytes.
    A file whose entry has no digest is not checked but hashed as it is read (its size
    must still match): ``TransferResult.digests`` holds the digest of the bytes each
    file uploaded, and ``transfer.stat_cache`` records the ones computed here. ``started``:
    paths whose upload the caller already started, each with the wait for its end (the
    digest stored, or None: upload it here), counted in the progress and the result.
    """
    return await _move("push", store, root, paths, tree, prefix, names, transfer, started)


async def download_paths(store: Store, dest: str | os.PathLike[str], paths: Iterable[str], expected: Tree, *,
                         prefix: str = "", names: Mapping[str, str] | None = None,
                         transfer: Transfer | None = None,
                         started: Mapping[str, Callable[[], Awaitable[str | None]]] | None = None
                         ) -> TransferResult:
    """Download ``paths`` from ``store`` into ``dest``, verifying each against ``expected``;
    each path comes from the object ``names[path]`` when given, else ``prefix`` + its path.

    Every file is written to a temp file next to its final name and renamed into place
    only after its size and digest matched (an entry without a digest is checked by size
    only); unsafe names fail with UnsafePathError per file. ``started``: as for
    ``upload_paths`` (the wait returns the digest written).
    """
    return await _move("pull", store, dest, paths, expected, prefix, names, transfer, started)

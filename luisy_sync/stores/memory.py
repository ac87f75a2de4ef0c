"""MemoryStore: a complete in-process Store, for tests and dry experiments.

Behaves like the real backends: staged blocks are invisible until committed,
conditional puts honour ETags, names are validated like LocalStore's.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from luisy_sync.errors import (BlocksNotStaged, ContainerNotFound, NotFoundError, PreconditionFailed,
                               StoreError)
from luisy_sync.paths import safe_relpath
from luisy_sync.stores.base import BytesLike, GetResult, ObjectInfo, PutMode, check_range


@dataclass
class _Object:
    data: bytes
    etag: str
    metadata: dict[str, str] = field(default_factory=dict)
    modified: float = field(default_factory=time.time)


class MemoryStore:
    """A Store that keeps every object in a dict (one instance = one container)."""

    def __init__(self, name: str = "memory", *, exists: bool = True):
        self.url = f"memory://{name}"
        self._objects: dict[str, _Object] = {}
        self._staged: dict[str, dict[str, bytes]] = {}
        self._counter = itertools.count(1)
        self._exists = exists
        self._closed = False

    # -- helpers ---------------------------------------------------------------------

    def _etag(self) -> str:
        return f'"m{next(self._counter):x}"'

    def _check(self, name: str) -> str:
        if not self._exists:
            raise ContainerNotFound(f"{self.url} does not exist: create it first")
        return safe_relpath(name)

    def _info(self, name: str, obj: _Object) -> ObjectInfo:
        return ObjectInfo(name, len(obj.data), obj.etag, dict(obj.metadata), obj.modified)

    def _get(self, name: str) -> _Object:
        obj = self._objects.get(self._check(name))
        if obj is None:
            raise NotFoundError(f"{self.url}/{name} not found", status=404)
        return obj

    # -- Store protocol --------------------------------------------------------------

    async def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Every object whose name starts with ``prefix``, sorted by name."""
        if not self._exists:
            raise ContainerNotFound(f"{self.url} does not exist: create it first")
        return [self._info(n, o) for n, o in sorted(self._objects.items()) if n.startswith(prefix)]

    async def head(self, name: str) -> ObjectInfo:
        """Info for one object; raises NotFoundError."""
        return self._info(name, self._get(name))

    async def get(self, name: str, start: int = 0, length: int | None = None) -> GetResult:
        """Bytes ``[start, start+length)`` of an object (to the end when length is None)."""
        obj = self._get(name)
        check_range(name, start, length)
        end = len(obj.data) if length is None else start + length
        return GetResult(obj.data[start:end], obj.etag)

    async def put(self, name: str, data: BytesLike, *, metadata: Mapping[str, str] | None = None,
                  mode: PutMode = PutMode.OVERWRITE) -> ObjectInfo:
        """Write a whole object; raises PreconditionFailed when ``mode``'s condition fails."""
        name = self._check(name)
        current = self._objects.get(name)
        if mode.kind == "create" and current is not None:
            raise PreconditionFailed(f"{name!r} already exists", status=412)
        if mode.kind == "update" and (current is None or current.etag != mode.etag):
            raise PreconditionFailed(f"{name!r} changed since it was read", status=412)
        obj = _Object(bytes(data), self._etag(), dict(metadata or {}))
        self._objects[name] = obj
        return self._info(name, obj)

    async def put_block(self, name: str, block_id: str, data: BytesLike) -> None:
        """Stage one block; invisible until commit_blocks."""
        name = self._check(name)
        staged = self._staged.setdefault(name, {})
        other = next(iter(staged), None)
        if len(block_id.encode("utf-8")) > 64 or (
                other is not None and len(other.encode("utf-8")) != len(block_id.encode("utf-8"))):
            raise StoreError(f"stage block {block_id!r} of {name!r}: block ids of one object must "
                             "all have the same length (at most 64 bytes)", status=400)
        staged[block_id] = bytes(data)

    async def commit_blocks(self, name: str, block_ids: Sequence[str], *,
                            metadata: Mapping[str, str] | None = None) -> ObjectInfo:
        """Make the object the concatenation of the staged blocks, in the given order."""
        name = self._check(name)
        staged = self._staged.get(name, {})
        missing = [b for b in block_ids if b not in staged]
        if missing:
            raise BlocksNotStaged(f"cannot commit {name!r}: block {missing[0]!r} was never staged "
                             f"({len(missing)} of {len(block_ids)} missing); upload the blocks again")
        data = b"".join(staged[b] for b in block_ids)
        self._staged.pop(name, None)
        return await self.put(name, data, metadata=metadata)

    async def copy(self, src: str, dst: str) -> ObjectInfo:
        """Copy the bytes and metadata of ``src`` onto ``dst`` (a new ETag and time)."""
        obj = self._get(src)
        dst = self._check(dst)
        if dst == src:
            return self._info(dst, obj)
        copied = _Object(obj.data, self._etag(), dict(obj.metadata))
        self._objects[dst] = copied
        return self._info(dst, copied)

    async def delete(self, name: str, *, etag: str | None = None) -> None:
        """Remove an object (with ``etag``: only that version); missing is fine."""
        name = self._check(name)
        obj = self._objects.get(name)
        if obj is not None and etag is not None and obj.etag != etag:
            raise PreconditionFailed(f"{name!r} changed since it was read ({self.url})", status=412)
        self._objects.pop(name, None)

    async def ensure_container(self, create: bool = True) -> None:
        """Create the (virtual) container, or raise ContainerNotFound when not ``create``."""
        if not self._exists:
            if not create:
                raise ContainerNotFound(f"{self.url} does not exist: create it or pass create=True")
            self._exists = True

    async def close(self) -> None:
        """Nothing to release; the objects stay readable (handy for test assertions)."""
        self._closed = True

    async def __aenter__(self) -> "MemoryStore":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

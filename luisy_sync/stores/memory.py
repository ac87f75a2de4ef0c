"""MemoryStore: a complete in-process Store, for tests and dry experiments.

Behaves like the real backends: staged blocks are invisible until committed,
conditional small writes honour ETags, names are validated like LocalStore's.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Mapping

from luisy_sync.errors import (BlocksNotStaged, ContainerNotFound, NotFoundError, PreconditionFailed,
                               StoreError)
from luisy_sync.paths import safe_relpath
from luisy_sync.stores.base import ObjectInfo


@dataclass
class _Object:
    data: bytes
    etag: str
    metadata: dict[str, str] = field(default_factory=dict)


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
        return ObjectInfo(name, len(obj.data), obj.etag, dict(obj.metadata))

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

    async def get_range(self, name: str, start: int = 0, length: int | None = None) -> bytes:
        """Bytes ``[start, start+length)`` of an object (to the end when length is None)."""
        data = self._get(name).data
        if start < 0 or (length is not None and length < 0):
            raise StoreError(f"invalid range start={start} length={length} for {name!r}")
        end = len(data) if length is None else start + length
        return data[start:end]

    async def put(self, name: str, data: bytes, *,
                  metadata: Mapping[str, str] | None = None) -> ObjectInfo:
        """Write a whole object (overwrite)."""
        name = self._check(name)
        obj = _Object(bytes(data), self._etag(), dict(metadata or {}))
        self._objects[name] = obj
        return self._info(name, obj)

    async def put_block(self, name: str, block_id: str, data: bytes) -> None:
        """Stage one block; invisible until commit_blocks."""
        name = self._check(name)
        staged = self._staged.setdefault(name, {})
        other = next(iter(staged), None)
        if len(block_id.encode("utf-8")) > 64 or (
                other is not None and len(other.encode("utf-8")) != len(block_id.encode("utf-8"))):
            raise StoreError(f"stage block {block_id!r} of {name!r}: block ids of one object must "
                             "all have the same length (at most 64 bytes)", status=400)
        staged[block_id] = bytes(data)

    async def commit_blocks(self, name: str, block_ids: list[str], *,
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

    async def delete(self, name: str) -> None:
        """Remove an object; missing is fine."""
        self._objects.pop(self._check(name), None)

    async def read_small(self, name: str) -> tuple[bytes, str]:
        """Bytes and ETag of an object."""
        obj = self._get(name)
        return obj.data, obj.etag

    async def write_small(self, name: str, data: bytes, *, if_match: str | None = None,
                          if_none_match: bool = False) -> str:
        """Conditional write; raises PreconditionFailed when the condition fails."""
        name = self._check(name)
        current = self._objects.get(name)
        if if_none_match and current is not None:
            raise PreconditionFailed(f"{name!r} already exists", status=412)
        if if_match is not None and (current is None or current.etag != if_match):
            raise PreconditionFailed(f"{name!r} changed since it was read", status=412)
        info = await self.put(name, data)
        assert info.etag is not None
        return info.etag

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

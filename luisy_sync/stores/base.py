"""The Store protocol: the few operations the engine needs from any backend.

Names are POSIX relative paths below the store's root/prefix. Content digests are
xxh3-128 hex strings carried in object metadata under the key ``DIGEST_KEY``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Protocol, runtime_checkable

DIGEST_KEY = "xxh3"
"""Metadata key under which every store keeps an object's xxh3-128 hex digest."""


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What a store knows about one object."""

    name: str
    size: int
    etag: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def digest(self) -> str | None:
        """The content digest recorded when the object was written, if any."""
        return self.metadata.get(DIGEST_KEY)


@runtime_checkable
class Store(Protocol):
    """An object store: a flat namespace of names below a root.

    Implementations translate their own errors into ``luisy_sync.errors`` and do not
    retry (the transfer engine owns the retry policy). All methods are safe to call
    concurrently.
    """

    url: str
    """A URL naming this store, free of secrets (safe to log)."""

    async def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Every object whose name starts with ``prefix``, metadata included."""
        ...

    async def head(self, name: str) -> ObjectInfo:
        """Info for one object; raises NotFoundError."""
        ...

    async def get_range(self, name: str, start: int = 0, length: int | None = None) -> bytes:
        """``length`` bytes from ``start`` (to the end when None); raises NotFoundError."""
        ...

    async def put(self, name: str, data: bytes, *, metadata: Mapping[str, str] | None = None) -> ObjectInfo:
        """Write a whole object in one request (overwrite)."""
        ...

    async def put_block(self, name: str, block_id: str, data: bytes) -> None:
        """Stage one block of a large object; invisible until commit_blocks."""
        ...

    async def commit_blocks(self, name: str, block_ids: list[str], *,
                            metadata: Mapping[str, str] | None = None) -> ObjectInfo:
        """Make the object the concatenation of staged blocks, atomically."""
        ...

    async def delete(self, name: str) -> None:
        """Remove an object; a missing object is not an error."""
        ...

    async def read_small(self, name: str) -> tuple[bytes, str]:
        """A small (metadata) object's bytes and ETag; raises NotFoundError."""
        ...

    async def write_small(self, name: str, data: bytes, *, if_match: str | None = None,
                          if_none_match: bool = False) -> str:
        """Write a small object conditionally; returns the new ETag.

        ``if_match``: only if the current ETag equals it. ``if_none_match``: only if the
        object does not exist. Raises PreconditionFailed when the condition fails.
        """
        ...

    async def ensure_container(self, create: bool = True) -> None:
        """Check the container/root exists (create it when ``create``); raises
        ContainerNotFound or AuthError with a one-line message otherwise."""
        ...

    async def close(self) -> None:
        """Release connections. The store may not be used afterwards."""
        ...

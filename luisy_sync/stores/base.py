"""The Store protocol: the few operations the engine needs from any backend.

Names are POSIX relative paths below the store's root/prefix. Content digests are
xxh3-128 hex strings carried in object metadata under the key ``DIGEST_KEY``.

The verbs follow object_store: ``list``, ``head``, ``get`` (optionally ranged, with
the ETag of the version read) and ``put`` with a ``PutMode`` (overwrite, create only
if absent, update only if the ETag still matches), plus staged blocks for large
objects, and ``copy``, a server-side copy of one object onto another name (no bytes
pass through the client). Every store reports one ETag per object version: the one
``put`` (or ``copy``) returns is the one ``head``, ``list`` and ``get`` report until the
object changes, and the object's last-modified time where it knows it
(``ObjectInfo.modified``).

Optional batch capabilities (callers check with ``hasattr``):

- ``put_many(items) -> list[ObjectInfo | Exception]``: ``items`` are
  ``(name, data, metadata)`` or ``(name, data, metadata, mode)``; each item behaves
  like ``put`` (same modes, same ETags), errors are returned per item.
- ``get_many(names) -> list[GetResult | Exception]``: each like ``get(name)``.

Optional streamed read (the wrappers do not offer it):

- ``get_stream(name, start, length, sink) -> GetResult``: ``get(name, start, length)``
  (``length`` None: to the end) with the bytes handed to ``sink`` (a ``BodySink``) piece
  by piece as they arrive, so the memory a read holds is the sink's (a buffer the caller
  reuses), not a new one of the read's size; the result's data is empty.

Optional listing in a helper process (``LocalStore``; the wrappers do not offer it):

- ``list_apart(prefix) -> list[ObjectInfo] | None``: ``list(prefix)`` computed outside this
  interpreter, so that the caller's own CPU work (a push's walk) runs meanwhile; None when
  that does not pay (few objects) or failed: the caller then calls ``list``.

An optional attribute ``networked = True`` says the store's calls cross a network (a
round trip each; ``is_networked``): a push then creates its first new files while its
listing is on its way (``luisy_sync.early_creates``), and a pull fetches its first files
(``luisy_sync.early_gets``).

Bytes handed to ``put``, ``put_many`` and ``put_block`` may sit in a buffer the caller
reuses once the call returned: a store copies what it keeps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ClassVar, Literal, Mapping, Protocol, Sequence, runtime_checkable

import anyio

from luisy_sync.blockio import BytesLike
from luisy_sync.errors import StoreError

DIGEST_KEY = "xxh3"
"""Metadata key under which every store keeps an object's xxh3-128 hex digest."""


@dataclass(frozen=True, slots=True, init=False)
class ObjectInfo:
    """What a store knows about one object."""

    name: str
    size: int
    etag: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    modified: float | None = None
    """When the object was last written (POSIX seconds); None when the store cannot tell."""

    def __init__(self, name: str, size: int, etag: str | None = None,
                 metadata: Mapping[str, str] | None = None, modified: float | None = None):
        # slots set directly, as in FileEntry (a listing makes one per object)
        _set_name(self, name)
        _set_size(self, size)
        _set_etag(self, etag)
        _set_metadata(self, {} if metadata is None else metadata)
        _set_modified(self, modified)

    @property
    def digest(self) -> str | None:
        """The content digest recorded when the object was written, if any."""
        return self.metadata.get(DIGEST_KEY)


_set_name, _set_size, _set_etag, _set_metadata, _set_modified = (
    vars(ObjectInfo)[name].__set__ for name in ("name", "size", "etag", "metadata", "modified"))


@dataclass(frozen=True, slots=True)
class GetResult:
    """The bytes of a ``get`` and the ETag of the object version they came from."""

    data: bytes
    etag: str


class BodySink(Protocol):
    """Where a streamed read (``get_stream``) puts its bytes, piece by piece."""

    def start(self, length: int) -> None:
        """The read will deliver ``length`` bytes; raising refuses them (none were taken)."""
        ...

    def buffer(self, wake: Callable[[], None]) -> memoryview | None:
        """A writable view for the next bytes (the same one until ``received``), or None
        when there is no room now; ``wake()`` is then called once there may be."""
        ...

    def received(self, nbytes: int) -> None:
        """``nbytes`` bytes landed at the start of the last view ``buffer`` returned."""
        ...


async def feed_sink(sink: BodySink, data: bytes | bytearray | memoryview, *, start: bool = True) -> None:
    """Hand bytes that are already in memory to ``sink`` (for reads that cannot stream);
    ``start=False``: the caller started the sink, ``data`` is one more piece of the read."""
    if start:
        sink.start(len(data))
    view = memoryview(data)
    while view:
        room = anyio.Event()
        target = sink.buffer(room.set)
        if target is None:
            await room.wait()
            continue
        n = min(len(target), len(view))
        target[:n] = view[:n]
        sink.received(n)
        view = view[n:]


@dataclass(frozen=True, slots=True)
class PutMode:
    """How ``put`` treats an existing object (object_store's PutMode).

    ``PutMode.OVERWRITE`` (the default) replaces whatever is there;
    ``PutMode.CREATE`` writes only when the name is absent; ``PutMode.update(etag)``
    writes only when the current version has that ETag. A failed condition raises
    PreconditionFailed and changes nothing.
    """

    kind: Literal["overwrite", "create", "update"]
    etag: str | None = None

    OVERWRITE: ClassVar[PutMode]
    CREATE: ClassVar[PutMode]

    def __post_init__(self) -> None:
        if (self.kind == "update") != (self.etag is not None):
            raise ValueError("PutMode: an ETag goes with (and only with) kind='update'")

    @classmethod
    def update(cls, etag: str) -> PutMode:
        """Write only if the object's current ETag is ``etag``."""
        return cls("update", etag)


PutMode.OVERWRITE = PutMode("overwrite")
PutMode.CREATE = PutMode("create")


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

    async def get(self, name: str, start: int = 0, length: int | None = None) -> GetResult:
        """``length`` bytes from ``start`` (to the end when None) and the ETag of the
        version read; a range past the end gives no bytes. Raises NotFoundError."""
        ...

    async def put(self, name: str, data: BytesLike, *, metadata: Mapping[str, str] | None = None,
                  mode: PutMode = PutMode.OVERWRITE) -> ObjectInfo:
        """Write a whole object in one request; returns its info with the new ETag.
        Raises PreconditionFailed when ``mode``'s condition fails."""
        ...

    async def put_block(self, name: str, block_id: str, data: BytesLike) -> None:
        """Stage one block of a large object; invisible until commit_blocks."""
        ...

    async def commit_blocks(self, name: str, block_ids: Sequence[str], *,
                            metadata: Mapping[str, str] | None = None) -> ObjectInfo:
        """Make the object the concatenation of staged blocks, atomically."""
        ...

    async def copy(self, src: str, dst: str) -> ObjectInfo:
        """Copy object ``src`` onto ``dst`` inside the store (server-side: no bytes pass
        through the client), replacing ``dst``, with ``src``'s metadata (its digest);
        returns ``dst``'s info with its new ETag. A later write of either name leaves the
        other unchanged; a copy onto itself changes nothing (returns its info). Raises
        NotFoundError when ``src`` is missing."""
        ...

    async def delete(self, name: str, *, etag: str | None = None) -> None:
        """Remove an object; a missing object is not an error. With ``etag``, only that
        version: PreconditionFailed (nothing removed) when the object has another."""
        ...

    async def ensure_container(self, create: bool = True) -> None:
        """Check the container/root exists (create it when ``create``); raises
        ContainerNotFound or AuthError with a one-line message otherwise."""
        ...

    async def close(self) -> None:
        """Release connections. The store may not be used afterwards."""
        ...


def is_networked(store: object) -> bool:
    """Whether ``store``'s calls cross a network (its ``networked`` attribute)."""
    return bool(getattr(store, "networked", False))


def check_range(name: str, start: int, length: int | None) -> None:
    """Raise StoreError for a negative ``start`` or ``length`` (every store's ``get``)."""
    if start < 0 or (length is not None and length < 0):
        raise StoreError(f"invalid range start={start} length={length} for {name!r}")

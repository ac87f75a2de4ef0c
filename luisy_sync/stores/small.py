"""Small (metadata) objects: whole reads with their ETag, and conditional writes.

Helpers over the Store verbs ``get`` and ``put`` for read -> modify -> conditional
write loops (manifests, luisy's hash file).
"""

from __future__ import annotations

from luisy_sync.stores.base import PutMode, Store


async def read_small(store: Store, name: str) -> tuple[bytes, str]:
    """The whole object ``name`` and the ETag of that version; raises NotFoundError."""
    got = await store.get(name)
    return got.data, got.etag


async def write_small(store: Store, name: str, data: bytes, *, if_match: str | None = None,
                      if_none_match: bool = False) -> str:
    """Write ``name`` (no metadata) and return its new ETag.

    ``if_match``: only if the current ETag equals it. ``if_none_match``: only if the
    object does not exist. Raises PreconditionFailed when the condition fails.
    """
    if if_none_match and if_match is not None:
        raise ValueError("write_small: pass if_match or if_none_match, not both")
    mode = (PutMode.CREATE if if_none_match else
            PutMode.update(if_match) if if_match is not None else PutMode.OVERWRITE)
    etag = (await store.put(name, data, mode=mode)).etag
    assert etag is not None, f"{store.url} returned no ETag for {name!r}"
    return etag

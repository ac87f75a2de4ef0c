"""Content digests: streaming xxh3-128 of files and byte strings.

Every digest in luisy_sync is ``xxhash.xxh3_128(...).hexdigest()`` (see
``luisy_sync.tree.HASH_ALGORITHM``). Files are read in fixed-size chunks into one
reused buffer, so memory stays flat whatever the file size; xxhash releases the GIL
on large buffers, so several files can be hashed in parallel threads.
"""

from __future__ import annotations

import os
from typing import Protocol

import xxhash

CHUNK_SIZE = 256 * 1024
"""Default read size for hashing (256 KiB): a chunk read is still in the core's cache when
it is hashed. Hashing 4 x 256 MiB page-cached files one by one (Intel Xeon, 2 MiB of L2
per core, 9 interleaved runs, min): 128 KiB 0.208 s, 256 KiB 0.204 s, 512 KiB 0.200 s,
1 MiB 0.213 s, 4 MiB 0.234 s; ``xxhsum -H2`` 0.207 s. Two threads scale the same way
(0.110 s with 256 KiB, 0.115 s with 4 MiB)."""
_MIN_BUFFER = 64 * 1024


class Readable(Protocol):
    """A binary file object that reads into a buffer (an open file, ``io.BytesIO``)."""

    def readinto(self, buffer: bytearray, /) -> int | None: ...


def hash_bytes(data: bytes | bytearray | memoryview) -> str:
    """The xxh3-128 hex digest of ``data``."""
    return xxhash.xxh3_128_hexdigest(data)


def new_hasher() -> "xxhash.xxh3_128":
    """A fresh incremental xxh3-128 hasher (``update(...)``, ``hexdigest()``)."""
    return xxhash.xxh3_128()


def hash_file(path: str | os.PathLike[str], chunk_size: int = CHUNK_SIZE) -> str:
    """The xxh3-128 hex digest of the file at ``path``, read in ``chunk_size`` chunks."""
    with open(path, "rb", buffering=0) as fh:
        return hash_fileobj(fh, chunk_size, size_hint=os.fstat(fh.fileno()).st_size)


def hash_fileobj(fh: Readable, chunk_size: int = CHUNK_SIZE, *, size_hint: int | None = None) -> str:
    """The xxh3-128 hex digest of the rest of the open binary file ``fh``.

    ``size_hint`` (the expected remaining size) only sizes the read buffer, so small
    files do not pay for allocating a whole chunk; the file is read to its end anyway.
    """
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    if size_hint is not None:
        chunk_size = min(chunk_size, max(size_hint + 1, _MIN_BUFFER))
    hasher = xxhash.xxh3_128()
    buf = bytearray(chunk_size)
    view = memoryview(buf)
    readinto = fh.readinto
    update = hasher.update
    while True:
        n = readinto(buf)
        if not n:
            break
        update(view[:n] if n < chunk_size else buf)
    return hasher.hexdigest()

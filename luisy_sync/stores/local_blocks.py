"""Staged blocks of a LocalStore: one file per block until its commit.

A block lives at ``<blocks>/<hash of object name>/<id length>-<hash of block id>``.
Block ids are unique per upload attempt, so concurrent uploaders of one name never
share a file, and a commit consumes only its own blocks. Like Azure, all staged ids
of one object have one length (at most 64 bytes) and abandoned blocks expire after
a week.
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import Iterator, Sequence

from luisy_sync.errors import BlocksNotStaged, StoreError
from luisy_sync.atomic import write_atomic

STALE_BLOCKS_SECONDS = 7 * 24 * 3600
_COPY_CHUNK = 1 << 20


def hash_name(text: str) -> str:
    """A fixed-length, filesystem-safe key for ``text``."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:40]


def block_file(blocks: str, name: str, block_id: str) -> str:
    """The staging file of ``block_id`` of object ``name`` below the ``blocks`` directory."""
    size = len(block_id.encode("utf-8"))
    return os.path.join(blocks, hash_name(name), f"{size:02d}-{hash_name(block_id)}")


def stage(blocks: str, name: str, block_id: str, data: bytes, *, fsync: bool) -> None:
    """Write one block (atomically; the directory is re-made if a commit just removed it)."""
    path = block_file(blocks, name, block_id)
    directory, mine = os.path.split(path)
    try:
        lengths = {e[:2] for e in os.listdir(directory) if not e.startswith(".")}
    except FileNotFoundError:
        lengths = set()
    if len(block_id.encode("utf-8")) > 64 or lengths - {mine[:2]}:
        raise StoreError(f"stage block {block_id!r} of {name!r}: block ids of one object must "
                         "all have the same length (at most 64 bytes)", status=400)
    write_atomic(path, [data], fsync=fsync)


def staged_content(blocks: str, name: str, block_ids: Sequence[str]) -> Iterator[bytes]:
    """The concatenated bytes of the given blocks, streamed; raises BlocksNotStaged
    (before yielding anything when a file is already missing)."""
    files = [block_file(blocks, name, b) for b in block_ids]
    for block_id, f in zip(block_ids, files):
        if not os.path.isfile(f):
            raise BlocksNotStaged(f"cannot commit {name!r}: block {block_id!r} was never staged "
                                  "(or was already committed); upload the blocks again")

    def chunks() -> Iterator[bytes]:
        for block_id, f in zip(block_ids, files):
            try:
                fh = open(f, "rb")
            except FileNotFoundError:
                raise BlocksNotStaged(f"cannot commit {name!r}: staged block {block_id!r} "
                                      "disappeared; upload the blocks again") from None
            with fh:
                while chunk := fh.read(_COPY_CHUNK):
                    yield chunk

    return chunks()


def consume(blocks: str, name: str, block_ids: Sequence[str]) -> None:
    """Remove the given (committed) blocks, and the object's directory if now empty."""
    for block_id in set(block_ids):
        try:
            os.unlink(block_file(blocks, name, block_id))
        except FileNotFoundError:
            pass
    try:
        os.rmdir(os.path.join(blocks, hash_name(name)))  # fails while others' blocks are staged
    except OSError:
        pass


def drop_stale(blocks: str, max_age: float = STALE_BLOCKS_SECONDS) -> None:
    """Remove staged blocks older than ``max_age`` seconds (abandoned uploads)."""
    if not os.path.isdir(blocks):
        return
    cutoff = time.time() - max_age
    for directory in os.scandir(blocks):
        try:
            for entry in os.scandir(directory.path):
                if entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
            os.rmdir(directory.path)
        except OSError:
            continue

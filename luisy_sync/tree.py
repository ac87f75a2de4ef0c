"""Tree: an immutable mapping of POSIX relative path -> FileEntry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView

HASH_ALGORITHM = "xxh3-128"
"""The content digest algorithm everywhere in luisy_sync (hex strings of 32 chars)."""


@dataclass(frozen=True, slots=True, init=False)
class FileEntry:
    """One file: its size, modification time (ns) and content digest (xxh3-128 hex).

    ``digest`` is None for a remote object written without a digest; the planner treats
    such an entry as different from every local file.
    """

    size: int
    digest: str | None
    mtime_ns: int = 0

    def __init__(self, size: int, digest: str | None, mtime_ns: int = 0):
        # the slots are set directly: a frozen dataclass's own __init__ goes through
        # object.__setattr__ per field, and trees make one entry per file, many times over
        _set_size(self, size)
        _set_digest(self, digest)
        _set_mtime_ns(self, mtime_ns)


_set_size, _set_digest, _set_mtime_ns = (
    vars(FileEntry)[name].__set__ for name in ("size", "digest", "mtime_ns"))


class Tree(Mapping[str, FileEntry]):
    """An immutable mapping of relative POSIX path -> FileEntry, iterated in sorted order."""

    __slots__ = ("_entries", "root")

    def __init__(self, entries: Mapping[str, FileEntry] | Iterable[tuple[str, FileEntry]] = (),
                 root: str | None = None):
        if isinstance(entries, Tree):
            self._entries: dict[str, FileEntry] = entries._entries  # immutable: shared, sorted
        else:
            items = dict(entries.items() if isinstance(entries, Mapping) else entries)
            keys = list(items)
            ordered = sorted(keys)  # linear when already sorted (a listing, a tree's items)
            if keys != ordered:
                items = {key: items[key] for key in ordered}
            self._entries = items
        self.root = root
        """The local directory the paths are relative to (None for remote trees)."""

    def __getitem__(self, path: str) -> FileEntry:
        return self._entries[path]

    def __contains__(self, path: object) -> bool:
        return path in self._entries

    def get(self, path: str, default: FileEntry | None = None) -> FileEntry | None:  # type: ignore[override]
        return self._entries.get(path, default)

    def keys(self) -> KeysView[str]:
        return self._entries.keys()

    def items(self) -> ItemsView[str, FileEntry]:
        return self._entries.items()

    def values(self) -> ValuesView[FileEntry]:
        return self._entries.values()

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Tree({len(self)} files, {self.total_bytes} bytes)"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Tree):
            return self._entries == other._entries
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self._entries.items()))

    @property
    def total_bytes(self) -> int:
        """Sum of all entry sizes."""
        return sum(e.size for e in self._entries.values())

    def subset(self, paths: Iterable[str]) -> "Tree":
        """The entries for ``paths`` that are present in this tree."""
        return Tree(((p, self._entries[p]) for p in paths if p in self._entries), root=self.root)

    def without(self, paths: Iterable[str | None]) -> "Tree":
        """This tree without the entries for ``paths`` (None and empty names are ignored)."""
        drop = {p for p in paths if p}
        if not any(p in self._entries for p in drop):
            return self
        return Tree(((p, e) for p, e in self._entries.items() if p not in drop), root=self.root)

    def with_prefix(self, prefix: str) -> "Tree":
        """Entries below the directory ``prefix`` (a POSIX path without trailing slash)."""
        if not prefix:
            return self
        head = prefix.rstrip("/") + "/"
        return Tree(((p, e) for p, e in self._entries.items() if p.startswith(head)), root=self.root)

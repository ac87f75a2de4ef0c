"""Planning: which files a push or pull must move. Pure functions, no IO.

A plan compares two Trees by content digest (never by mtime). Every path considered
lands in exactly one bucket:

=============  ====================================================================
UPLOAD         push: missing in the store, different digest/size, or no digest there
DOWNLOAD       pull: missing locally or different digest/size
SKIP           same digest and same size on both sides
REMOTE_ONLY    push: in the store but not local (left alone)
LOCAL_ONLY     pull: local but not in the store (left alone)
MISSING        a requested path (``paths=``) that the source side does not have
REFUSED        a name that is unsafe (``..``, absolute, backslash) or that would be
               both a file and a directory; carried with the reason
=============  ====================================================================

``paths`` restricts a plan to the named files; a requested path that names a directory
in the source tree selects every file below it.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from luisy_sync.errors import SyncError, UnsafePathError
from luisy_sync.paths import safe_relpath
from luisy_sync.conventions import format_bytes
from luisy_sync.tree import Tree

UPLOAD = "upload"
DOWNLOAD = "download"
SKIP = "skip"
REMOTE_ONLY = "remote_only"
LOCAL_ONLY = "local_only"
MISSING = "missing"
REFUSED = "refused"
CHANGE_KINDS = (UPLOAD, DOWNLOAD, SKIP, REMOTE_ONLY, LOCAL_ONLY, MISSING, REFUSED)

PUSH = "push"
PULL = "pull"

_Paths = tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    """What a push (source=local, target=remote) or pull (source=remote, target=local) does.

    ``refused`` holds ``(path, reason)`` pairs; the API raises for them instead of moving
    anything. ``is_noop`` is true when no file needs to move.
    """

    direction: str
    source: Tree
    target: Tree
    upload: tuple[str, ...] = ()
    download: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()
    remote_only: tuple[str, ...] = ()
    local_only: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    refused: tuple[tuple[str, str], ...] = field(default=())

    @property
    def transfers(self) -> tuple[str, ...]:
        """The paths to move: ``upload`` for a push, ``download`` for a pull."""
        return self.upload if self.direction == PUSH else self.download

    @property
    def files_to_transfer(self) -> int:
        """How many files move."""
        return len(self.transfers)

    @property
    def bytes_to_transfer(self) -> int:
        """How many bytes move (sizes as the source side knows them)."""
        src = self.source
        return sum(src[p].size for p in self.transfers)

    @property
    def is_noop(self) -> bool:
        """True when nothing needs to move."""
        return not self.transfers

    def kind_of(self, path: str) -> str | None:
        """The bucket (one of CHANGE_KINDS) a path landed in, or None if not planned."""
        for kind in (UPLOAD, DOWNLOAD, SKIP, REMOTE_ONLY, LOCAL_ONLY, MISSING):
            if path in getattr(self, kind):
                return kind
        if any(p == path for p, _ in self.refused):
            return REFUSED
        return None

    def raise_if_refused(self, where: str) -> None:
        """Refuse the whole operation when names were refused: raise UnsafePathError for an
        unsafe first name, else SyncError, saying nothing was ``where`` (e.g. "uploaded")."""
        if not self.refused:
            return
        path, reason = self.refused[0]
        try:
            safe_relpath(path)
        except UnsafePathError:
            cls: type[SyncError] = UnsafePathError
        else:
            cls = SyncError
        raise cls(f"{len(self.refused)} name(s) refused, nothing was {where}; first: {reason}")

    def summary(self) -> str:
        """One line, e.g. ``push: 3 to upload (1.5 MiB), 10 unchanged, 2 only in the store``."""
        verb = "upload" if self.direction == PUSH else "download"
        parts = [f"{self.direction}: {self.files_to_transfer} to {verb} "
                 f"({format_bytes(self.bytes_to_transfer)})", f"{len(self.skip)} unchanged"]
        if self.remote_only:
            parts.append(f"{len(self.remote_only)} only in the store")
        if self.local_only:
            parts.append(f"{len(self.local_only)} only local")
        if self.missing:
            parts.append(f"{len(self.missing)} missing")
        if self.refused:
            parts.append(f"{len(self.refused)} refused")
        return ", ".join(parts)


def plan_push(local: Tree, remote: Tree, paths: Iterable[str] | None = None) -> Plan:
    """Plan uploading ``local`` onto ``remote`` (optionally only ``paths``)."""
    upload, skip, remote_only, missing, refused = _compare(local, remote, paths)
    return Plan(PUSH, local, remote, upload=upload, skip=skip,
                remote_only=remote_only, missing=missing, refused=refused)


def plan_pull(remote: Tree, local: Tree, paths: Iterable[str] | None = None) -> Plan:
    """Plan downloading ``remote`` into ``local`` (optionally only ``paths``)."""
    download, skip, local_only, missing, refused = _compare(remote, local, paths)
    return Plan(PULL, remote, local, download=download, skip=skip,
                local_only=local_only, missing=missing, refused=refused)


def _compare(source: Tree, target: Tree, paths: Iterable[str] | None
             ) -> tuple[_Paths, _Paths, _Paths, _Paths, tuple[tuple[str, str], ...]]:
    """Classify for copying ``source`` onto ``target``.

    Returns (to move, unchanged, only on the target side, missing, refused); the
    target-only bucket is empty when ``paths`` restricts the plan.
    """
    selected, missing = _select(source, paths)
    refused = _refusals(selected, source, target)
    refused_names = {p for p, _ in refused}
    move: list[str] = []
    skip: list[str] = []
    theirs_of = target.get
    pairs = source.items() if paths is None else ((path, source[path]) for path in selected)
    for path, mine in pairs:  # in path order either way
        if path in refused_names:
            continue
        theirs = theirs_of(path)
        if theirs is not None and mine.digest is not None and mine.digest == theirs.digest \
                and mine.size == theirs.size:  # the same content: both digests known and equal
            skip.append(path)
        else:
            move.append(path)
    target_only = () if paths is not None else tuple(p for p in target if p not in source)
    return tuple(move), tuple(skip), target_only, missing, refused


def _select(source: Tree, paths: Iterable[str] | None) -> tuple[list[str], tuple[str, ...]]:
    """Source paths to plan (sorted) and the requested paths the source lacks."""
    if paths is None:
        return list(source), ()
    names = list(source)
    chosen: set[str] = set()
    missing: list[str] = []
    for requested in dict.fromkeys(paths):
        if requested in source:
            chosen.add(requested)
            continue
        head = requested.rstrip("/") + "/"
        start = bisect.bisect_left(names, head)
        end = start
        while head != "/" and end < len(names) and names[end].startswith(head):
            end += 1
        if end > start:
            chosen.update(names[start:end])
        else:
            missing.append(requested)
    return sorted(chosen), tuple(sorted(missing))


def _refusals(selected: list[str], source: Tree, target: Tree) -> tuple[tuple[str, str], ...]:
    """Names that cannot be written on the target side, with the reason."""
    refused: list[tuple[str, str]] = []
    safe: list[str] = []
    for path in selected:
        try:
            safe_relpath(path)
        except UnsafePathError as exc:
            refused.append((path, str(exc)))
        else:
            safe.append(path)
    source_dirs = _parent_dirs(source)
    # Target files standing where the source needs a directory; usually none, so the
    # per-path search below is skipped.
    blockers = {d for d in source_dirs if d in target and d not in source}
    for path in safe:
        if path in source_dirs:
            refused.append((path, f"refusing {path!r}: it is both a file and a directory in the source"))
            continue
        if not blockers:
            continue
        blocker = next((d for d in _parents(path) if d in blockers), None)
        if blocker is not None:
            refused.append((path, f"refusing {path!r}: {blocker!r} is a file on the target side; "
                                  "remove or rename it first"))
    return tuple(sorted(refused))


def _parents(path: str) -> list[str]:
    """``a/b/c`` -> ``['a', 'a/b']``."""
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def _parent_dirs(tree: Tree) -> set[str]:
    """Every directory implied by the paths of ``tree``."""
    dirs: set[str] = set()
    for path in tree:
        parent = path.rpartition("/")[0]
        while parent and parent not in dirs:  # its own parents are in already when it is
            dirs.add(parent)
            parent = parent.rpartition("/")[0]
    return dirs


def pull_conflicts(plan: Plan, synced: Mapping[str, str]) -> dict[str, str]:
    """Local files a pull ``plan`` would overwrite although they changed since they last
    matched the store, path -> what changed (on which side).

    ``synced`` maps a path to the digest it had when it last matched the store (pulled,
    found identical, or pushed). A local file still at that digest is safe to replace;
    any other existing local file the plan downloads onto is a conflict: edited since
    (locally, or on both sides), or never synced from this directory at all.
    """
    conflicts: dict[str, str] = {}
    for path in plan.download:
        mine = plan.target.get(path)
        if mine is None:
            continue
        base = synced.get(path)
        if base is None:
            conflicts[path] = "exists locally and differs from the store; it was never synced here"
        elif mine.digest != base:
            theirs = plan.source[path].digest
            side = "locally" if theirs == base else "locally and in the store"
            conflicts[path] = f"changed {side} since the last sync"
    return conflicts

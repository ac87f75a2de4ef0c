"""What ``luisy gc`` removes (pure: no I/O).

A version of an output (see :mod:`luisy.versions`) is *stale* when the latest pointer
(the cloud ``.luisy.hash`` entry of its key) is another version and it was uploaded
before the cutoff (now minus the grace period). A content object
(``.luisy-cas/<xx>/<digest>``) can go when no version that stays names its digest, no
latest entry names it, and it was last written before the cutoff. Everything else stays.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from luisy.hashfile import CloudEntry
from luisy.versions import CAS_PREFIX, VERSIONS_FORMAT, Versions, named_digests
from luisy_sync.stores.base import ObjectInfo

CLOCK_SLACK = 2.0
"""Seconds a content object must be older than the cutoff: stores count whole seconds
(Azure's Last-Modified) and their clock may run a little apart from this machine's."""

PRICE_PER_GIB_MONTH = 0.018
"""Default storage price for the saving estimate (USD per GiB and month; Azure Blob hot
tier, locally redundant, first 50 TB, at the time of writing)."""


@dataclass(frozen=True, order=True)
class StaleVersion:
    """A version gc drops from its project's index."""

    project: str
    key: str
    code_hash: str
    uploaded: float
    size: int


@dataclass(frozen=True)
class GcPlan:
    """The versions to drop and the content objects to delete, with what stays."""

    versions: tuple[StaleVersion, ...] = ()
    objects: tuple[ObjectInfo, ...] = ()
    versions_kept: int = 0
    objects_kept: int = 0

    @property
    def bytes(self) -> int:
        """Bytes the deleted content objects hold."""
        return sum(o.size for o in self.objects)

    def monthly_saving(self, price_per_gib_month: float = PRICE_PER_GIB_MONTH) -> float:
        """The storage cost the deletions save per month, at ``price_per_gib_month``."""
        return self.bytes / 2 ** 30 * price_per_gib_month


def content_digest(name: str) -> str | None:
    """The digest a content object's name holds, None for any other name."""
    parts = name.split("/")
    if len(parts) == 3 and parts[0] == CAS_PREFIX and parts[2].startswith(parts[1]) and len(parts[1]) == 2:
        return parts[2]
    return None


def written_before(info: ObjectInfo, cutoff: float) -> bool:
    """Whether a content object was last written before ``cutoff`` (an object whose time
    the store cannot tell was not)."""
    return info.modified is not None and info.modified < cutoff - CLOCK_SLACK


def upload_times(doc: Mapping[str, Any] | None) -> dict[tuple[str, str], float]:
    """``(key, code hash) -> upload time`` of a versions index document (a version without
    a readable time counts as uploaded now: it is never stale)."""
    out: dict[tuple[str, str], float] = {}
    for key, by_hash in ((doc or {}).get("versions") or {}).items():
        for code_hash, value in (by_hash or {}).items():
            when = value.get("uploaded") if isinstance(value, dict) else None
            out[(key, code_hash)] = float(when) if isinstance(when, (int, float)) else float("inf")
    return out


def _is_stale(key: str, code_hash: str, uploaded: float, latest: Mapping[str, CloudEntry],
              cutoff: float) -> bool:
    pointer = latest.get(key)
    return uploaded < cutoff and (pointer is None or pointer.code_hash != code_hash)


def stale_versions(project: str, versions: Versions, times: Mapping[tuple[str, str], float],
                   latest: Mapping[str, CloudEntry], cutoff: float) -> list[StaleVersion]:
    """The versions of one project's index that gc drops."""
    return sorted(StaleVersion(project, key, code_hash, times.get((key, code_hash), float("inf")), entry.size)
                  for key, by_hash in versions.items() for code_hash, entry in by_hash.items()
                  if _is_stale(key, code_hash, times.get((key, code_hash), float("inf")), latest, cutoff))


def referenced_digests(versions: Iterable[Versions], latest: Iterable[Mapping[str, CloudEntry]]) -> set[str]:
    """Every digest a version or a latest entry names."""
    out: set[str] = set()
    for one in versions:
        out |= named_digests(one)
    for entries in latest:
        out |= {f.digest for entry in entries.values() for f in entry.files}
    return out


def without(versions: Versions, stale: Iterable[StaleVersion]) -> Versions:
    """``versions`` less the ``stale`` ones."""
    gone = {(s.key, s.code_hash) for s in stale}
    return {key: {h: e for h, e in by_hash.items() if (key, h) not in gone}
            for key, by_hash in versions.items()}


def unreferenced(content: Mapping[str, ObjectInfo], referenced: set[str], cutoff: float) -> list[ObjectInfo]:
    """The content objects no one names that were last written before ``cutoff`` (an
    object whose time the store cannot tell stays)."""
    return sorted((info for name, info in content.items()
                   if (digest := content_digest(name)) is not None and digest not in referenced
                   and written_before(info, cutoff)), key=lambda i: i.name)


def plan_gc(indexes: Mapping[str, tuple[Versions, Mapping[tuple[str, str], float]]],
            latest: Mapping[str, Mapping[str, CloudEntry]], content: Mapping[str, ObjectInfo],
            cutoff: float) -> GcPlan:
    """The plan for a store: ``indexes`` project -> (versions, upload times), ``latest``
    project -> its cloud ``.luisy.hash`` entries, ``content`` the listed content objects."""
    stale: list[StaleVersion] = []
    kept: list[Versions] = []
    for project, (versions, times) in sorted(indexes.items()):
        dropped = stale_versions(project, versions, times, latest.get(project, {}), cutoff)
        stale += dropped
        kept.append(without(versions, dropped))
    objects = unreferenced(content, referenced_digests(kept, latest.values()), cutoff)
    versions_total = sum(len(by_hash) for versions, _ in indexes.values() for by_hash in versions.values())
    return GcPlan(tuple(stale), tuple(objects), versions_total - len(stale),
                  sum(1 for n in content if content_digest(n) is not None) - len(objects))


def prune(doc: Mapping[str, Any] | None, versions: Versions, latest: Mapping[str, CloudEntry],
          cutoff: float) -> dict[str, Any]:
    """The index ``doc`` (whose parsed form is ``versions``) less the versions stale now:
    what gc writes, re-decided on every read of a conditional write."""
    times = upload_times(doc)
    raw: dict[str, dict[str, Any]] = {}
    for key, by_hash in ((doc or {}).get("versions") or {}).items():
        kept = {h: v for h, v in by_hash.items()
                if not (h in versions.get(key, {}) and _is_stale(key, h, times[(key, h)], latest, cutoff))}
        if kept:
            raw[key] = kept
    return {"format": VERSIONS_FORMAT, "versions": raw}

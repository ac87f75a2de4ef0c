"""The cloud cache keyed by code hash (pure: no I/O).

Every uploaded version of an output stays addressable by (output key, code hash):

- the content by digest, store-wide: ``.luisy-cas/<digest[:2]>/<digest>`` (identical
  content is stored once, whatever key, version or project it belongs to);
- one versions index per project, ``<project>/.luisy.versions``::

      {"format": "luisy-versions/1",
       "versions": {"/proj/interim/X.pkl": {"<code hash>": {"hash": "<code hash>",
                                                            "digest": "...", "size": 123,
                                                            "uploaded": 1767225600.0}}}}

  each version being a :class:`~luisy.hashfile.CloudEntry` in its cloud ``.luisy.hash``
  shape plus the time it was uploaded (epoch seconds, for garbage collection).

``<project>/<path>`` and ``<project>/.luisy.hash`` keep showing the latest upload (the
luisy 1.4.7 view). The index only changes by read -> :func:`merge_versions` ->
conditional write, so concurrent writers never lose each other's versions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from luisy.codehash.parts import HashParts
from luisy.errors import CloudHashError
from luisy.hashfile import CloudEntry

VERSIONS_FILE_NAME = ".luisy.versions"
VERSIONS_FORMAT = "luisy-versions/1"
CAS_PREFIX = ".luisy-cas"

Versions = dict[str, dict[str, CloudEntry]]
"""Output key -> code hash -> the version's entry."""


def versions_object(project: str) -> str:
    """The store object holding ``project``'s versions index."""
    return f"{project}/{VERSIONS_FILE_NAME}"


def cas_name(digest: str) -> str:
    """The store object holding the content with ``digest`` (xxh3-128 hex)."""
    return f"{CAS_PREFIX}/{digest[:2]}/{digest}"


def parse_versions(doc: Mapping[str, Any] | None, where: str) -> Versions:
    """The versions of an index document (``None`` = no index = no versions); a malformed
    document raises CloudHashError naming ``where``."""
    if doc is None:
        return {}
    if doc.get("format") != VERSIONS_FORMAT or not isinstance(doc.get("versions"), dict):
        raise CloudHashError(where, f"not a {VERSIONS_FORMAT} index (format={doc.get('format')!r})")
    out: Versions = {}
    for key, by_hash in doc["versions"].items():
        if not isinstance(by_hash, dict):
            raise CloudHashError(where, f"versions of {key!r} are not an object")
        out[key] = {}
        for code_hash, value in by_hash.items():
            try:
                entry = CloudEntry.from_json(value)
            except ValueError as exc:
                raise CloudHashError(where, f"version {code_hash!r} of {key!r} {exc}") from None
            if entry.legacy or entry.code_hash != code_hash:
                raise CloudHashError(where, f"version {code_hash!r} of {key!r} names no content "
                                            f"or another code hash")
            out[key][code_hash] = entry
    return out


def named_digests(versions: Versions) -> set[str]:
    """Every digest some version names (the content the store keeps for the index)."""
    return {f.digest for by_hash in versions.values() for e in by_hash.values() for f in e.files}


def merge_versions(doc: Mapping[str, Any] | None, updates: Mapping[str, CloudEntry], now: float,
                   where: str, *, named_only: bool = False,
                   parts: Mapping[str, HashParts] | None = None) -> dict[str, Any]:
    """The index ``doc`` with the versions ``updates`` (key -> entry) added: a version
    already stored with the same content is left as it is (its upload time too), one
    with other content is replaced, and every other version is kept. ``named_only``:
    add only versions whose content other versions in ``doc`` name already (so the
    content store holds it without an upload). ``parts``: what each added version's
    code hash is made of (key -> parts), kept with it to explain reruns."""
    current = parse_versions(doc, where)  # never overwrite an index we cannot read
    named = named_digests(current)
    raw: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (doc or {}).get("versions", {}).items()}
    for key, entry in sorted(updates.items()):
        if current.get(key, {}).get(entry.code_hash) == entry:
            continue
        if named_only and not {f.digest for f in entry.files} <= named:
            continue
        value = entry.to_json()
        assert isinstance(value, dict), "versions name content"
        made_of = parts.get(key) if parts is not None else None
        extra = {"parts": made_of.to_json()} if made_of is not None else {}
        raw.setdefault(key, {})[entry.code_hash] = {**value, "uploaded": now, **extra}
    return {"format": VERSIONS_FORMAT, "versions": raw}


def version_parts(doc: Mapping[str, Any] | None) -> dict[tuple[str, str], HashParts]:
    """``(key, code hash) -> parts`` of the versions that carry them (a version uploaded
    without, or with unreadable parts, has none: the parts only explain)."""
    out: dict[tuple[str, str], HashParts] = {}
    for key, by_hash in ((doc or {}).get("versions") or {}).items():
        for code_hash, value in (by_hash if isinstance(by_hash, dict) else {}).items():
            if isinstance(value, dict) and "parts" in value:
                try:
                    out[(key, code_hash)] = HashParts.from_json(value["parts"])
                except ValueError:
                    continue
    return out


def select_entry(latest: CloudEntry | None, stored: Mapping[str, CloudEntry] | None,
                 code_hash: str | None) -> CloudEntry | None:
    """The entry a download uses: the version made by ``code_hash`` when the index has
    it, else the latest (the ``.luisy.hash`` entry)."""
    version = (stored or {}).get(code_hash) if code_hash is not None else None
    return version if version is not None else latest

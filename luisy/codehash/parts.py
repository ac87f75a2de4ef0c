"""What a task's code hash is made of, and why two hashes differ.

A :class:`HashParts` record is kept beside each recorded hash. Comparing the record of
the hash an output was made with to the current one names the reason a task reruns:
its own class changed, a same-package helper or constant changed (which one, in which
file), an external package version changed (from -> to), or an upstream task reruns.
Pure: no IO.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .collect import CodePart

OWN_CODE = "code"
HELPER = "helper"
PACKAGE = "package"
UPSTREAM = "upstream"
NO_RECORD = "no-record"
REASON_KINDS = (OWN_CODE, HELPER, PACKAGE, UPSTREAM, NO_RECORD)


@dataclass(frozen=True)
class HashParts:
    """One task instance's hash input: its class, the same-package code it uses, the
    external package versions, and its upstream tasks' hashes (by task id)."""

    task: CodePart
    code: tuple[CodePart, ...] = ()
    packages: tuple[str, ...] = ()
    upstream: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``from_json`` reads it back)."""
        return {"task": _part_json(self.task), "code": [_part_json(p) for p in self.code],
                "packages": list(self.packages), "upstream": dict(self.upstream)}

    @classmethod
    def from_json(cls, doc: object) -> HashParts:
        """Read a record written by ``to_json``; ValueError when it is malformed."""
        if not isinstance(doc, Mapping):
            raise ValueError("hash parts are not an object")
        packages, upstream, code = doc.get("packages", []), doc.get("upstream", {}), doc.get("code", [])
        if not (isinstance(packages, list) and all(isinstance(p, str) for p in packages)):
            raise ValueError("hash parts: packages must be a list of strings")
        if not (isinstance(upstream, Mapping) and all(isinstance(v, str) for v in upstream.values())):
            raise ValueError("hash parts: upstream must map task ids to hashes")
        if not isinstance(code, list):
            raise ValueError("hash parts: code must be a list")
        return cls(_part_from(doc.get("task")), tuple(_part_from(p) for p in code), tuple(packages),
                   tuple(sorted(upstream.items())))


def _part_json(part: CodePart) -> dict[str, str]:
    return {"name": part.name, "kind": part.kind, "file": part.file, "digest": part.digest}


def _part_from(doc: object) -> CodePart:
    fields = ("name", "kind", "file", "digest")
    if not isinstance(doc, Mapping) or not all(isinstance(doc.get(f), str) for f in fields):
        raise ValueError("hash parts: a code part needs name, kind, file and digest")
    return CodePart(*(doc[f] for f in fields))


@dataclass(frozen=True)
class Reason:
    """One reason a task reruns: ``kind`` (one of REASON_KINDS), the thing it names
    (a class, function, constant, package or upstream task) and a human line."""

    kind: str
    subject: str
    text: str

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "subject": self.subject, "text": self.text}


def _package_versions(entries: Sequence[str]) -> dict[str, str]:
    """``dist -> version`` from ``dist==version`` (or ``dist<parent==version``) entries."""
    out: dict[str, str] = {}
    for entry in entries:
        name, _, version = entry.partition("==")
        out[name.split("<", 1)[0]] = version
    return out


def explain(old: HashParts | None, new: HashParts, *,
            name_of: Callable[[str], str | None] | None = None) -> list[Reason]:
    """Why a task whose output was made with ``old`` differs under ``new`` (empty when
    nothing in the parts differs). ``old`` None: no record of how it was made.
    ``name_of``: a readable name for an upstream task id (the id when it gives None)."""
    if old is None:
        return [Reason(NO_RECORD, new.task.name,
                       f"no record of the code its output was made with ({new.task.name})")]
    reasons: list[Reason] = []
    if old.task.digest != new.task.digest or old.task.name != new.task.name:
        reasons.append(Reason(OWN_CODE, new.task.name,
                              f"its own code changed: class {new.task.name} in {new.task.file}"))
    before = {p.name: p for p in old.code}
    after = {p.name: p for p in new.code}
    for name in sorted(before.keys() | after.keys()):
        was, now = before.get(name), after.get(name)
        if was is not None and now is not None:
            if was.digest == now.digest:
                continue
            part, how = now, "changed"
        elif now is not None:
            part, how = now, "is now used"
        else:
            part, how = before[name], "is no longer used"
        reasons.append(Reason(HELPER, name, f"same-package {part.kind} {name} in {part.file} {how}"))
    versions_before, versions_now = _package_versions(old.packages), _package_versions(new.packages)
    for dist in sorted(versions_before.keys() | versions_now.keys()):
        was_v, now_v = versions_before.get(dist), versions_now.get(dist)
        if was_v != now_v:
            reasons.append(Reason(PACKAGE, dist, f"package {dist} {was_v or '(not used)'} -> "
                                                 f"{now_v or '(not used)'}"))
    upstream_before, upstream_now = dict(old.upstream), dict(new.upstream)
    for task_id in sorted(upstream_before.keys() | upstream_now.keys()):
        if upstream_before.get(task_id) != upstream_now.get(task_id):
            what = ("reruns" if task_id in upstream_before else "is a new requirement"
                    ) if task_id in upstream_now else "is no longer required"
            shown = (name_of(task_id) if name_of else None) or task_id
            reasons.append(Reason(UPSTREAM, task_id, f"upstream task {shown} {what}"))
    return reasons

"""The ``.luisy.hash`` files: the local one (luisy 1.4.7 format) and the cloud one.

Local: a JSON object at ``<working_dir>/<project>/.luisy.hash`` mapping output keys
(``/project/interim/Task.pkl``) to the hash of the task that wrote the output.

Cloud: one JSON object per project at ``<project>/.luisy.hash`` in the store, output
key -> entry. luisy 1.4.7 wrote ``key -> code hash``; that form is accepted when
reading. Entries written by this luisy also name the content::

    "/proj/interim/X.pkl": {"hash": "<code hash>", "digest": "<xxh3-128>", "size": 123}
    "/proj/interim/Dir":   {"hash": "<code hash>", "size": 456,
                            "files": {"part-0.parquet": {"digest": "...", "size": 456}}}

:class:`CloudEntry` is the parsed form of one such value (also of each version in the
cloud versions index, see :mod:`luisy.versions`). The cloud ``.luisy.hash`` names the
latest upload of each output.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Set
from dataclasses import dataclass
from typing import Any

from luisy.codehash.parts import HashParts
from luisy.errors import CloudHashError, LuisyError
from luisy_sync.atomic import write_atomic
from luisy_sync.conventions import object_name
from luisy_sync.tree import FileEntry

HASH_FILE_NAME = ".luisy.hash"
PARTS_FILE_NAME = ".luisy.parts"
"""Beside the hash file: what each recorded hash is made of (to explain reruns)."""


def output_object(key: str) -> str:
    """Output key ``/proj/interim/X.pkl`` -> store object ``proj/interim/X.pkl``."""
    return object_name("", key.strip("/"))


def hash_object(project: str) -> str:
    """The store object holding ``project``'s cloud hash file."""
    return f"{project}/{HASH_FILE_NAME}"


def project_of(key: str) -> str:
    """The project folder of an output key."""
    return output_object(key).split("/", 1)[0]


@dataclass(frozen=True)
class FileInfo:
    """One file of an output: its name below the output (``""`` for a single-file
    output), its content digest (xxh3-128) and its size in bytes."""

    name: str
    digest: str
    size: int


@dataclass(frozen=True)
class CloudEntry:
    """One output's entry in the cloud ``.luisy.hash``.

    ``files``: the output's files (one named ``""`` for a single-file output);
    ``is_dir``: a directory output (None for a legacy entry); ``legacy``: a luisy 1.4.7
    ``key -> hash`` entry, which names no content.
    """

    code_hash: str
    files: tuple[FileInfo, ...] = ()
    is_dir: bool | None = None
    legacy: bool = False

    @property
    def size(self) -> int:
        """Total bytes of the files the entry names."""
        return sum(f.size for f in self.files)

    def is_current(self, code_hash: str | None, external: bool) -> bool:
        """Whether the entry was made by code ``code_hash`` (any code for external data)."""
        return external or (code_hash is not None and self.code_hash == code_hash)

    def objects(self, key: str) -> dict[str, FileEntry]:
        """Store object name -> expected content, for the content the entry names."""
        name = output_object(key)
        return {(f"{name}/{f.name}" if self.is_dir else name): FileEntry(f.size, f.digest)
                for f in self.files}

    @classmethod
    def describing(cls, code_hash: str, key: str, is_dir: bool,
                   objects: Mapping[str, FileEntry]) -> CloudEntry | None:
        """The entry for output ``key`` whose store objects (or local files, by object
        name) are among ``objects``; files without a digest are left out. None for a
        single-file output that is not in ``objects``."""
        name = output_object(key)
        if is_dir:
            head = name + "/"
            return cls(code_hash, tuple(FileInfo(n[len(head):], fe.digest, fe.size)
                                        for n, fe in sorted(objects.items())
                                        if n.startswith(head) and fe.digest is not None), True)
        fe = objects.get(name)
        if fe is None or fe.digest is None:
            return None
        return cls(code_hash, (FileInfo("", fe.digest, fe.size),), False)

    def to_json(self) -> str | dict[str, Any]:
        """The JSON value of the entry, in the shapes described in the module docstring."""
        if self.legacy:
            return self.code_hash
        if self.is_dir:
            return {"hash": self.code_hash,
                    "files": {f.name: {"digest": f.digest, "size": f.size} for f in self.files},
                    "size": self.size}
        only = self.files[0]
        return {"hash": self.code_hash, "digest": only.digest, "size": only.size}

    @classmethod
    def from_json(cls, value: Any) -> CloudEntry:
        """Parse one value; ValueError (a few words why) when it is malformed."""
        if isinstance(value, str):
            return cls(value, legacy=True)
        if not isinstance(value, dict) or not isinstance(value.get("hash"), str):
            raise ValueError("has no code hash")
        files = value.get("files")
        if files is not None:
            if not isinstance(files, dict) or not all(isinstance(k, str) and _file_info_ok(v)
                                                      for k, v in files.items()):
                raise ValueError("has a malformed file list")
            return cls(value["hash"], tuple(FileInfo(k, v["digest"], v["size"])
                                            for k, v in sorted(files.items())), True)
        if "digest" in value:
            if not _file_info_ok(value):
                raise ValueError("has a malformed digest or size")
            return cls(value["hash"], (FileInfo("", value["digest"], value["size"]),), False)
        return cls(value["hash"], legacy=True)


def _file_info_ok(info: Any) -> bool:
    return (isinstance(info, dict) and isinstance(info.get("digest"), str)
            and isinstance(info.get("size"), int) and not isinstance(info.get("size"), bool))


def parse_cloud_hash(doc: Mapping[str, Any] | None, where: str) -> dict[str, CloudEntry]:
    """The entries of a cloud hash document (``None`` = no file = no entries); a
    malformed document raises CloudHashError naming ``where``."""
    if doc is None:
        return {}
    if not isinstance(doc, Mapping):
        raise CloudHashError(where, f"top level is a {type(doc).__name__}, not an object")
    out: dict[str, CloudEntry] = {}
    for key, value in doc.items():
        try:
            out[key] = CloudEntry.from_json(value)
        except ValueError as exc:
            raise CloudHashError(where, f"entry {key!r} {exc}") from None
    return out


class HashFileError(LuisyError, ValueError):
    """The hash file exists but cannot be used."""


def hash_file_path(working_dir: str, project: str) -> str:
    """Where the hash file of ``project`` lives."""
    return os.path.join(working_dir, project, HASH_FILE_NAME)


def read_hash_file(path: str) -> dict[str, str]:
    """The mapping stored at ``path``; an absent file is an empty mapping."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        return {}
    try:
        data = json.loads(raw.decode("utf-8")) if raw.strip() else {}
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HashFileError(f"{path} is not valid JSON ({exc}); fix or delete it") from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise HashFileError(f"{path} must hold a JSON object of strings; fix or delete it")
    return data


def write_hash_file(path: str, hashes: Mapping[str, str]) -> None:
    """Replace the file at ``path`` with ``hashes`` in one atomic step."""
    data = json.dumps(dict(sorted(hashes.items())), indent=1).encode("utf-8")
    write_atomic(path, [data + b"\n"], fsync=True)


def read_projects(working_dir: str, projects: set[str]) -> dict[str, dict[str, str]]:
    """Stored hashes of each project."""
    return {p: read_hash_file(hash_file_path(working_dir, p)) for p in sorted(projects)}


def record_hashes(working_dir: str, hashes: Mapping[str, str]) -> None:
    """Merge ``key -> code hash`` into the local hash file of each key's project."""
    by_project: dict[str, dict[str, str]] = {}
    for key, value in hashes.items():
        by_project.setdefault(project_of(key), {})[key] = value
    for project, updates in sorted(by_project.items()):
        path = hash_file_path(working_dir, project)
        stored = read_hash_file(path)
        merged = {**stored, **updates}
        if merged != stored:
            write_hash_file(path, merged)



def parts_file_path(working_dir: str, project: str) -> str:
    """Where the hash parts of ``project``'s recorded hashes live (beside its hash file)."""
    return os.path.join(working_dir, project, PARTS_FILE_NAME)


def read_parts_file(path: str) -> dict[str, HashParts]:
    """Output key -> the parts of its recorded hash. The parts only explain a rerun, they
    never decide one: an absent or unreadable file, or a malformed entry, is no record."""
    try:
        with open(path, "rb") as fh:
            doc = json.loads(fh.read().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    if not isinstance(doc, dict):
        return {}
    out: dict[str, HashParts] = {}
    for key, value in doc.items():
        try:
            out[key] = HashParts.from_json(value)
        except ValueError:
            continue
    return out


def record_parts(working_dir: str, parts: Mapping[str, HashParts], drop: Set[str] = frozenset()) -> None:
    """Merge ``key -> parts`` into each project's parts file, removing the keys in ``drop``
    (outputs that are gone); a file is only rewritten when it changes."""
    projects = {project_of(k) for k in parts} | {project_of(k) for k in drop}
    for project in sorted(projects):
        path = parts_file_path(working_dir, project)
        stored = read_parts_file(path)
        merged = {k: v for k, v in stored.items() if k not in drop}
        merged.update({k: v for k, v in parts.items() if project_of(k) == project})
        if merged != stored and (merged or os.path.exists(path)):
            data = json.dumps({k: merged[k].to_json() for k in sorted(merged)}, separators=(",", ":"))
            write_atomic(path, [data.encode("utf-8") + b"\n"], fsync=True)

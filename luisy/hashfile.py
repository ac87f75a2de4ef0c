"""The per-project ``.luisy.hash`` file (luisy 1.4.7 format).

A JSON object at ``<working_dir>/<project>/.luisy.hash`` mapping output keys
(``/project/interim/Task.pkl``) to the hash of the task that wrote the output.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from luisy_sync.atomic import write_atomic

HASH_FILE_NAME = ".luisy.hash"


class HashFileError(ValueError):
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


def merge_updates(
    stored: Mapping[str, str], updates: Mapping[str, str], drop: set[str] = frozenset()
) -> dict[str, str]:
    """``stored`` with ``updates`` applied and keys in ``drop`` removed."""
    merged = {k: v for k, v in stored.items() if k not in drop}
    merged.update(updates)
    return merged

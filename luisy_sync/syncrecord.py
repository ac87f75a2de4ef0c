"""The sync record: which content each file of a directory had when it last matched a
store (it was pulled, found identical, or pushed).

One small JSON file per directory, kept outside it (so a pull adds nothing but the
pulled files): ``$XDG_STATE_HOME/luisy_sync/synced/<hash of the directory's real
path>.json`` (``~/.local/state/...`` when XDG_STATE_HOME is unset), private (0600 in a
0700 directory)::

    {"format": "luisy-sync-synced/1", "dir": "/abs/dest", "files": {"a/b.csv": "<xxh3>"}}

A pull compares each local file it would replace with it: unchanged since it last
matched the store means it may be replaced by a newer version; anything else is a local
edit the pull keeps unless forced (see ``plan.pull_conflicts``). The record is merged
with what is on disk just before each atomic write, so concurrent pulls and pushes keep
each other's entries. Losing it (another machine, a moved directory) only errs on the
safe side: differing local files then count as conflicts.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Mapping

import xxhash

from luisy_sync.atomic import write_atomic

log = logging.getLogger(__name__)

_FORMAT = "luisy-sync-synced/1"


def record_path(dest: str) -> Path:
    """Where the sync record of the directory ``dest`` lives."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    key = xxhash.xxh3_64_hexdigest(os.path.realpath(dest).encode("utf-8", "surrogateescape"))
    return Path(base) / "luisy_sync" / "synced" / f"{key}.json"


def read_sync_record(dest: str) -> dict[str, str]:
    """path -> digest each file of ``dest`` had when it last matched a store (empty when
    unknown).

    An unreadable record counts as none (with a warning): every differing local file is
    then a conflict, which errs on the side of keeping local data."""
    path = record_path(dest)
    try:
        doc = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        log.warning("ignoring the unreadable sync record %s (%s)", path, type(exc).__name__)
        return {}
    files = doc.get("files") if isinstance(doc, dict) and doc.get("format") == _FORMAT else None
    if not isinstance(files, dict):
        log.warning("ignoring the sync record %s: it is not a %s document", path, _FORMAT)
        return {}
    return {p: d for p, d in files.items() if isinstance(p, str) and isinstance(d, str)}


def record_synced(dest: str, updates: Mapping[str, str]) -> None:
    """Merge ``updates`` (path -> digest that file of ``dest`` now shares with the store)
    into the record of ``dest`` (no write when nothing changes).

    A record that cannot be written only costs a warning (the sync itself succeeded)."""
    if not updates:
        return
    final = record_path(dest)
    files = read_sync_record(dest)
    if all(files.get(p) == d for p, d in updates.items()):
        return
    files.update(updates)
    doc = {"format": _FORMAT, "dir": os.path.realpath(dest), "files": dict(sorted(files.items()))}
    try:
        final.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(str(final), [json.dumps(doc, separators=(",", ":")).encode("utf-8")], mode=0o600)
    except OSError as exc:
        log.warning("could not write the sync record %s (%s); the next pull into %s will treat "
                    "changed files as conflicts", final, exc.strerror or exc, dest)

"""The listing of a LocalStore: a walk of its directory joined with its index rows, in
this process (``list_objects``) or, for a large store, in a helper process
(``list_large_in_helper``).

A listing is CPU work for the interpreter: a stat and a few objects per file, ~11 us
per object. A push of a whole directory walks its source directory too, the same kind
of work, and two such walks in threads of one process only hand the interpreter lock
back and forth (a no-op push of 100k files: 5.1 s overlapped, 3.6 s one after the
other). A helper process has an interpreter of its own, so on a second core the store's
listing and the source's walk run at the same time. Starting the helper (an interpreter
importing only the listing's modules) costs ~0.12 s of CPU on that other core, and this
process still reads its output and builds the ObjectInfo values (~1.7 us per object):
with the helper, a no-op push of 10k files took as long as without it, one of 30k files
0.3 s less. So only a store with at least ``HELPER_FROM`` objects below the prefix is
listed by a helper.

The helper runs ``listed_objects`` on the same index and sends the plain values back
as one ``marshal`` document on its stdout. Whatever goes wrong with it (no interpreter
to start, an error in the listing, output cut short) makes ``list_in_helper`` return
None, and the caller lists in this process, where an error is raised as usual.
"""

from __future__ import annotations

import logging
import marshal
import os
import subprocess
import sys
from operator import itemgetter
from typing import Sequence

from luisy_sync.errors import StoreError
from luisy_sync.stores.base import ObjectInfo
from luisy_sync.stores.local_files import Listed, info_of_listed, listed_of
from luisy_sync.stores.local_index import ObjectIndex
from luisy_sync.stores.local_paths import walk

log = logging.getLogger(__name__)

HELPER_FROM = 25_000
"""Index rows below a prefix from which its listing pays for a helper process."""

MARSHAL_VERSION = 2
"""Without back-references (version 3 and later): 3-4x faster to write, as fast to read."""

_BY_NAME = itemgetter(0)
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
"""This luisy_sync package's directory: the helper imports its modules from there."""
_HELPER = """\
import os, sys, types
package = types.ModuleType("luisy_sync")
package.__path__ = [sys.argv[1]]
sys.modules["luisy_sync"] = package
from luisy_sync.stores.local_listing import main
main(sys.argv[2:])
os._exit(0)
"""
"""The helper's program. It registers the package without running its ``__init__`` (which
imports the whole API, 0.15 s), then lists; ``os._exit``: no interpreter teardown."""


def _folder(prefix: str) -> str:
    """The directory part of ``prefix`` (with its slash): the index rows a listing reads."""
    base = prefix.rpartition("/")[0]
    return base + "/" if base else ""


def listed_objects(root: str, index: ObjectIndex, prefix: str) -> list[Listed]:
    """The plain values of every object of the store at ``root`` whose name starts with
    ``prefix``, sorted by name (the root exists)."""
    found = walk(root, prefix)
    rows = index.rows(_folder(prefix))
    lookup = index.lookup
    out = [listed_of(name, st, lookup(rows, name, st)) for name, st in found]
    out.sort(key=_BY_NAME)
    return out


def list_objects(root: str, index: ObjectIndex, prefix: str) -> list[ObjectInfo]:
    """``listed_objects`` as ObjectInfo values."""
    return [info_of_listed(item) for item in listed_objects(root, index, prefix)]


def list_large_in_helper(root: str, index: ObjectIndex, prefix: str) -> list[ObjectInfo] | None:
    """``list_objects`` run in a helper process when the store holds at least
    ``HELPER_FROM`` objects below ``prefix`` (blocks until it ends); None when it holds
    fewer, or the helper or the count failed."""
    try:
        if not index.holds_at_least(_folder(prefix), HELPER_FROM):
            return None
    except StoreError as exc:
        log.debug("listing %s in this process: %s", root, exc)
        return None
    return list_in_helper(root, index.book, prefix)


def list_in_helper(root: str, book: str, prefix: str) -> list[ObjectInfo] | None:
    """``list_objects`` run in a helper process (blocks until it ends); None when it failed."""
    # -P: nothing in the working directory shadows a module the helper imports
    command = [sys.executable, "-P", "-c", _HELPER, _PACKAGE, root, book, prefix]
    try:
        done = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, check=False)
    except (OSError, ValueError) as exc:  # no interpreter to start (embedded, frozen)
        log.debug("listing %s in this process: no helper process (%s)", root, exc)
        return None
    if done.returncode != 0:
        last = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        log.debug("listing %s in this process: the helper failed (%s)", root, last[0])
        return None
    try:
        return [info_of_listed(item) for item in marshal.loads(done.stdout)]
    except (EOFError, ValueError, TypeError) as exc:
        log.debug("listing %s in this process: unreadable helper output (%s)", root, exc)
        return None


def main(argv: Sequence[str]) -> None:
    """The helper's body: ``argv`` is ROOT BOOK PREFIX; the listing goes to stdout."""
    root, book, prefix = argv
    sys.stdout.buffer.write(marshal.dumps(listed_objects(root, ObjectIndex(book), prefix), MARSHAL_VERSION))
    sys.stdout.buffer.flush()

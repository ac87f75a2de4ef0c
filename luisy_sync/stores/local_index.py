"""The object index of a LocalStore: one sqlite database beside the objects.

``<root>/.luisy-store/index.db`` holds one row per written content file: the object's
metadata (digest) and ETag, keyed by (name, inode) and checked against the file's
(size, mtime_ns). Only the row matching the file now at the name counts, so metadata
never describes content that is not there (someone replaced the file by hand). A copy
(a hard link) has a row of its own, under its own name, for the shared inode.

A write commits its row (for the inode of its temp file) *before* renaming the file
into place, so an object is never visible without its metadata, not even after a
crash; concurrent writers of one name each have their row, and whichever rename lands
last finds its own. Rows of one process are committed together (group commit: the
thread that takes the writer lock commits everything queued), rows of other processes
wait on sqlite's own lock. No lock files, no sidecar per object. Rows of a name that
no longer match its file are pruned once they are an hour old (a rename never takes
that long). Conditional writes check their ETag and rename inside one transaction, so
a compare-and-replace is atomic across processes. Readers write nothing (rollback
journal, not WAL): a dry run leaves the store untouched, and a read-only store can be
read. The database is synced to disk only when the store's ``fsync`` is on, like the
objects themselves.

Stores of the previous layout (a JSON sidecar per object in ``.luisy-store/meta/``)
are upgraded in place the first time they are opened: the sidecars become rows.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence, TypeVar

from luisy_sync.errors import StoreError
from luisy_sync.stores.base import DIGEST_KEY

T = TypeVar("T")

INDEX_NAME = "index.db"
_LEGACY_DIRS = ("meta", "locks")
_SCHEMA = "1"
_BUSY_MS = 60_000
STALE_ROW_NS = 3600 * 10 ** 9
"""Rows of a name that do not match its file are kept this long (a rename in flight)."""

Row = tuple[int, int, int, str, str | None, str | None]
"""(size, mtime_ns, inode, etag, digest, other metadata as JSON or None)."""
_COLUMNS = "size, mtime_ns, inode, etag, digest, extra"
_INSERT = f"INSERT OR REPLACE INTO objects(name, {_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
_PRUNE = "DELETE FROM objects WHERE name = ? AND inode != ? AND mtime_ns < ?"


def _signed(inode: int) -> int:
    return inode - 2 ** 64 if inode >= 2 ** 63 else inode


def stat_matches(row: Row | None, st: os.stat_result) -> bool:
    """True when ``row`` describes the file with stat ``st``."""
    return (row is not None and row[0] == st.st_size and row[1] == st.st_mtime_ns
            and row[2] == _signed(st.st_ino))


def row_for(st: os.stat_result, etag: str, digest: str | None, extra: dict[str, str]) -> Row:
    """The row describing a file with stat ``st``."""
    return (st.st_size, st.st_mtime_ns, _signed(st.st_ino), etag, digest,
            json.dumps(extra, sort_keys=True) if extra else None)


def _names_from(prefix: str) -> tuple[str, tuple[str, ...]]:
    """The WHERE clause (and its arguments) selecting the names that start with ``prefix``."""
    return (" WHERE name >= ? AND name < ?", (prefix, prefix + "\U0010ffff")) if prefix else ("", ())


@dataclass(slots=True)
class Change:
    """One queued change of the rows of ``name``: insert ``row`` (if any), drop the row
    of inode ``drop`` (a file just removed), prune stale rows except ``keep``'s (the
    inode of the file at the name now)."""

    name: str
    row: Row | None = None
    drop: int | None = None
    keep: int | None = None
    done: bool = False
    error: BaseException | None = None


Lookup = Callable[[str, os.stat_result], Row | None]
"""``lookup(name, stat)``: the row of that file (inside a transaction)."""


class ObjectIndex:
    """The rows of one store (see the module docstring); safe to use from many threads."""

    def __init__(self, book: str, *, fsync: bool = False):
        self.book = book
        self.fsync = fsync
        self.path = os.path.join(book, INDEX_NAME)
        self._writer = threading.Lock()   # held while one thread commits
        self._queue_lock = threading.Lock()
        self._queue: list[Change] = []
        self._read_lock = threading.Lock()
        self._conns: dict[str, sqlite3.Connection] = {}
        self._pid = os.getpid()

    # -- connections -------------------------------------------------------------------

    def _conn(self, role: str) -> sqlite3.Connection:
        if self._pid != os.getpid():  # forked: never use the parent's connections
            self._conns, self._pid = {}, os.getpid()
        conn = self._conns.get(role)
        if conn is None:
            conn = self._conns[role] = self._open(role)
        return conn

    def _open(self, role: str) -> sqlite3.Connection:
        setup = role == "write" or not os.path.exists(self.path) or self._legacy()
        if setup:
            os.makedirs(self.book, exist_ok=True)
        try:
            conn = sqlite3.connect(self.path, timeout=_BUSY_MS / 1000, check_same_thread=False,
                                   isolation_level=None)
        except sqlite3.Error as exc:
            raise self._unusable(exc) from None
        try:
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_MS}")
            conn.execute("PRAGMA journal_mode = TRUNCATE")
            conn.execute(f"PRAGMA synchronous = {'FULL' if self.fsync else 'OFF'}")
            if setup:
                conn.execute("BEGIN IMMEDIATE")  # readers see no tables or all of them
                conn.execute("CREATE TABLE IF NOT EXISTS objects(name TEXT NOT NULL, inode INTEGER NOT NULL,"
                             " size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, etag TEXT NOT NULL,"
                             " digest TEXT, extra TEXT, PRIMARY KEY(name, inode)) WITHOUT ROWID")
                conn.execute("CREATE TABLE IF NOT EXISTS info(key TEXT PRIMARY KEY, value TEXT)")
                conn.execute("INSERT OR IGNORE INTO info(key, value) VALUES ('schema', ?)", (_SCHEMA,))
                conn.execute("COMMIT")
                if self._legacy():
                    self._upgrade(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise self._unusable(exc) from None
        except BaseException:
            conn.close()
            raise
        return conn

    def _legacy(self) -> bool:
        return any(os.path.isdir(os.path.join(self.book, d)) for d in _LEGACY_DIRS)

    def _unusable(self, exc: sqlite3.Error) -> StoreError:
        return self._disk_full(exc) or StoreError(f"local store index {self.path} is unusable ({exc}); "
                                                  "move it away and push again to rebuild it")

    def _disk_full(self, exc: sqlite3.Error) -> StoreError | None:
        """The one-line error for a full disk (SQLITE_FULL), None for any other error."""
        if getattr(exc, "sqlite_errorcode", 0) & 0xFF != sqlite3.SQLITE_FULL:
            return None
        return StoreError(f"local store index {self.path}: No space left on device ({exc}); "
                          "free some space and retry")

    def close(self) -> None:
        """Close this process's connections."""
        if self._pid == os.getpid():
            for conn in self._conns.values():
                conn.close()
        self._conns = {}

    # -- reads ---------------------------------------------------------------------------

    def exists(self) -> bool:
        """True when the index (or a store of the old layout to upgrade) is there."""
        return os.path.exists(self.path) or self._legacy()

    def get(self, name: str, st: os.stat_result) -> Row | None:
        """The row describing the file ``name`` with stat ``st``, if any."""
        if not self.exists():
            return None
        with self._read_lock:
            try:
                return _fetch(self._conn("read"), name, st)
            except sqlite3.Error as exc:
                return self._read_failed(exc, None)

    def rows(self, prefix: str = "") -> dict[tuple[str, int], Row]:
        """Every row whose name starts with ``prefix``, keyed by (name, inode)."""
        if not self.exists():
            return {}
        where, args = _names_from(prefix)
        with self._read_lock:
            try:
                return {(r[0], r[3]): r[1:] for r in self._conn("read").execute(
                    f"SELECT name, {_COLUMNS} FROM objects{where}", args)}
            except sqlite3.Error as exc:
                return self._read_failed(exc, {})

    def holds_at_least(self, prefix: str, count: int) -> bool:
        """Whether at least ``count`` (> 0) rows have a name starting with ``prefix`` (it
        stops counting there)."""
        if not self.exists():
            return False
        where, args = _names_from(prefix)
        with self._read_lock:
            try:
                found = self._conn("read").execute(f"SELECT 1 FROM objects{where} LIMIT 1 OFFSET ?",
                                                   (*args, count - 1)).fetchone()
            except sqlite3.Error as exc:
                return self._read_failed(exc, False)
        return found is not None

    def get_many(self, files: Sequence[tuple[str, os.stat_result]]) -> list[Row | None]:
        """The rows describing many files (name, stat), in one read per 500 names."""
        if not files or not self.exists():
            return [None] * len(files)
        names = sorted({name for name, _ in files})
        found: dict[tuple[str, int], Row] = {}
        with self._read_lock:
            try:
                conn = self._conn("read")
                for i in range(0, len(names), 500):
                    chunk = names[i:i + 500]
                    sql = (f"SELECT name, {_COLUMNS} FROM objects "
                           f"WHERE name IN ({', '.join('?' * len(chunk))})")
                    found.update({(r[0], r[3]): r[1:] for r in conn.execute(sql, chunk)})
            except sqlite3.Error as exc:
                return self._read_failed(exc, [None] * len(files))
        return [self.lookup(found, name, st) for name, st in files]

    def _read_failed(self, exc: sqlite3.Error, empty: T) -> T:
        """An index another process is creating right now has no rows yet; other errors raise."""
        if isinstance(exc, sqlite3.OperationalError) and not self._has_table():
            return empty
        raise self._failed(exc) from None

    def _has_table(self) -> bool:
        """Whether the index has its table yet (True when that cannot be told)."""
        try:
            found = self._conn("read").execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'objects'").fetchone()
        except sqlite3.Error:
            return True
        return found is not None

    @staticmethod
    def lookup(rows: dict[tuple[str, int], Row], name: str, st: os.stat_result) -> Row | None:
        """The row of ``rows`` describing the file ``name`` with stat ``st``."""
        row = rows.get((name, _signed(st.st_ino)))
        return row if stat_matches(row, st) else None

    # -- writes --------------------------------------------------------------------------

    def apply(self, changes: Sequence[Change]) -> None:
        """Commit ``changes`` (in one transaction with other threads' queued changes).

        On failure every change of the batch gets ``error`` set (nothing was changed).
        """
        with self._queue_lock:
            self._queue.extend(changes)
        with self._writer:
            if all(c.done for c in changes):
                return  # another thread committed ours along with its own
            with self._queue_lock:
                batch, self._queue = self._queue, []
            try:
                self._transaction(lambda conn: self._write(conn, batch))
            except StoreError as exc:
                for change in batch:
                    change.error = exc
            finally:
                for change in batch:
                    change.done = True

    def exclusive(self, fn: Callable[[Lookup, Callable[[Change], None]], T]) -> T:
        """``fn(lookup, record)`` inside one write transaction: no other writer of this
        store, in any process, commits meanwhile (for compare-and-replace)."""
        with self._writer:
            return self._transaction(lambda conn: fn(
                lambda name, st: _fetch(conn, name, st), lambda c: self._write(conn, [c])))

    def _transaction(self, body: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._conn("write")
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._failed(exc) from None
        try:
            result = body(conn)
            conn.execute("COMMIT")
            return result
        except BaseException as exc:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            if isinstance(exc, sqlite3.Error):
                raise self._failed(exc) from None
            raise

    def _failed(self, exc: sqlite3.Error) -> StoreError:
        return self._disk_full(exc) or StoreError(f"local store index {self.path}: {exc}; "
                                                  "check the disk and retry")

    @staticmethod
    def _write(conn: sqlite3.Connection, batch: Iterable[Change]) -> None:
        cutoff = time.time_ns() - STALE_ROW_NS
        for change in batch:
            keep = _signed(change.keep) if change.keep is not None else None
            conn.execute(_PRUNE, (change.name, keep if keep is not None else 0, cutoff))
            if change.drop is not None:
                conn.execute("DELETE FROM objects WHERE name = ? AND inode = ?",
                             (change.name, _signed(change.drop)))
            if change.row is not None:
                conn.execute(_INSERT, (change.name, *change.row))

    # -- the old layout ------------------------------------------------------------------

    def _upgrade(self, conn: sqlite3.Connection) -> None:
        """Import the JSON sidecars of a store of the old layout, then remove them."""
        meta = os.path.join(self.book, "meta")
        conn.execute("BEGIN IMMEDIATE")
        try:
            for directory, _, files in os.walk(meta):
                for fname in files:
                    if not fname.endswith(".json"):
                        continue
                    full = os.path.join(directory, fname)
                    name = os.path.relpath(full, meta)[:-len(".json")].replace(os.sep, "/")
                    row = _legacy_row(full)
                    if row is not None:
                        conn.execute(_INSERT.replace("OR REPLACE", "OR IGNORE"), (name, *row))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        for legacy in _LEGACY_DIRS:
            shutil.rmtree(os.path.join(self.book, legacy), ignore_errors=True)


def _fetch(conn: sqlite3.Connection, name: str, st: os.stat_result) -> Row | None:
    found = conn.execute(f"SELECT {_COLUMNS} FROM objects WHERE name = ? AND inode = ?",
                         (name, _signed(st.st_ino))).fetchone()
    row: Row | None = None if found is None else tuple(found)
    return row if stat_matches(row, st) else None


def _legacy_row(path: str) -> Row | None:
    """The row for one old-layout sidecar, None if it is unreadable."""
    try:
        with open(path, "rb") as fh:
            doc: Any = json.loads(fh.read())
        size, mtime_ns, inode = (int(v) for v in doc["stat"])
        meta = {str(k): str(v) for k, v in dict(doc["metadata"]).items()}
        etag = str(doc["etag"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    digest = meta.pop(DIGEST_KEY, None)
    return (size, mtime_ns, _signed(inode), etag, digest, json.dumps(meta, sort_keys=True) if meta else None)

"""A persistent stat cache: (path, size, mtime_ns, ctime_ns, inode, dev) -> content digest.

A file whose size, modification time, status-change time, inode and device are all
unchanged since it was hashed is not read again. ctime is part of the key because a file
rewritten in place with its old size and mtime restored (``cp -p``, ``touch -r``,
``rsync -t --inplace``, tar) keeps size, mtime and inode but not ctime, which no user
tool can set back. The cache is one SQLite file (WAL mode, busy timeout), shared safely by
several processes. A process reads the rows below a directory into a dict the first time
it asks about that directory (one range read of the primary key, so the cost follows the
tree synced, not everything the cache ever saw) and writes new rows back in one
transaction per ``flush()``.

Racy entries are not trusted: a digest is only reused when the file's mtime is older than
the moment it was hashed by at least ``RACY_WINDOW_NS`` and its ctime by at least
``CTIME_RACY_WINDOW_NS``, so a file rewritten with the same size (and its mtime put back)
within one timestamp tick of being hashed is hashed again.

The cache file is created 0600 (its directory 0700): it lists the paths of your files.

A cache file that cannot be opened or read (corrupt, unwritable) never breaks a sync:
a warning is logged, the file is rebuilt or the cache degrades to a no-op.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Iterator, Sequence, Union

from luisy_sync.paths import is_utf8

log = logging.getLogger(__name__)

CACHE_ENV = "LUISY_SYNC_CACHE"
"""Environment variable: the cache file to use, or ``off`` to disable the cache."""

RACY_WINDOW_NS = 2_000_000_000
"""Entries whose file mtime is this close to (or after) the hashing time are re-hashed."""

CTIME_RACY_WINDOW_NS = 100_000_000
"""The same for ctime: longer than any file system's ctime tick (ctime cannot be set back,
so a file copied with ``cp -p`` becomes trustworthy this long after it was written)."""

_SCHEMA_VERSION = "2"
_FLUSH_EVERY = 20_000
StatKey = tuple[int, int, int, int, int]
"""What identifies one version of a file: (size, mtime_ns, ctime_ns, inode, dev)."""
_Row = tuple[str, int, int, int, int, int, str, int]  # path, StatKey (signed), digest, hashed_ns
_SELECT = "SELECT path, size, mtime_ns, ctime_ns, inode, dev, digest, hashed_ns FROM files"
_INSERT = ("INSERT OR REPLACE INTO files(path, size, mtime_ns, ctime_ns, inode, dev, digest, hashed_ns)"
           " VALUES (?, ?, ?, ?, ?, ?, ?, ?)")


def default_cache_path() -> Path:
    """``$LUISY_SYNC_CACHE``, else ``$XDG_CACHE_HOME/luisy_sync/statcache.sqlite``
    (``~/.cache/...`` when XDG_CACHE_HOME is unset)."""
    override = os.environ.get(CACHE_ENV)
    if override and override.lower() not in ("off", "none", "0"):
        return Path(override).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "luisy_sync" / "statcache.sqlite"


def open_default_cache() -> "StatCache | NullStatCache":
    """The cache at ``default_cache_path()``, or a NullStatCache when
    ``LUISY_SYNC_CACHE=off``."""
    if os.environ.get(CACHE_ENV, "").lower() in ("off", "none", "0"):
        return NullStatCache()
    return StatCache(default_cache_path())


CacheArg = Union["StatCache", "NullStatCache", bool, None]
"""What push and pull take as ``cache=``: a cache, True/None for the default one, False for none."""


@contextlib.contextmanager
def resolved_cache(cache: CacheArg) -> Iterator["StatCache | NullStatCache"]:
    """None/True: the default stat cache (closed on exit); False: none; else ``cache`` as given."""
    if cache is None or cache is True:
        opened = open_default_cache()
        try:
            yield opened
        finally:
            opened.close()
    elif cache is False:
        yield NullStatCache()
    else:
        yield cache


_HALF, _FULL = 1 << 63, 1 << 64


def _signed(number: int) -> int:
    """Fold a 64-bit unsigned inode or device number into SQLite's signed INTEGER range."""
    return number - _FULL if number >= _HALF else number


def _dir_prefix(directory: str) -> str:
    """What every path below ``directory`` starts with (it, ending in a separator)."""
    return directory if directory.endswith(os.sep) else directory + os.sep


def stat_key(st: os.stat_result) -> StatKey:
    """The cache key of a file's stat: (size, mtime_ns, ctime_ns, inode, dev)."""
    ino, dev = st.st_ino, st.st_dev
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns,
            ino if ino < _HALF else ino - _FULL, dev if dev < _HALF else dev - _FULL)


class NullStatCache:
    """A cache that remembers nothing (same interface as StatCache)."""

    def get(self, path: str, key: StatKey) -> str | None:
        """Always None."""
        return None

    def get_many(self, items: Sequence[tuple[str, StatKey]], under: str | None = None) -> list[str | None]:
        """Always Nones."""
        return [None] * len(items)

    def put(self, path: str, key: StatKey, digest: str) -> None:
        """Ignored."""

    def forget_others(self, under: str, present: Sequence[str]) -> None:
        """Nothing to forget."""

    def flush(self) -> None:
        """Nothing to write."""

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> "NullStatCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StatCache:
    """The SQLite-backed stat cache at ``path`` (created on first use). Thread-safe."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._rows: dict[str, _Row] = {}
        self._loaded: dict[str, int] = {}  # directory prefixes read (ending in a separator;
        # "" is all) -> how many rows the file had there
        self._pending: dict[str, _Row] = {}
        self._disabled = False

    # -- public API -----------------------------------------------------------------
    def get(self, path: str, key: StatKey) -> str | None:
        """The digest recorded for ``path`` at exactly this ``stat_key``, else None."""
        return self.get_many([(path, key)], under=os.path.dirname(path))[0]

    def get_many(self, items: Sequence[tuple[str, StatKey]], under: str | None = None) -> list[str | None]:
        """``get`` of every ``(path, stat_key)`` pair, in order. ``under``: a directory
        every path is below (only its rows are read; None: every row)."""
        rows = self._rows_under(under)
        lookup = rows.get
        out: list[str | None] = []
        append = out.append
        for path, key in items:
            row = lookup(path)
            if row is None or row[1:6] != key:
                append(None)
            elif key[1] > row[7] - RACY_WINDOW_NS or key[2] > row[7] - CTIME_RACY_WINDOW_NS:
                append(None)
            else:
                append(row[6])
        return out

    def put(self, path: str, key: StatKey, digest: str) -> None:
        """Record a digest just computed for the file at ``stat_key`` (written at the next flush)."""
        row = (path, *key, digest, time.time_ns())
        with self._lock:
            self._forget_parent()
            self._rows[path] = row
            self._pending[path] = row
            if len(self._pending) >= _FLUSH_EVERY:
                self.flush()

    def forget_others(self, under: str, present: Sequence[str]) -> None:
        """Drop the rows below the directory ``under`` of every path but ``present`` (all
        the files there now, as a complete walk found them), so the cache does not keep
        files deleted or renamed since. Only done when the rows read there outnumber
        ``present``: with no more rows than files, the cache cannot have grown past the tree."""
        prefix = _dir_prefix(under)
        with self._lock:
            self._rows_under(under)
            if self._loaded.get(prefix, 0) <= len(present):
                return
            keep = set(present)
            gone = [path for path in self._rows if path.startswith(prefix) and path not in keep]
            for path in gone:
                del self._rows[path]
                self._pending.pop(path, None)
            self._loaded[prefix] = len(present)
            conn = self._connect()
            if conn is None or not gone:
                return
            try:
                with conn:
                    conn.executemany("DELETE FROM files WHERE path = ?", [(path,) for path in gone])
            except sqlite3.Error as exc:
                self._give_up(f"could not write to the stat cache {self.path} ({exc})")

    def flush(self) -> None:
        """Write pending rows in one transaction (a failure only logs a warning)."""
        with self._lock:
            if not self._pending:
                return
            pending, self._pending = self._pending, {}
            conn = self._connect()
            if conn is None:
                return
            rows = list(pending.values())
            try:
                with conn:
                    try:
                        conn.executemany(_INSERT, rows)
                    except UnicodeEncodeError:  # a path of undecodable bytes: not kept
                        conn.executemany(_INSERT, [row for row in rows if is_utf8(row[0])])
            except sqlite3.Error as exc:
                self._give_up(f"could not write to the stat cache {self.path} ({exc})")

    def close(self) -> None:
        """Flush and close the connection."""
        with self._lock:
            self.flush()
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def __enter__(self) -> "StatCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self._rows_under(None))

    # -- internals ----------------------------------------------------------------
    def _rows_under(self, under: str | None) -> dict[str, _Row]:
        """The rows known in memory, those below the directory ``under`` (every row when
        None) read first unless they were already (a row put since wins over the file's)."""
        prefix = "" if under is None else _dir_prefix(under)
        with self._lock:
            self._forget_parent()
            if any(prefix.startswith(done) for done in self._loaded):
                return self._rows
            conn = self._connect()
            if conn is not None:
                try:
                    if prefix:  # from the prefix up to its separator's successor: the paths below it
                        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
                        found = conn.execute(_SELECT + " WHERE path >= ? AND path < ?", (prefix, end))
                    else:
                        found = conn.execute(_SELECT)
                    loaded = {row[0]: row for row in found}
                    self._loaded[prefix] = len(loaded)
                    loaded.update(self._rows)  # a row put since wins over the file's
                    self._rows = loaded
                except sqlite3.DatabaseError as exc:
                    self._rebuild(f"stat cache {self.path} is unreadable ({exc})")
            self._loaded.setdefault(prefix, 0)
            return self._rows

    def _connect(self) -> sqlite3.Connection | None:
        """The open connection (reopened after a fork), or None when disabled."""
        if self._disabled:
            return None
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        self._forget_parent()
        try:
            self._conn = self._open()
        except sqlite3.DatabaseError as exc:
            return self._rebuild(f"stat cache {self.path} is unusable ({exc})")
        except OSError as exc:
            self._give_up(f"cannot create the stat cache {self.path} ({exc.strerror or exc})")
        return self._conn

    def _forget_parent(self) -> None:
        """In a forked child: drop the parent's connection (never to be touched) and rows."""
        if self._pid != os.getpid():
            self._conn, self._rows, self._loaded, self._pid = None, {}, {}, os.getpid()

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))  # private before SQLite
        conn = sqlite3.connect(self.path, timeout=10.0, check_same_thread=False,
                               isolation_level="DEFERRED")
        try:
            conn.execute("PRAGMA busy_timeout = 10000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            with conn:
                conn.execute("CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT)")
                version = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
                if version is not None and version[0] != _SCHEMA_VERSION:
                    conn.execute("DROP TABLE IF EXISTS files")
                conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('schema', ?)",
                             (_SCHEMA_VERSION,))
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS files(path TEXT PRIMARY KEY, size INTEGER NOT NULL,"
                    " mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL, inode INTEGER NOT NULL,"
                    " dev INTEGER NOT NULL, digest TEXT NOT NULL,"
                    " hashed_ns INTEGER NOT NULL) WITHOUT ROWID")
        except BaseException:
            conn.close()
            raise
        return conn

    def _rebuild(self, reason: str) -> sqlite3.Connection | None:
        """Replace an unusable cache file with an empty one."""
        log.warning("%s; rebuilding it", reason)
        if self._conn is not None:
            self._conn.close()
        self._conn = None
        try:
            for suffix in ("", "-wal", "-shm"):
                Path(str(self.path) + suffix).unlink(missing_ok=True)
            self._conn = self._open()
        except (sqlite3.Error, OSError) as exc:
            self._give_up(f"cannot rebuild the stat cache {self.path} ({exc})")
        return self._conn

    def _give_up(self, reason: str) -> None:
        log.warning("%s; continuing without a stat cache", reason)
        self._disabled = True
        if self._conn is not None:
            try:
                self._conn.close()
            except sqlite3.Error:
                pass
        self._conn = None

"""statcache: persistent (path, size, mtime_ns, ctime_ns, inode, dev) -> digest."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import time

import pytest

from luisy_sync.statcache import (CACHE_ENV, RACY_WINDOW_NS, NullStatCache, StatCache,
                                  default_cache_path, open_default_cache, stat_key)

D = "d" * 32
OLD = time.time_ns() - 10 * RACY_WINDOW_NS


def test_rows_persist_across_instances(tmp_path) -> None:
    path = tmp_path / "c" / "cache.sqlite"
    with StatCache(path) as cache:
        cache.put("/x", (3, OLD, OLD, 42, 7), D)
        assert cache.get("/x", (3, OLD, OLD, 42, 7)) == D  # visible before flushing
    with StatCache(path) as cache:
        assert cache.get("/x", (3, OLD, OLD, 42, 7)) == D
        assert len(cache) == 1


KEY = (3, OLD, OLD, 42, 7)


@pytest.mark.parametrize("changed", range(5), ids=["size", "mtime", "ctime", "inode", "dev"])
def test_any_stat_change_is_a_miss(tmp_path, changed: int) -> None:
    other = tuple(v + 1 if i == changed else v for i, v in enumerate(KEY))
    with StatCache(tmp_path / "c.sqlite") as cache:
        cache.put("/x", KEY, D)
        assert cache.get("/x", other) is None
        assert cache.get("/other", KEY) is None
        assert cache.get("/x", KEY) == D


def test_recent_ctime_is_not_trusted(tmp_path) -> None:
    with StatCache(tmp_path / "c.sqlite") as cache:
        cache.put("/x", (3, OLD, time.time_ns(), 1, 7), D)
        assert cache.get("/x", (3, OLD, time.time_ns(), 1, 7)) is None


def test_racy_entries_are_not_trusted(tmp_path) -> None:
    fresh = time.time_ns()
    with StatCache(tmp_path / "c.sqlite") as cache:
        cache.put("/x", (3, fresh, fresh, 1, 7), D)
        assert cache.get("/x", (3, fresh, fresh, 1, 7)) is None


def test_huge_inode_and_device_numbers_fit(tmp_path) -> None:
    st = os.stat_result((0o100600, (1 << 64) - 5, (1 << 64) - 9, 1, 0, 0, 1, 0, 0, 0,
                         0.0, 0.0, 0.0, OLD, OLD, OLD))
    with StatCache(tmp_path / "c.sqlite") as cache:
        cache.put("/x", stat_key(st), D)
    with StatCache(tmp_path / "c.sqlite") as cache:
        assert cache.get("/x", stat_key(st)) == D


def test_cache_file_is_private(tmp_path) -> None:
    path = tmp_path / "new" / "c.sqlite"
    with StatCache(path) as cache:
        cache.put("/x", KEY, D)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_corrupt_cache_is_rebuilt_with_a_warning(tmp_path, caplog) -> None:
    path = tmp_path / "c.sqlite"
    path.write_bytes(b"this is not sqlite" * 500)
    with StatCache(path) as cache:
        assert cache.get("/x", (1, OLD, OLD, 1, 7)) is None
        cache.put("/x", (1, OLD, OLD, 1, 7), D)
    assert "rebuilding" in caplog.text
    with StatCache(path) as cache:
        assert cache.get("/x", (1, OLD, OLD, 1, 7)) == D


def test_unusable_location_degrades_to_no_cache(tmp_path, caplog) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with StatCache(blocker / "sub" / "c.sqlite") as cache:
        cache.put("/x", (1, OLD, OLD, 1, 7), D)
        cache.flush()
        assert cache.get("/x", (1, OLD, OLD, 1, 7)) == D  # still answers from memory
    assert "without a stat cache" in caplog.text


def test_null_cache_remembers_nothing() -> None:
    with NullStatCache() as cache:
        cache.put("/x", (1, OLD, OLD, 1, 7), D)
        cache.flush()
        assert cache.get("/x", (1, OLD, OLD, 1, 7)) is None


def test_default_cache_path(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_path() == tmp_path / "luisy_sync" / "statcache.sqlite"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_path() == tmp_path / "home" / ".cache" / "luisy_sync" / "statcache.sqlite"
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "mine.sqlite"))
    assert default_cache_path() == tmp_path / "mine.sqlite"
    assert isinstance(open_default_cache(), StatCache)
    monkeypatch.setenv(CACHE_ENV, "off")
    assert isinstance(open_default_cache(), NullStatCache)


WRITER = """
import sys
from luisy_sync.statcache import StatCache
path, tag = sys.argv[1], sys.argv[2]
with StatCache(path) as cache:
    for rnd in range(20):
        for i in range(50):
            cache.put(f"/{tag}/{rnd}/{i}", (i, 1, 1, i, 7), "%032d" % i)
        cache.flush()
"""


def test_several_processes_write_one_cache(tmp_path) -> None:
    path = tmp_path / "shared.sqlite"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), f"p{n}"],
                              stderr=subprocess.PIPE) for n in range(4)]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
        assert b"Warning" not in err and b"warning" not in err
    with StatCache(path) as cache:
        assert len(cache) == 4 * 20 * 50


def _rewrite_digest(path, name: str, digest: str) -> None:
    """Change one row of the cache file behind a StatCache's back (as another process would)."""
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE files SET digest = ? WHERE path = ?", (digest, name))
    conn.close()


def test_rows_are_read_per_directory_when_first_asked_for(tmp_path) -> None:
    path = tmp_path / "c.sqlite"
    with StatCache(path) as cache:
        for name in ("/a/x", "/a/sub/y", "/b/y", "/ab/z"):
            cache.put(name, KEY, D)
    other = "e" * 32
    with StatCache(path) as cache:
        assert cache.get_many([("/a/x", KEY), ("/a/sub/y", KEY)], under="/a") == [D, D]
        # rows outside /a were not read yet: a change made meanwhile is what they answer
        _rewrite_digest(path, "/b/y", other)
        _rewrite_digest(path, "/ab/z", other)
        _rewrite_digest(path, "/a/x", other)
        assert cache.get("/b/y", KEY) == other
        assert cache.get_many([("/ab/z", KEY)], under="/ab/") == [other]
        assert cache.get("/a/x", KEY) == D  # /a was read once, before the change
        assert len(cache) == 4


def test_a_digest_put_wins_over_the_row_read_after_it(tmp_path) -> None:
    path = tmp_path / "c.sqlite"
    with StatCache(path) as cache:
        cache.put("/a/x", KEY, D)
    newer = "f" * 32
    with StatCache(path) as cache:
        cache.put("/a/x", KEY, newer)  # before anything below /a was read
        assert cache.get_many([("/a/x", KEY)], under="/a") == [newer]
    with StatCache(path) as cache:
        assert cache.get("/a/x", KEY) == newer


def test_a_path_of_undecodable_bytes_is_not_kept_and_breaks_nothing(tmp_path) -> None:
    path = tmp_path / "c.sqlite"
    bad = os.fsdecode(b"/a/bad\xff.txt")
    with StatCache(path) as cache:
        cache.put(bad, KEY, D)
        cache.put("/a/ok.txt", KEY, D)
        cache.flush()
        assert cache.get(bad, KEY) == D  # this process still knows it
    with StatCache(path) as cache:
        assert cache.get("/a/ok.txt", KEY) == D
        assert cache.get(bad, KEY) is None
        assert len(cache) == 1

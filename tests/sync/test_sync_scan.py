"""scan: local directories and store listings -> Trees."""

from __future__ import annotations

import importlib
import os
import time

import anyio
import pytest

from luisy_sync.errors import SyncError, UnsafePathError
from luisy_sync.hashing import hash_bytes
from luisy_sync.scan import (PathFilter, glob_to_regex, remote_tree, scan, tree_from_paths)
from luisy_sync.statcache import CTIME_RACY_WINDOW_NS, StatCache
from luisy_sync.stores.base import ObjectInfo
from luisy_sync.conventions import temp_name
from luisy_sync.tree import FileEntry

# the package re-exports the function ``scan``, which shadows the submodule attribute
scan_mod = importlib.import_module("luisy_sync.scan")


def make(root, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def age(*paths, seconds: float = 10) -> None:
    """Move files' mtimes into the past and wait out the ctime window, so the stat cache
    trusts them."""
    for path in paths:
        st = os.stat(path)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - int(seconds * 1e9)))
    time.sleep(CTIME_RACY_WINDOW_NS / 1e9)


async def test_scan_lists_files_with_sizes_and_digests(tmp_path) -> None:
    make(tmp_path, {"a.txt": b"hello", "d/e/f.bin": b"\x00" * 1000, "empty": b""})
    tree = await scan(tmp_path)
    assert list(tree) == ["a.txt", "d/e/f.bin", "empty"]
    assert tree.root == str(tmp_path)
    assert tree["a.txt"].size == 5 and tree["a.txt"].digest == hash_bytes(b"hello")
    assert tree["d/e/f.bin"].digest == hash_bytes(b"\x00" * 1000)
    assert tree["empty"].digest == hash_bytes(b"")
    assert tree["a.txt"].mtime_ns == os.stat(tmp_path / "a.txt").st_mtime_ns


async def test_scan_skips_temp_files_and_store_bookkeeping_and_says_so(tmp_path) -> None:
    ours = temp_name("f.csv")
    make(tmp_path, {"keep": b"1", "x.luisy-tmp-123": b"2", ".luisy-store/manifest.json": b"{}",
                    "sub/.luisy-store/m": b"3", "sub/ok": b"4", f"sub/{ours}": b"5"})
    left_out: list[str] = []
    tree = await scan(tmp_path, left_out=left_out)
    assert list(tree) == ["keep", "sub/.luisy-store/m", "sub/ok", "x.luisy-tmp-123"]
    assert sorted(left_out) == [".luisy-store/", f"sub/{ours}"]


async def test_scan_without_a_cache(tmp_path) -> None:
    make(tmp_path, {"a": b"1"})
    assert (await scan(tmp_path, cache=False))["a"].digest == hash_bytes(b"1")


async def test_scan_of_empty_directory_is_empty(tmp_path) -> None:
    tree = await scan(tmp_path)
    assert len(tree) == 0 and tree.root == str(tmp_path)


@pytest.mark.parametrize("what", ["missing", "file"])
async def test_scan_of_a_non_directory_fails_with_one_line(tmp_path, what: str) -> None:
    target = tmp_path / "x"
    if what == "file":
        target.write_bytes(b"")
    with pytest.raises(SyncError, match="cannot scan") as info:
        await scan(target)
    assert "\n" not in str(info.value)


GLOB_CASES = [
    ("*.csv", "a/b.csv", True), ("*.csv", "b.csv", True), ("*.csv", "b.csvx", False),
    ("a/*.csv", "a/b.csv", True), ("a/*.csv", "x/a/b.csv", False), ("a/*.csv", "a/c/b.csv", False),
    ("data/**/*.csv", "data/z.csv", True), ("data/**/*.csv", "data/x/y/z.csv", True),
    ("**/tmp", "tmp", True), ("**/tmp", "x/y/tmp", True), ("/top", "top", True),
    ("/top", "a/top", False), ("f?.txt", "f1.txt", True), ("f?.txt", "f/.txt", False),
    ("[!a]b", "cb", True), ("[!a]b", "ab", False), ("[]]x", "]x", True), ("[abc", "[abc", True),
    ("a.b", "axb", False), ("dir/", "dir", True),
]


@pytest.mark.parametrize(("pattern", "path", "matches"), GLOB_CASES,
                         ids=[f"{p}~{q}" for p, q, _ in GLOB_CASES])
def test_glob_to_regex(pattern: str, path: str, matches: bool) -> None:
    assert bool(glob_to_regex(pattern).fullmatch(path)) is matches


@pytest.mark.parametrize("pattern", ["", "  ", "/"])
def test_empty_glob_is_refused(pattern: str) -> None:
    with pytest.raises(ValueError):
        glob_to_regex(pattern)


FILTER_CASES = [
    ("no-patterns", None, None, ["a.csv", "d/b.csv", "d/c.txt", "logs/x.log"]),
    ("include-by-name", ["*.csv"], None, ["a.csv", "d/b.csv"]),
    ("include-directory", ["d"], None, ["d/b.csv", "d/c.txt"]),
    ("exclude-directory", None, ["logs"], ["a.csv", "d/b.csv", "d/c.txt"]),
    ("include-and-exclude", ["d/**"], ["*.txt"], ["d/b.csv"]),
    ("single-string", "*.log", None, ["logs/x.log"]),
]


@pytest.mark.parametrize(("include", "exclude", "expected"), [c[1:] for c in FILTER_CASES],
                         ids=[c[0] for c in FILTER_CASES])
async def test_scan_include_exclude(tmp_path, include, exclude, expected) -> None:
    make(tmp_path, {"a.csv": b"1", "d/b.csv": b"2", "d/c.txt": b"3", "logs/x.log": b"4"})
    assert list(await scan(tmp_path, include=include, exclude=exclude)) == expected


def test_excluded_directories_are_pruned() -> None:
    pfilter = PathFilter(exclude=["build"])
    assert pfilter.excludes_dir("build") and pfilter.excludes_dir("a/build")
    assert not pfilter.excludes_dir("builds")


async def test_symlinks_inside_root_are_followed(tmp_path) -> None:
    make(tmp_path, {"real/f": b"data"})
    os.symlink(tmp_path / "real", tmp_path / "alias")
    os.symlink(tmp_path / "real" / "f", tmp_path / "g")
    tree = await scan(tmp_path)
    assert list(tree) == ["alias/f", "g", "real/f"]
    assert tree["g"].digest == tree["alias/f"].digest == hash_bytes(b"data")


async def test_symlink_outside_root_is_refused_by_name(tmp_path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    make(tmp_path, {"root/ok": b"1", "outside/secret": b"2"})
    os.symlink(outside, root / "escape")
    with pytest.raises(UnsafePathError, match="'escape'") as info:
        await scan(root)
    assert "\n" not in str(info.value)
    tree = await scan(root, follow_symlinks=True)
    assert list(tree) == ["escape/secret", "ok"]


async def test_dangling_symlinks_and_loops_are_skipped(tmp_path, caplog) -> None:
    make(tmp_path, {"d/f": b"x"})
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling")
    os.symlink(tmp_path / "d", tmp_path / "d" / "loop")
    assert list(await scan(tmp_path)) == ["d/f"]
    assert "dangling" in caplog.text and "loop" in caplog.text


async def test_warm_cache_avoids_reading_files(tmp_path, monkeypatch) -> None:
    make(tmp_path, {f"f{i}": bytes([i]) * 100 for i in range(20)})
    age(*(tmp_path / f"f{i}" for i in range(20)))
    cache = StatCache(tmp_path.parent / f"{tmp_path.name}.sqlite")
    first = await scan(tmp_path, cache=cache)
    cache.close()

    def no_reading(*a, **k):
        raise AssertionError("a cached file was hashed again")

    monkeypatch.setattr(scan_mod, "hash_fileobj", no_reading)
    warm = StatCache(tmp_path.parent / f"{tmp_path.name}.sqlite")
    assert await scan(tmp_path, cache=warm) == first
    warm.close()


async def test_a_complete_scan_forgets_files_gone_since(tmp_path) -> None:
    root = tmp_path / "root"
    make(root, {f"d/f{i}": bytes([i]) for i in range(6)})
    make(tmp_path, {"elsewhere": b"x"})
    db = tmp_path / "cache.sqlite"
    with StatCache(db) as cache:
        await scan(root, cache=cache)
        cache.put(str(tmp_path / "elsewhere"), (1, 1, 1, 1, 1), "e" * 32)
    for i in range(4):
        (root / "d" / f"f{i}").unlink()
    with StatCache(db) as cache:
        await scan(root, cache=cache, include=["d/f5"])  # a filtered scan forgets nothing
    with StatCache(db) as cache:
        assert len(cache) == 7
    with StatCache(db) as cache:
        assert set(await scan(root, cache=cache)) == {"d/f4", "d/f5"}
    with StatCache(db) as cache:
        assert len(cache) == 3  # the two files left, and the row outside the root


async def test_changed_file_is_hashed_again_despite_cache(tmp_path) -> None:
    make(tmp_path, {"f": b"aaaa"})
    age(tmp_path / "f")
    cache = StatCache(tmp_path.parent / f"{tmp_path.name}.sqlite")
    assert (await scan(tmp_path, cache=cache))["f"].digest == hash_bytes(b"aaaa")
    (tmp_path / "f").write_bytes(b"bbbb")  # same size, new mtime
    assert (await scan(tmp_path, cache=cache))["f"].digest == hash_bytes(b"bbbb")
    cache.close()


async def test_many_files_hash_concurrently_under_a_limiter(tmp_path) -> None:
    files = {f"d{i % 7}/f{i}": os.urandom(i * 37) for i in range(300)}
    make(tmp_path, files)
    tree = await scan(tmp_path, hash_limiter=anyio.CapacityLimiter(3))
    assert {p: e.digest for p, e in tree.items()} == {p: hash_bytes(d) for p, d in files.items()}


async def test_unreadable_file_fails_with_one_line(tmp_path, monkeypatch) -> None:
    make(tmp_path, {"locked": b"x", "other": b"y"})

    def denied(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(scan_mod, "hash_fileobj", denied)
    with pytest.raises(SyncError, match="cannot read .*: Permission denied$") as info:
        await scan(tmp_path)
    assert "\n" not in str(info.value)


async def test_file_vanishing_before_hashing_is_left_out(tmp_path, monkeypatch) -> None:
    make(tmp_path, {"stays": b"1", "goes": b"2"})
    real_walk = scan_mod.walk_files

    def walk_then_delete(*args):
        found = real_walk(*args)
        os.remove(tmp_path / "goes")
        return found

    monkeypatch.setattr(scan_mod, "walk_files", walk_then_delete)
    assert list(await scan(tmp_path)) == ["stays"]


async def test_file_that_keeps_changing_is_reported(tmp_path, monkeypatch) -> None:
    make(tmp_path, {"busy": b"1"})

    def hash_and_touch(fh, *a, **k):
        os.utime(fh.fileno(), ns=(1, time.time_ns()))
        return "0" * 32

    monkeypatch.setattr(scan_mod, "hash_fileobj", hash_and_touch)
    with pytest.raises(SyncError, match="busy kept changing"):
        await scan(tmp_path)


async def test_tree_from_paths_files_and_directories(tmp_path) -> None:
    make(tmp_path, {"a": b"1", "d/b": b"2", "d/e/c": b"3", "other": b"4"})
    tree = await tree_from_paths(tmp_path, ["a", "d", "a"])
    assert list(tree) == ["a", "d/b", "d/e/c"]
    assert tree["d/e/c"] == FileEntry(1, hash_bytes(b"3"), tree["d/e/c"].mtime_ns)
    assert tree.root == str(tmp_path)


async def test_tree_from_paths_missing_error_or_skip(tmp_path) -> None:
    make(tmp_path, {"a": b"1"})
    with pytest.raises(SyncError, match="nope: no such file"):
        await tree_from_paths(tmp_path, ["a", "nope"])
    assert list(await tree_from_paths(tmp_path, ["a", "nope"], missing="skip")) == ["a"]
    with pytest.raises(ValueError):
        await tree_from_paths(tmp_path, ["a"], missing="ignore")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a\\b", "a//b", ""])
async def test_tree_from_paths_refuses_unsafe_names(tmp_path, name: str) -> None:
    with pytest.raises(UnsafePathError):
        await tree_from_paths(tmp_path, [name])


async def test_tree_from_paths_refuses_symlink_escape(tmp_path) -> None:
    make(tmp_path, {"root/x": b"1", "outside/y": b"2"})
    os.symlink(tmp_path / "outside", tmp_path / "root" / "link")
    with pytest.raises(UnsafePathError, match="link"):
        await tree_from_paths(tmp_path / "root", ["link/y"])


def info(name: str, size: int = 1, digest: str | None = "d" * 32) -> ObjectInfo:
    return ObjectInfo(name, size, etag="e", metadata={"xxh3": digest} if digest else {})


REMOTE_CASES = [
    ("no-prefix", "", ["a", "p/b"], ["a", "p/b"]),
    ("prefix", "p", ["a", "p/b", "p/c/d", "pq/x", "p"], ["b", "c/d"]),
    ("prefix-trailing-slash", "p/", ["p/b"], ["b"]),
    ("bookkeeping-and-markers", "", [".luisy-store/manifest.json", "dir/", "x.luisy-tmp-1", "ok",
                                     f"d/{temp_name('f')}"], ["ok", "x.luisy-tmp-1"]),
    ("unsafe-names-kept-for-the-planner", "", ["../evil", "ok"], ["../evil", "ok"]),
]


@pytest.mark.parametrize(("prefix", "names", "expected"), [c[1:] for c in REMOTE_CASES],
                         ids=[c[0] for c in REMOTE_CASES])
def test_remote_tree(prefix: str, names: list[str], expected: list[str]) -> None:
    tree = remote_tree([info(n) for n in names], prefix=prefix)
    assert list(tree) == expected and tree.root is None


def test_remote_tree_digest_from_metadata_or_none() -> None:
    tree = remote_tree([info("a", 5), info("b", 7, digest=None)])
    assert tree["a"] == FileEntry(5, "d" * 32) and tree["b"] == FileEntry(7, None)

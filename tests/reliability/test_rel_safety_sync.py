"""Data safety of ``luisy-sync`` push and pull, hit the way a user would (issue 15).

Every case runs the CLI (``python -m luisy_sync``) on a local store directory unless it
needs the API; each asserts what the user sees (report line, exit status) and what is
on disk and in the store afterwards.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from luisy_sync import hash_bytes, pull, push, read_manifest, scan
from luisy_sync.statcache import CTIME_RACY_WINDOW_NS
from luisy_sync.stores.base import DIGEST_KEY
from luisy_sync.stores.local import LocalStore
from luisy_sync.conventions import temp_name
from luisy_sync.stores.wrappers import Fault, FaultStore
from rel_helpers import REPO, make_files, read_tree, run_cli, worker_env, write_files

OLD_NS = 1_600_000_000 * 10**9


def cached_env(tmp_path: Path) -> dict[str, str]:
    """worker_env with the stat cache switched on (a private cache file)."""
    return worker_env(tmp_path, {"LUISY_SYNC_CACHE": str(tmp_path / "statcache.sqlite")})


def rewrite_keeping_size_and_mtime(path: Path, data: bytes) -> None:
    """What ``cp -p``, ``touch -r``, ``rsync -t --inplace`` and tar do: new bytes, same
    size, the old mtime put back (and the same inode: written in place)."""
    st = path.stat()
    assert len(data) == st.st_size
    with open(path, "r+b") as fh:
        fh.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_ino == st.st_ino


# -- item 2: the stat cache also keys on ctime and st_dev ---------------------------------------

@pytest.mark.timeout(60)
def test_in_place_rewrite_with_restored_mtime_is_pushed(tmp_path: Path) -> None:
    src, remote = tmp_path / "src", tmp_path / "remote"
    src.mkdir()
    target = src / "data.bin"
    target.write_bytes(b"A" * 4096)
    os.utime(target, ns=(OLD_NS, OLD_NS))  # as if copied with cp -p from an old file
    time.sleep(CTIME_RACY_WINDOW_NS / 1e9)
    env = cached_env(tmp_path)
    first = run_cli(["push", str(src), f"file://{remote}"], env)
    assert first.returncode == 0 and "uploaded 1 file" in first.stdout, first.stdout + first.stderr
    time.sleep(CTIME_RACY_WINDOW_NS / 1e9)

    rewrite_keeping_size_and_mtime(target, b"B" * 4096)
    second = run_cli(["push", str(src), f"file://{remote}"], env)
    assert second.returncode == 0, second.stderr
    assert "uploaded 1 file" in second.stdout and "0 skipped" in second.stdout, second.stdout
    assert (remote / "data.bin").read_bytes() == b"B" * 4096


def push_cli(src: Path, remote: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess:
    return run_cli(["push", str(src), remote.as_uri(), *extra], env)


def pull_cli(remote: Path, dest: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess:
    return run_cli(["pull", remote.as_uri(), str(dest), *extra], env)


def no_traceback(proc: subprocess.CompletedProcess, code: int = 0) -> str:
    text = proc.stdout + proc.stderr
    assert proc.returncode == code and "Traceback" not in text, (proc.returncode, text[-3000:])
    return text


# -- item 5: a pull keeps local edits (conflicts) unless --force; the dry run says so ------------

@pytest.mark.timeout(90)
def test_pull_keeps_files_edited_since_the_last_pull_unless_forced(tmp_path: Path) -> None:
    src, remote, dest = tmp_path / "src", tmp_path / "remote", tmp_path / "dest"
    write_files(src, {"both.txt": b"v1", "mine.txt": b"v1", "theirs.txt": b"v1", "mine-new.txt": b"v1"})
    env = worker_env(tmp_path)
    no_traceback(push_cli(src, remote, env))
    no_traceback(pull_cli(remote, dest, env))
    write_files(dest, {"both.txt": b"edited here", "mine.txt": b"edited here"})
    write_files(src, {"both.txt": b"v2 in the store", "theirs.txt": b"v2 in the store"})
    no_traceback(push_cli(src, remote, env))
    (tmp_path / "other").mkdir()
    write_files(tmp_path / "other", {"mine-new.txt": b"never pulled"})  # a file no pull wrote

    dry = no_traceback(pull_cli(remote, dest, env, "--dry-run"), code=1)
    assert "would have downloaded 1 file" in dry and "2 conflict(s) would keep locally" in dry, dry
    assert "conflict: both.txt: changed locally and in the store since the last sync" in dry
    assert "conflict: mine.txt: changed locally since the last sync" in dry

    kept = no_traceback(pull_cli(remote, dest, env), code=1)
    assert "downloaded 1 file" in kept and "--force overwrites" in kept, kept
    assert read_tree(dest) == {"both.txt": b"edited here", "mine.txt": b"edited here",
                               "theirs.txt": b"v2 in the store", "mine-new.txt": b"v1"}
    never = no_traceback(pull_cli(remote, tmp_path / "other", env), code=1)
    assert "conflict: mine-new.txt: exists locally and differs from the store; it was never synced here" in never

    forced = no_traceback(pull_cli(remote, dest, env, "--force"))
    assert "downloaded 2 files" in forced, forced
    assert read_tree(dest) == read_tree(src)
    assert "conflict" not in no_traceback(pull_cli(remote, dest, env))  # in sync again


@pytest.mark.timeout(60)
def test_a_pull_updates_files_this_directory_pushed_without_conflicts(tmp_path: Path) -> None:
    mine, theirs, remote = tmp_path / "mine", tmp_path / "theirs", tmp_path / "remote"
    write_files(mine, {"a.txt": b"v1", "b.txt": b"v1"})
    env = worker_env(tmp_path)
    no_traceback(push_cli(mine, remote, env))
    write_files(theirs, {"a.txt": b"v2 from another machine"})
    no_traceback(push_cli(theirs, remote, env))
    text = no_traceback(pull_cli(remote, mine, env))
    assert "downloaded 1 file" in text and "conflict" not in text, text
    assert (mine / "a.txt").read_bytes() == b"v2 from another machine"


# -- item 7: permissions ---------------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_pull_keeps_the_mode_of_the_files_it_replaces(tmp_path: Path) -> None:
    src, remote, dest = tmp_path / "src", tmp_path / "remote", tmp_path / "dest"
    write_files(src, {"small.txt": b"v1", "big.bin": os.urandom(300_000)})
    env = worker_env(tmp_path)
    no_traceback(push_cli(src, remote, env))
    no_traceback(pull_cli(remote, dest, env, "--block-size", "64KiB"))
    for name in ("small.txt", "big.bin"):
        (dest / name).chmod(0o600)
    write_files(src, {"small.txt": b"v2", "big.bin": os.urandom(300_000)})
    no_traceback(push_cli(src, remote, env))
    no_traceback(pull_cli(remote, dest, env, "--block-size", "64KiB"))
    assert read_tree(dest) == read_tree(src)
    for name in ("small.txt", "big.bin"):
        assert stat.S_IMODE((dest / name).stat().st_mode) == 0o600, name


@pytest.mark.timeout(60)
def test_default_local_remote_and_stat_cache_are_private(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_files(src, {"a.txt": b"data"})
    env = worker_env(tmp_path, {"XDG_DATA_HOME": str(tmp_path / "xdg"),
                                "XDG_STATE_HOME": str(tmp_path / "state"),
                                "LUISY_SYNC_CACHE": str(tmp_path / "cachedir" / "statcache.sqlite")})
    proc = run_cli(["push", str(src)], env)
    assert "default" in no_traceback(proc)
    remote = tmp_path / "xdg" / "luisy" / "remote"
    assert (remote / "projects" / "a.txt").read_bytes() == b"data"
    assert stat.S_IMODE(remote.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "xdg" / "luisy").stat().st_mode) == 0o700
    cache = tmp_path / "cachedir" / "statcache.sqlite"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache.parent.stat().st_mode) == 0o700
    records = list((tmp_path / "state" / "luisy_sync" / "synced").iterdir())  # the push's sync record
    assert len(records) == 1 and stat.S_IMODE(records[0].stat().st_mode) == 0o600
    assert stat.S_IMODE(records[0].parent.stat().st_mode) == 0o700


# -- item 8: two pulls into one directory; a push during a pull ------------------------------------

@pytest.mark.timeout(60)
def test_a_pull_leaves_the_temp_files_of_a_running_pull_alone(tmp_path: Path) -> None:
    src, remote, dest = tmp_path / "src", tmp_path / "remote", tmp_path / "dest"
    write_files(src, {"a.bin": b"a" * 1000, "b.bin": b"b" * 1000})
    env = worker_env(tmp_path)
    no_traceback(push_cli(src, remote, env))
    dest.mkdir()
    live = dest / temp_name("a.bin")  # written by this (running) process
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = dest / temp_name("b.bin").replace(f"-p{os.getpid()}-", f"-p{dead}-")
    for path in (live, stale):
        path.write_bytes(b"partial")
    no_traceback(pull_cli(remote, dest, env))
    assert live.exists(), "a pull removed the temp file of a pull that is still running"
    assert not stale.exists(), "the temp file of a pull that died was not cleaned up"
    assert {k: v for k, v in read_tree(dest).items() if k != live.name} == read_tree(src)


@pytest.mark.timeout(90)
def test_two_pulls_into_one_directory_both_succeed(tmp_path: Path) -> None:
    src, remote, dest = tmp_path / "src", tmp_path / "remote", tmp_path / "dest"
    files = make_files(src, 40, seed=15, big={"big.bin": 3_000_000})
    env = worker_env(tmp_path)
    no_traceback(push_cli(src, remote, env))
    for trial in range(3):
        target = dest / str(trial)
        cmd = [sys.executable, "-m", "luisy_sync", "pull", remote.as_uri(), str(target),
               "--block-size", "256KiB", "--concurrency", "4"]
        procs = [subprocess.Popen(cmd, env=env, cwd=str(REPO), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0 and "Traceback" not in err and "Error" not in err, err[-2000:]
        assert read_tree(target) == files


@pytest.fixture(params=["local", pytest.param("azure", marks=pytest.mark.azurite)])
def any_remote(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "local":
        return LocalStore(tmp_path / "remote")
    return request.getfixturevalue("azure_store")


@pytest.mark.timeout(60)
async def test_a_push_during_a_pull_is_not_reported_as_a_damaged_store(any_remote: Any,
                                                                       tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    write_files(src, {"a.txt": b"version one", "b.txt": b"untouched"})
    await push(src, any_remote, cache=False)
    new = b"version two"

    async def replace() -> None:  # a push replaces a.txt (same size) just as the pull reads it
        await any_remote.put("a.txt", new, metadata={DIGEST_KEY: hash_bytes(new)})

    view = FaultStore(any_remote, Fault("get", name="a.txt", times=1, before=replace), batch=False)
    report = await pull(view, dest, cache=False, raise_on_failure=False)
    assert report.downloaded == ("b.txt",)
    (path, reason), = report.failed
    assert path == "a.txt" and "was replaced in the store while it was downloaded" in reason, reason
    assert "repair" not in reason and not (dest / "a.txt").exists() and view.faults[0].hits == 1
    again = await pull(any_remote, dest, cache=False)
    assert again.downloaded == ("a.txt",) and (dest / "a.txt").read_bytes() == b"version two"


# -- item 9: smaller items -------------------------------------------------------------------------

@pytest.mark.timeout(30)
def test_an_empty_include_pattern_is_one_line(tmp_path: Path) -> None:
    write_files(tmp_path / "src", {"a": b"1"})
    proc = run_cli(["push", str(tmp_path / "src"), (tmp_path / "r").as_uri(), "--include", ""],
                   worker_env(tmp_path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("luisy-sync: error: argument --include"), lines
    assert not (tmp_path / "r").exists()


@pytest.mark.timeout(60)
def test_a_push_says_which_reserved_names_it_left_out(tmp_path: Path) -> None:
    src, remote = tmp_path / "src", tmp_path / "remote"
    ours = temp_name("data.csv")
    write_files(src, {"data.csv": b"1", f"d/{ours}": b"partial", ".luisy-store/meta/x.json": b"{}",
                      ".luisy-sync.json": b"{}", "d/.luisy-store/kept.txt": b"user data",
                      "notes.luisy-tmp-draft": b"user data too"})
    text = no_traceback(push_cli(src, remote, worker_env(tmp_path)))
    assert "uploaded 3 files" in text and "3 left out (reserved names)" in text, text
    for name in (f"d/{ours}", ".luisy-store/", ".luisy-sync.json"):
        assert f"left out: {name}: a name luisy-sync reserves" in text, name
    assert (remote / "d/.luisy-store/kept.txt").read_bytes() == b"user data"
    assert (remote / "notes.luisy-tmp-draft").read_bytes() == b"user data too"


@pytest.mark.timeout(60)
async def test_the_push_manifest_forgets_deleted_objects(tmp_path: Path) -> None:
    src, remote = tmp_path / "src", tmp_path / "remote"
    write_files(src, {"keep.txt": b"1", "gone.txt": b"2"})
    store = LocalStore(remote)
    await push(src, store, cache=False)
    await store.delete("gone.txt")
    (src / "gone.txt").unlink()
    await push(src, store, cache=False)
    entries, _ = await read_manifest(store)
    assert sorted(entries) == ["keep.txt"]


async def test_scan_without_a_cache_and_a_colon_name(tmp_path: Path) -> None:
    src, remote, dest = tmp_path / "src", tmp_path / "remote", tmp_path / "dest"
    write_files(src, {"a:b": b"colon", "t/12:30.log": b"time"})
    tree = await scan(src, cache=False)
    assert tree["a:b"].digest == hash_bytes(b"colon")
    await push(src, LocalStore(remote), cache=False)
    await pull(LocalStore(remote), dest, cache=False)
    assert read_tree(dest) == read_tree(src)

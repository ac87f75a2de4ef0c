"""Data safety of ``luisy-sync`` push and pull, hit the way a user would (issue 15).

Every case runs the CLI (``python -m luisy_sync``) on a local store directory unless it
needs the API; each asserts what the user sees (report line, exit status) and what is
on disk and in the store afterwards.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from luisy_sync.statcache import CTIME_RACY_WINDOW_NS
from rel_helpers import run_cli, worker_env

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

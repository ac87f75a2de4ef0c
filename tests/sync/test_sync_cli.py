"""The luisy-sync command line, run as a subprocess; and the public surface."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import luisy_sync

TIMEOUT = 60


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "LUISY_SYNC_CACHE": "off", **(env or {})}
    return subprocess.run([sys.executable, "-m", "luisy_sync", *args], capture_output=True, text=True,
                          timeout=TIMEOUT, env=full_env)


def make_src(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("alpha")
    (root / "sub" / "b.bin").write_bytes(os.urandom(3000))
    return root


def test_push_then_pull_round_trip(tmp_path: Path) -> None:
    src = make_src(tmp_path / "src")
    url = (tmp_path / "remote").as_uri()
    pushed = run("push", str(src), url, "--prefix", "proj")
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stdout.startswith("uploaded 2 files (")
    again = run("push", str(src), url, "--prefix", "proj", "--json")
    assert again.returncode == 0
    report = json.loads(again.stdout)
    assert report["uploaded"] == 0 and report["skipped"] == 2 and report["failed"] == []

    dest = tmp_path / "dest"
    pulled = run("pull", url, str(dest), "--prefix", "proj", "--quiet", "--concurrency", "4")
    assert pulled.returncode == 0 and pulled.stdout == "" and pulled.stderr == ""
    assert (dest / "a.txt").read_text() == "alpha"
    assert (dest / "sub" / "b.bin").read_bytes() == (src / "sub" / "b.bin").read_bytes()


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    src = make_src(tmp_path / "src")
    result = run("push", str(src), (tmp_path / "remote").as_uri(), "--dry-run")
    assert result.returncode == 0
    assert result.stdout.startswith("dry run: would have uploaded 2 files")
    assert not (tmp_path / "remote").exists() or not any((tmp_path / "remote").rglob("*.txt"))


def test_store_from_environment(tmp_path: Path) -> None:
    src = make_src(tmp_path / "src")
    env = {"LUISY_REMOTE": (tmp_path / "remote").as_uri()}
    assert run("push", str(src), env=env).returncode == 0
    result = run("pull", "-", str(tmp_path / "dest"), "--json", env=env)
    assert result.returncode == 0 and json.loads(result.stdout)["downloaded"] == 2


def test_store_from_environment_is_named(tmp_path: Path) -> None:
    src = make_src(tmp_path / "src")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LUISY_", "AZURE_"))}
    env.update(LUISY_LOCAL_REMOTE=str(tmp_path / "remote"), LUISY_SYNC_CACHE="off")
    result = subprocess.run([sys.executable, "-m", "luisy_sync", "push", str(src)], capture_output=True,
                            text=True, timeout=TIMEOUT, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == f"luisy-sync: store: local directory {tmp_path / 'remote'} (from LUISY_LOCAL_REMOTE)\n"
    assert (tmp_path / "remote" / "a.txt").read_text() == "alpha"
    quiet = subprocess.run([sys.executable, "-m", "luisy_sync", "push", str(src), "-q"], capture_output=True,
                           text=True, timeout=TIMEOUT, env=env)
    assert quiet.returncode == 0 and quiet.stderr == ""


@pytest.mark.parametrize("url, env, message", [
    ("s3://x/y", {}, "unsupported store URL 's3://x/y': use file:///"),
    ("file://relative/dir", {}, "store URL 'file://relative/dir' is not a valid file URL"),
    (None, {"LUISY_REMOTE": "ftp://x"}, "unsupported store URL in LUISY_REMOTE: use file:///"),
])
def test_bad_store_url_names_it_once(tmp_path: Path, url: str | None, env: dict[str, str],
                                     message: str) -> None:
    src = make_src(tmp_path / "src")
    result = run("push", str(src), *([url] if url else []), env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"luisy-sync: error: {message}"), result.stderr
    assert "URL in store URL" not in result.stderr


@pytest.mark.parametrize("args, fragment", [
    (["push", "{tmp}/missing", "{remote}"], "does not exist"),
    (["push", "{tmp}", "bogus://x"], "unsupported store URL"),
    (["push", "{tmp}", "--concurrency", "0"], "--concurrency"),
    (["pull"], "required"),
    (["frobnicate"], "invalid choice"),
    (["push", "{tmp}", "--block-size", "lots"], "--block-size"),
])
def test_bad_input_is_one_line_exit_2(tmp_path: Path, args: list[str], fragment: str) -> None:
    filled = [a.format(tmp=tmp_path, remote=(tmp_path / "r").as_uri()) for a in args]
    result = run(*filled)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("luisy-sync: error: "), result.stderr
    assert fragment in lines[0] and "Traceback" not in result.stderr


def test_unsafe_remote_name_exits_2(tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    (remote / "p").mkdir(parents=True)
    (remote / "p" / "a\\b.txt").write_text("sneaky")  # a backslash name: unsafe on pull
    result = run("pull", remote.as_uri(), str(tmp_path / "dest"), "--prefix", "p")
    assert result.returncode == 2
    assert result.stderr.startswith("luisy-sync: error: ") and "refus" in result.stderr
    assert not (tmp_path / "dest").exists()


@pytest.mark.skipif(sys.platform != "linux", reason="a file name of undecodable bytes needs a POSIX file system")
def test_a_file_name_that_is_not_utf8_refuses_the_push(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "ok.txt").write_text("fine")
    with open(os.path.join(os.fsencode(src), b"bad\xff.txt"), "wb") as fh:
        fh.write(b"undecodable name")
    env = {"LUISY_SYNC_CACHE": str(tmp_path / "cache.sqlite")}
    result = run("push", str(src), (tmp_path / "remote").as_uri(), env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "not valid UTF-8" in lines[0] and "rename" in lines[0], result.stderr
    assert not (tmp_path / "remote").exists()  # nothing was uploaded


def test_public_names_exist() -> None:
    missing = [name for name in luisy_sync.__all__ if not hasattr(luisy_sync, name)]
    assert missing == []
    assert len(set(luisy_sync.__all__)) == len(luisy_sync.__all__)

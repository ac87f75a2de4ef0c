"""Bad input through the CLI (``python -m luisy_sync``) and the API.

Each case asserts the message (one line on stderr, ``luisy-sync: error: ...``), a
non-zero exit, no traceback, and that nothing changed: neither the local tree nor the
store. Missing container: push creates it, pull refuses (Azure and local stores alike).
Names with ``..`` cannot be stored in Azurite or on a filesystem (both normalise or
refuse them), so those are crafted in a MemoryStore; a backslash is crafted in a
LocalStore directory and an absolute name (``proj//abs``) in Azurite.
"""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from benchmarks.azurite import ACCOUNT, KEY, free_port
from luisy_sync import (ContainerNotFound, ManifestError, MemoryStore, SyncError, UnsafePathError,
                        pull, push)
from luisy_sync.stores.azure import AzureBlobStore
from rel_helpers import MANIFEST, make_files, read_tree, run_cli, store_contents, worker_env

WRONG_KEY = base64.b64encode(b"not the key" * 6).decode()


def one_line_error(proc: subprocess.CompletedProcess, *needles: str, code: int = 2) -> str:
    """The single stderr line of a failed CLI run, checked for the exit code and ``needles``."""
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert line.startswith("luisy-sync: error: "), line
    for needle in needles:
        assert needle in line, (needle, line)
    return line


def azure_env(tmp_path: Path, port: int, key: str = KEY) -> dict[str, str]:
    return worker_env(tmp_path, {"LUISY_AZURE_ACCOUNT_NAME": ACCOUNT, "LUISY_AZURE_STORAGE_KEY": key,
                                 "LUISY_AZURE_ENDPOINT": f"http://127.0.0.1:{port}/{ACCOUNT}"})


async def container_exists(azurite: Any, name: str) -> bool:
    async with AzureBlobStore.from_account_key(ACCOUNT, KEY, name, endpoint=azurite.endpoint) as store:
        try:
            await store.ensure_container(create=False)
        except ContainerNotFound:
            return False
    return True


@pytest.fixture
def src(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    root = tmp_path / "src"
    return root, make_files(root, 6, seed=9)


# -- credentials and endpoints ------------------------------------------------------------

@pytest.mark.timeout(30)
async def test_missing_credentials(src, tmp_path: Path, azurite, container_name: str) -> None:
    root, files = src
    env = worker_env(tmp_path)
    line = one_line_error(run_cli(["push", str(root), f"az://{container_name}"], env),
                          "no Azure account is configured", "AZURE_STORAGE_CONNECTION_STRING")
    one_line_error(run_cli(["pull", f"az://{container_name}", str(tmp_path / "dest")], env),
                   "no Azure account is configured")
    assert "LUISY_AZURE_STORAGE_KEY" in line
    assert read_tree(root) == files and not (tmp_path / "dest").exists()
    assert not await container_exists(azurite, container_name)


@pytest.mark.timeout(30)
async def test_invalid_credentials(src, tmp_path: Path, azurite, container_name: str) -> None:
    root, files = src
    env = azure_env(tmp_path, azurite.port, WRONG_KEY)
    for args in (["push", str(root), f"az://{container_name}"],
                 ["pull", f"az://{container_name}", str(tmp_path / "dest")]):
        proc = run_cli(args, env)
        one_line_error(proc, "credentials rejected", "HTTP 403", "check the account name and key")
        assert WRONG_KEY not in proc.stderr + proc.stdout
    bad = one_line_error(run_cli(["push", str(root), f"az://{container_name}"],
                                 azure_env(tmp_path, azurite.port, "not base64!")),
                         "LUISY_AZURE_STORAGE_KEY is not a valid account key")
    assert "not base64!" not in bad
    assert read_tree(root) == files and not (tmp_path / "dest").exists()
    assert not await container_exists(azurite, container_name)

    store = AzureBlobStore.from_account_key(ACCOUNT, WRONG_KEY, container_name, endpoint=azurite.endpoint)
    async with store:
        with pytest.raises(SyncError, match="credentials rejected") as caught:
            await push(root, store, cache=False)
    assert "\n" not in str(caught.value) and WRONG_KEY not in str(caught.value)


@pytest.mark.timeout(30)
def test_unreachable_endpoint(src, tmp_path: Path) -> None:
    root, files = src
    port = free_port()
    env = azure_env(tmp_path, port)
    one_line_error(run_cli(["push", str(root), "az://somewhere"], env),
                   "read az://somewhere/.luisy-sync.json", f"cannot reach http://127.0.0.1:{port}/{ACCOUNT}")
    one_line_error(run_cli(["pull", "az://somewhere", str(tmp_path / "dest")], env),
                   f"cannot reach http://127.0.0.1:{port}")
    assert read_tree(root) == files and not (tmp_path / "dest").exists()


# -- missing container: push creates, pull refuses -----------------------------------------

@pytest.mark.timeout(30)
async def test_missing_container_push_creates_pull_refuses(src, tmp_path: Path, azurite,
                                                           container_name: str) -> None:
    root, files = src
    env = azure_env(tmp_path, azurite.port)
    one_line_error(run_cli(["pull", f"az://{container_name}", str(tmp_path / "dest")], env),
                   "the container does not exist")
    assert not (tmp_path / "dest").exists() and not await container_exists(azurite, container_name)
    assert run_cli(["push", str(root), f"az://{container_name}", "-q"], env).returncode == 0
    async with AzureBlobStore.from_account_key(ACCOUNT, KEY, container_name, endpoint=azurite.endpoint) as store:
        assert await store_contents(store) == files

    local = tmp_path / "nowhere"
    one_line_error(run_cli(["pull", local.as_uri(), str(tmp_path / "dest")], env),
                   f"cannot pull from {local.as_uri()}: the container does not exist")
    assert not local.exists() and not (tmp_path / "dest").exists()
    with pytest.raises(ContainerNotFound):
        await pull(local.as_uri(), tmp_path / "dest", cache=False)
    assert run_cli(["push", str(root), local.as_uri(), "-q"], env).returncode == 0
    assert {k: v for k, v in read_tree(local).items() if not k.startswith(".")} == files


# -- corrupt remote manifest -----------------------------------------------------------------

@pytest.mark.parametrize("garbage", [b"{not json", b"[1, 2]", b'{"format": "other", "files": {}}'])
@pytest.mark.timeout(30)
async def test_corrupt_remote_manifest_refuses_push_before_uploading(src, tmp_path: Path,
                                                                     garbage: bytes) -> None:
    root, files = src
    store_dir = tmp_path / "remote"
    env = worker_env(tmp_path)
    assert run_cli(["push", str(root), store_dir.as_uri(), "-q"], env).returncode == 0
    (store_dir / MANIFEST).write_bytes(garbage)
    changed = sorted(files)[0]
    (root / changed).write_bytes(b"new content")
    before = read_tree(store_dir)
    line = one_line_error(run_cli(["push", str(root), store_dir.as_uri()], env),
                          MANIFEST, "delete it so that the next push rebuilds it")
    assert "valid JSON object" in line or "manifest" in line
    with pytest.raises(ManifestError):
        await push(root, store_dir.as_uri(), cache=False)
    assert read_tree(store_dir) == before  # nothing uploaded, manifest untouched
    # pulling does not depend on the manifest
    assert run_cli(["pull", store_dir.as_uri(), str(tmp_path / "dest"), "-q"], env).returncode == 0
    assert read_tree(tmp_path / "dest")[changed] == files[changed]


# -- unsafe names in the store -------------------------------------------------------------

@pytest.mark.parametrize("name", ["proj/../escape.txt", "proj/a/../../escape.txt", "proj//etc/passwd",
                                  "proj/a\\..\\b.txt", "proj/./x.txt"])
async def test_unsafe_remote_names_refuse_the_whole_pull_api(tmp_path: Path, name: str) -> None:
    store = MemoryStore()
    src = tmp_path / "src"
    make_files(src, 3, seed=1)
    await push(src, store, prefix="proj", cache=False)
    store._objects[name] = store._objects[next(iter(store._objects))]  # crafted behind the API
    dest = tmp_path / "dest"
    with pytest.raises(UnsafePathError) as caught:
        await pull(store, dest, prefix="proj", cache=False)
    message = str(caught.value)
    assert "\n" not in message and "nothing was downloaded" in message
    assert not dest.exists() and not (tmp_path / "escape.txt").exists()


@pytest.mark.timeout(30)
async def test_unsafe_remote_names_refuse_the_whole_pull_cli(tmp_path: Path, azurite,
                                                             azure_store) -> None:
    env = azure_env(tmp_path, azurite.port)
    local = tmp_path / "remote" / "proj"
    local.mkdir(parents=True)
    (local / "fine.txt").write_bytes(b"fine")
    (local / "a\\b.txt").write_bytes(b"backslash")  # a legal file name on POSIX
    dest = tmp_path / "dest"
    one_line_error(run_cli(["pull", (tmp_path / "remote").as_uri(), str(dest), "--prefix", "proj"], env),
                   "nothing was downloaded", "backslashes")
    await azure_store.put("proj/fine.txt", b"fine")
    # the store itself refuses such a name; the raw SDK writes it (Azurite keeps the empty segment)
    await azure_store._container().upload_blob("proj//abs.txt", b"absolute")
    one_line_error(run_cli(["pull", f"az://{azure_store.container}", str(dest), "--prefix", "proj"], env),
                   "nothing was downloaded", "'/abs.txt'")
    assert not dest.exists()


# -- symlink out of the tree -----------------------------------------------------------------

async def test_symlink_outside_the_tree_refuses_the_push(src, tmp_path: Path) -> None:
    root, files = src
    outside = tmp_path / "secret.txt"
    outside.write_bytes(b"outside")
    (root / "d0" / "link.txt").symlink_to(outside)
    store_dir = tmp_path / "remote"
    env = worker_env(tmp_path)
    one_line_error(run_cli(["push", str(root), store_dir.as_uri()], env),
                   "refusing symlink 'd0/link.txt'", "points outside")
    with pytest.raises(UnsafePathError):
        await push(root, store_dir.as_uri(), cache=False)
    assert not store_dir.exists()


# -- destination problems ------------------------------------------------------------------------

@pytest.fixture
def pushed(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    """A LocalStore directory holding a small pushed tree (files below d0/ .. d6/)."""
    src = tmp_path / "src"
    files = make_files(src, 10, seed=12)
    store_dir = tmp_path / "remote"
    assert run_cli(["push", str(src), store_dir.as_uri(), "-q"], worker_env(tmp_path)).returncode == 0
    return store_dir, files


def test_read_only_destination(pushed, tmp_path: Path) -> None:
    store_dir, files = pushed
    dest = tmp_path / "dest"
    dest.mkdir()
    dest.chmod(0o555)
    try:
        if os.access(dest, os.W_OK):
            pytest.skip("running as root: a read-only mode does not stop writes "
                        "(test_file_where_a_directory_is_needed covers the refusal)")
        proc = run_cli(["pull", store_dir.as_uri(), str(dest)], worker_env(tmp_path))
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        assert all(ln.startswith("luisy-sync: failed: ") and "Permission denied" in ln
                   for ln in proc.stderr.strip().splitlines())
        assert read_tree(dest) == {}
    finally:
        dest.chmod(0o755)


def test_file_where_a_directory_is_needed(pushed, tmp_path: Path) -> None:
    store_dir, files = pushed
    env = worker_env(tmp_path)
    blocker = tmp_path / "dest-is-a-file"
    blocker.write_bytes(b"keep me")
    one_line_error(run_cli(["pull", store_dir.as_uri(), str(blocker)], env),
                   f"cannot pull into {blocker}: it is a file")
    assert blocker.read_bytes() == b"keep me"

    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "d0").write_bytes(b"a file named like a directory")
    proc = run_cli(["pull", store_dir.as_uri(), str(dest)], env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    failed = proc.stderr.strip().splitlines()
    in_d0 = sorted(rel for rel in files if rel.startswith("d0/"))
    assert [ln.split(": ")[2] for ln in failed] == in_d0  # one line per file that could not land
    assert all(ln.startswith("luisy-sync: failed: d0/") for ln in failed)
    assert (dest / "d0").read_bytes() == b"a file named like a directory"
    got = read_tree(dest)
    assert {k: v for k, v in got.items() if k != "d0"} == {k: v for k, v in files.items() if k not in in_d0}


@pytest.fixture
def small_tmpfs(tmp_path: Path):
    """A 1 MiB tmpfs (needs root with CAP_SYS_ADMIN; skipped otherwise)."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root/CAP_SYS_ADMIN): {proc.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.mark.timeout(30)
def test_full_disk_on_pull_leaves_no_partial_file(small_tmpfs: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    files = make_files(src, 20, seed=13, max_size=2000, big={"big/huge.bin": 3 * 2 ** 20})
    store_dir = tmp_path / "remote"
    env = worker_env(tmp_path)
    assert run_cli(["push", str(src), store_dir.as_uri(), "-q", "--block-size", "256KiB"], env).returncode == 0
    dest = small_tmpfs / "dest"
    proc = run_cli(["pull", store_dir.as_uri(), str(dest), "--block-size", "256KiB"], env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    # Which small files still fit depends on timing (they race the big file's temp file for
    # the last free bytes); what must hold: the big file fails, every failure is one line
    # naming its file and the cause, and every file that is there is complete.
    assert all(ln.startswith("luisy-sync: failed: ") and "No space left on device" in ln
               for ln in lines), lines
    failed = {ln.split(": ")[2] for ln in lines}
    assert "big/huge.bin" in failed
    got = read_tree(dest)
    assert not any(".luisy-tmp-" in rel for rel in got)
    assert got == {k: v for k, v in files.items() if k not in failed}


@pytest.mark.timeout(30)
async def test_full_disk_in_a_local_store_on_push(small_tmpfs: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_files(src, 5, seed=14, max_size=100, big={"big/huge.bin": 3 * 2 ** 20})
    store_dir = small_tmpfs / "remote"
    proc = run_cli(["push", str(src), store_dir.as_uri(), "--block-size", "256KiB"], worker_env(tmp_path))
    assert proc.returncode in (1, 2) and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()  # small files racing the big file's blocks may fail too
    assert lines and all(line.startswith("luisy-sync: ") and "No space left on device" in line
                         for line in lines)
    assert any("big/huge.bin" in line for line in lines)
    from luisy_sync.stores.local import LocalStore

    async with LocalStore(store_dir) as store:
        stored = await store_contents(store)
    assert "big/huge.bin" not in stored
    assert not any(".luisy-tmp-" in rel for rel in read_tree(store_dir) if not rel.startswith(".luisy-store/"))

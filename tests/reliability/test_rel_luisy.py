"""luisy runs: killed during the post-run upload, bad input, pickles from a lying store.

The example pipeline (``luisy.examples.pipeline``) runs as ``python -m luisy.cli`` in
subprocesses. The upload kills go through the fault proxy with a bandwidth cap so that
the upload phase is long enough to be hit at seeded random moments.
"""

from __future__ import annotations

import json
import pickle
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from benchmarks.azurite import ACCOUNT, KEY
from luisy_sync import hash_bytes
from luisy_sync.stores.azure import AzureBlobStore
from luisy_sync.stores.local import LocalStore
from rel_helpers import REPO, read_tree, worker_env

PIPELINE = ["--module", "luisy.examples.pipeline"]
HASH_FILE = ".luisy.hash"
HASH_FILES = (HASH_FILE, ".luisy.parts")
TRIALS = 5


def luisy_env(tmp_path: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    return worker_env(tmp_path, {"XDG_DATA_HOME": str(tmp_path / "xdg"), **(extra or {})})


def luisy_args(args: list[str], wd: Path) -> list[str]:
    return [sys.executable, "-m", "luisy.cli", *args, "--working-dir", str(wd), "--no-ask"]


def luisy(args: list[str], wd: Path, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    """One luisy run. Its limit is generous: under a loaded CI machine one run took minutes
    where it takes seconds alone. A run that still overruns fails the test with its command
    and the end of its stderr (not a traceback through pytest's formatting)."""
    try:
        return subprocess.run(luisy_args(args, wd), env=env, capture_output=True, text=True,
                              timeout=timeout, cwd=str(REPO))
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        pytest.fail(f"luisy {' '.join(args)} did not end within {timeout:g} s; its stderr ends with:\n"
                    f"{err[-2000:]}", pytrace=False)


def outputs(wd: Path) -> dict[str, bytes]:
    """The output files of a working dir (the hash files and their parts left out)."""
    return {rel: data for rel, data in read_tree(wd).items() if not rel.endswith(HASH_FILES)}


async def cloud_state(store: Any) -> tuple[dict[str, bytes], dict[str, Any]]:
    """(the 1.4.7 view: objects by name, verified against their digest metadata; the cloud
    hash entries). Every content-store object holds exactly the content its name says,
    and every version the versions index names is in the content store."""
    objects: dict[str, bytes] = {}
    content: set[str] = set()
    for info in await store.list(""):
        if info.name.startswith(".luisy-store/"):
            continue
        data = (await store.get(info.name)).data
        if not info.name.endswith((HASH_FILE, ".luisy.versions")):
            assert info.digest == hash_bytes(data), f"{info.name}: digest metadata != content"
        if info.name.startswith(".luisy-cas/"):
            assert info.name.endswith("/" + hash_bytes(data)), f"{info.name}: partial content"
            content.add(hash_bytes(data))
            continue
        objects[info.name] = data
    raw = objects.pop(f"luisy_example/{HASH_FILE}", None)
    versions = objects.pop("luisy_example/.luisy.versions", None)
    for by_hash in ({} if versions is None else json.loads(versions)["versions"]).values():
        for version in by_hash.values():
            digests = [f["digest"] for f in version["files"].values()] if "files" in version else [version["digest"]]
            assert set(digests) <= content, "a version names content the store lacks"
    return objects, ({} if raw is None else json.loads(raw))


def assert_hash_file_truthful(objects: dict[str, bytes], entries: dict[str, Any]) -> None:
    """Every cloud hash entry names content the store has, with that digest."""
    for key, entry in entries.items():
        name = key.strip("/")
        if "files" in entry:
            for rel, info in entry["files"].items():
                assert hash_bytes(objects[f"{name}/{rel}"]) == info["digest"], f"{key}/{rel}"
        elif "digest" in entry:
            assert name in objects, f"the cloud hash names {key} but the store lacks it"
            assert hash_bytes(objects[name]) == entry["digest"], key


@pytest.mark.azurite
@pytest.mark.timeout(60)
async def test_luisy_upload_killed_at_random_moments_converges(azurite, container_name: str, tmp_path: Path) -> None:
    from benchmarks.proxy import run_proxy_in_thread

    env = luisy_env(tmp_path, {"LUISY_AZURE_ACCOUNT_NAME": ACCOUNT, "LUISY_AZURE_STORAGE_KEY": KEY})
    run = [*PIPELINE, "FinalTask", "--n-rows", "100000"]
    wd = tmp_path / "machine-a"
    made = luisy(run, wd, env)  # outputs made locally first: the kills hit the upload only
    assert made.returncode == 0, made.stderr[-2000:]
    local = outputs(wd)
    rng = random.Random(4242)
    with run_proxy_in_thread("127.0.0.1", azurite.port, bandwidth_bps=24e6) as proxy:
        slow = {**env, "LUISY_AZURE_ENDPOINT": f"{proxy.endpoint}/{ACCOUNT}"}
        fast = {**env, "LUISY_AZURE_ENDPOINT": azurite.endpoint}
        started = time.monotonic()
        calib = luisy([*run, "--upload", "--remote", f"az://{container_name}x"], wd, slow)
        span = time.monotonic() - started
        assert calib.returncode == 0, calib.stderr[-2000:]
        outcomes = []
        for trial in range(TRIALS):
            container = f"{container_name}{trial}"
            proc = subprocess.Popen(luisy_args([*run, "--upload", "--remote", f"az://{container}"], wd),
                                    env=slow, cwd=str(REPO), stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0.4 * span, 0.95 * span))
            alive = proc.poll() is None
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            store = AzureBlobStore.from_account_key(ACCOUNT, KEY, container, endpoint=azurite.endpoint)
            async with store:
                try:
                    objects, entries = await cloud_state(store)
                except Exception as exc:  # the container may not exist yet
                    assert "does not exist" in str(exc)
                    objects, entries = {}, {}
                assert all(local[name] == data for name, data in objects.items()), "partial object"
                assert_hash_file_truthful(objects, entries)
                outcomes.append(f"{'killed' if alive else 'finished first'}: "
                                f"{len(objects)}/{len(local)} objects, {len(entries)} entries")

                again = luisy([*run, "--upload", "--remote", f"az://{container}"], wd, fast)
                assert again.returncode == 0, again.stderr[-2000:]
                objects, entries = await cloud_state(store)
                assert objects == local and len(entries) == 7
                assert_hash_file_truthful(objects, entries)
    print(f"luisy upload kills: {outcomes}")
    assert sum(o.startswith("killed") for o in outcomes) >= 3, outcomes

    second = tmp_path / "machine-b"  # a fresh machine gets the final output, verified
    got = luisy([*run, "--download", "--remote", f"az://{container_name}0"], second, fast)
    assert got.returncode == 0, got.stderr[-2000:]
    assert outputs(second) and all(local[rel] == data for rel, data in outputs(second).items())


@pytest.fixture(scope="module")
def made_outputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A working dir with the example's outputs pushed to a LocalStore remote (wd, remote)."""
    base = tmp_path_factory.mktemp("luisy")
    remote = base / "remote"
    env = luisy_env(base, {"LUISY_REMOTE": remote.as_uri()})
    proc = luisy([*PIPELINE, "StatsTable", "--upload"], base / "wd", env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return base / "wd", remote


@pytest.mark.parametrize("args, message", [
    (["--module", "no_such_module_xyz", "FinalTask"], "cannot import module 'no_such_module_xyz'"),
    ([*PIPELINE, "NoSuchTask"], "unknown task"),
    ([*PIPELINE, "StatsTable", "--no-such-parameter", "3"], "unrecognized arguments: --no-such-parameter"),
    ([*PIPELINE, "StatsTable", "--n-rows", "many"], "bad parameter value"),
    ("corrupt-json", "is not valid JSON"),
    ("wrong-shape", "must hold a JSON object of strings"),
])
@pytest.mark.timeout(60)
def test_luisy_bad_input_is_one_line_and_changes_nothing(made_outputs, tmp_path: Path, args: Any,
                                                         message: str) -> None:
    wd, remote = made_outputs
    env = luisy_env(tmp_path, {"LUISY_REMOTE": remote.as_uri()})
    hash_path = wd / "luisy_example" / HASH_FILE
    good_hash = hash_path.read_bytes()
    if isinstance(args, str):
        hash_path.write_bytes(b'{"broken' if args == "corrupt-json" else b'["a", "list"]')
        args = [*PIPELINE, "StatsTable", "--upload", "--download"]
    before, remote_before = read_tree(wd), read_tree(remote)
    try:
        proc = luisy(args, wd, env)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr + proc.stdout
        errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("luisy: error:")]
        assert len(errors) == 1 and message in errors[0], proc.stderr[-2000:]
        assert read_tree(wd) == before and read_tree(remote) == remote_before
    finally:
        hash_path.write_bytes(good_hash)


class _Marker:
    """Unpickling this creates a file: proof that something unpickled it."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self) -> tuple:
        return (open, (self.path, "w"))


@pytest.mark.timeout(60)
async def test_a_pickle_from_a_lying_store_is_never_unpickled(made_outputs, tmp_path: Path) -> None:
    wd, remote = made_outputs
    name = "luisy_example/interim/LabelStats_label=beta_n_rows=300_seed=7.pkl"
    good = (wd / name).read_bytes()
    marker = tmp_path / "UNPICKLED"
    payload = pickle.dumps(_Marker(str(marker)))
    evil = payload + b"." * (len(good) - len(payload))  # same size; pickle ignores what follows STOP
    assert len(evil) == len(good)
    stored = f".luisy-cas/{hash_bytes(good)[:2]}/{hash_bytes(good)}"  # where downloads read it
    async with LocalStore(remote) as store:
        original = (await store.head(stored)).metadata
        await store.put(stored, evil, metadata=original)  # the store now claims the good digest
        final = "luisy_example/final/StatsTable_labels=alpha_beta_gamma_n_rows=300_seed=7.pkl"
        await store.delete(final)  # machine b has to run StatsTable, which reads the pickles
        versions = json.loads((await store.get("luisy_example/.luisy.versions")).data)
        del versions["versions"]["/" + final]  # (its version too)
        await store.put("luisy_example/.luisy.versions", json.dumps(versions).encode())
        try:
            env = luisy_env(tmp_path, {"LUISY_REMOTE": remote.as_uri()})
            proc = luisy([*PIPELINE, "StatsTable", "--download"], tmp_path / "b", env)
        finally:
            await store.put(stored, good, metadata=original)
    assert not marker.exists(), "a tampered pickle was unpickled"
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    assert "does not match its digest" in proc.stdout + proc.stderr
    assert (tmp_path / "b" / name).read_bytes() == good  # recomputed, not downloaded
    assert not any(".luisy-tmp-" in rel for rel in read_tree(tmp_path / "b"))

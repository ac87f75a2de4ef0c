"""Data safety of luisy runs with a cloud remote, hit the way a user would (issue 15).

A small pipeline module is written to a temp dir and run as ``python -m luisy.cli`` in
subprocesses against a LocalStore remote (``LUISY_REMOTE=file://...``) unless a case
needs Azurite. Each case asserts what the user sees and what is on disk and in the
cloud afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from luisy_sync import hash_bytes
from luisy_sync.stores.local import LocalStore
from luisy_sync.stores.small import read_small
from luisy_sync.stores.wrappers import Fault, FaultStore
from rel_helpers import REPO, worker_env

MODULE = "safety_pipeline"
PROJECT = "safety"
PRODUCER = f"{PROJECT}/interim/Producer.pkl"
CONSUMER = f"{PROJECT}/final/Consumer.pkl"
HASH_FILE = f"{PROJECT}/.luisy.hash"

PIPELINE = '''
import os
import luisy


@luisy.project_name("safety")
@luisy.interim
class Producer(luisy.Task):
    def run(self):
        self.write({"rows": list(range(int(os.environ.get("SAFETY_ROWS", "50"))))})
        if os.environ.get("SAFETY_FAIL_AFTER_WRITE"):
            raise RuntimeError("failed after writing the output")


@luisy.project_name("safety")
@luisy.final
@luisy.requires(Producer)
class Consumer(luisy.Task):
    def run(self):
        self.write({"total": sum(self.input().read()["rows"])})


@luisy.project_name("safety")
@luisy.interim
class Named(luisy.Task):
    label = luisy.Parameter()

    def run(self):
        self.write(self.label)


@luisy.project_name("safety")
@luisy.final
class Collide(luisy.Task):
    def requires(self):
        return [Named(label="a b"), Named(label="a/b")]

    def run(self):
        self.write([target.read() for target in self.input()])
'''


@pytest.fixture
def machine(tmp_path: Path):
    """``machine(name, *args, **env)`` runs the pipeline CLI in working dir ``tmp_path/name``
    against the LocalStore remote ``tmp_path/remote``."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / f"{MODULE}.py").write_text(PIPELINE)

    def run(name: str, *args: str, **extra: str) -> subprocess.CompletedProcess:
        env = worker_env(tmp_path, {"LUISY_REMOTE": (tmp_path / "remote").as_uri(),
                                    "XDG_DATA_HOME": str(tmp_path / "xdg"), **extra})
        env["PYTHONPATH"] = f"{tmp_path / 'pkg'}{os.pathsep}{env['PYTHONPATH']}"
        cmd = [sys.executable, "-m", "luisy.cli", "--module", MODULE, *args,
               "--working-dir", str(tmp_path / name), "--no-ask"]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, cwd=str(REPO))

    return run


def ok(proc: subprocess.CompletedProcess) -> str:
    """stdout + stderr of a run that must have succeeded without a traceback."""
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Traceback" not in text, text[-3000:]
    return text


def cloud_entries(remote: Path) -> dict[str, Any]:
    return json.loads((remote / HASH_FILE).read_text())


def assert_cloud_truthful(remote: Path) -> None:
    """Every digest the cloud hash file names is the digest of the object stored under it."""
    for key, entry in cloud_entries(remote).items():
        if "digest" in entry:
            data = (remote / key.lstrip("/")).read_bytes()
            assert hash_bytes(data) == entry["digest"], f"{key}: the cloud hash names other content"


# -- item 1: luisy --upload repairs a deleted or damaged cloud object ---------------------------

@pytest.mark.parametrize("damage", ["deleted", "corrupted"])
@pytest.mark.timeout(120)
async def test_upload_repairs_a_deleted_or_corrupted_cloud_object(machine, tmp_path: Path,
                                                                  damage: str) -> None:
    remote = tmp_path / "remote"
    ok(machine("a", "Consumer", "--upload"))
    good = (tmp_path / "a" / PRODUCER).read_bytes()
    if damage == "deleted":
        async with LocalStore(remote) as store:
            await store.delete(PRODUCER)
    else:
        with open(remote / PRODUCER, "r+b") as fh:
            fh.write(b"\0" * 16)

    text = ok(machine("a", "Consumer", "--upload"))
    assert "nothing to upload" not in text
    assert "upload: 1 output(s)" in text, text[-2000:]
    assert (remote / PRODUCER).read_bytes() == good
    assert_cloud_truthful(remote)

    fresh = ok(machine("b", "Producer", "--download"))  # another machine now downloads it
    assert "download: 1 output(s)" in fresh, fresh[-2000:]
    assert (tmp_path / "b" / PRODUCER).read_bytes() == good


# -- item 4: the output of a task that raised after writing it is never adopted ------------------

@pytest.mark.timeout(120)
def test_output_of_a_task_that_failed_after_writing_is_not_adopted(machine, tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    failed = machine("a", "Consumer", "--upload", SAFETY_FAIL_AFTER_WRITE="1", SAFETY_ROWS="3")
    text = failed.stdout + failed.stderr
    assert failed.returncode == 1  # luigi logs the task's traceback; luisy adds one line
    assert f"removed {tmp_path / 'a' / PRODUCER}" in text, text[-2000:]
    assert not (tmp_path / "a" / PRODUCER).exists()
    assert not (remote / PRODUCER).exists() and not (remote / CONSUMER).exists()

    text = ok(machine("a", "Consumer", "--upload"))  # the task runs again; its new output is used
    assert "Producer" in text.split("tasks to run")[1].split("\n\n")[0], text[-2000:]
    assert (tmp_path / "a" / PRODUCER).read_bytes() == (remote / PRODUCER).read_bytes()
    import pickle
    assert pickle.loads((tmp_path / "a" / CONSUMER).read_bytes()) == {"total": sum(range(50))}
    assert_cloud_truthful(remote)


# -- item 3: concurrent uploads of different content never leave a lying .luisy.hash -------------

KEY = f"/{PRODUCER}"


def _pausing(inner: Any, after_put: Any) -> FaultStore:
    """A store view that runs ``after_put()`` right after the content of one object was
    placed at its path (the copy from the content store, before the uploader goes on to
    its versions index and cloud hash updates); no put_many, so every write goes through put."""
    return FaultStore(inner, Fault("copy", after=after_put), batch=False)


async def _upload_from(wd: Path, store: Any) -> Any:
    """What ``luisy --upload`` does after the run, for the one output ``KEY``."""
    from luisy.cloud.state import read_cloud_state
    from luisy.cloud.sync import upload
    from luisy.graph import Output

    state = await read_cloud_state(store, [PROJECT])
    output = Output(KEY, str(wd / PRODUCER), PROJECT, False, "same-code-hash")
    return await upload(store, str(wd), [output], state)


def _two_machines(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "a", tmp_path / "b"
    for wd, data in ((a, b"content of machine A"), (b, b"machine B made other content")):
        (wd / PRODUCER).parent.mkdir(parents=True)
        (wd / PRODUCER).write_bytes(data)
    return a, b


async def _cloud_hash_truthful(store: Any) -> dict[str, Any]:
    entries = json.loads((await read_small(store, HASH_FILE))[0])
    blob = (await store.get(PRODUCER)).data
    assert entries[KEY]["digest"] == hash_bytes(blob), "the cloud hash names a digest the store lacks"
    return entries


@pytest.fixture(params=["local", pytest.param("azure", marks=pytest.mark.azurite)])
def shared_store(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch) -> Any:
    """The remote both machines upload to: a LocalStore, or a fresh Azurite container."""
    monkeypatch.setenv("LUISY_SYNC_CACHE", "off")
    if request.param == "local":
        return LocalStore(tmp_path / "remote")
    return request.getfixturevalue("azure_store")


@pytest.mark.parametrize("order", ["b-updates-first", "a-updates-first"])
@pytest.mark.timeout(60)
async def test_concurrent_uploads_of_different_content_leave_a_truthful_cloud_hash(
        shared_store: Any, tmp_path: Path, order: str) -> None:
    """A stores its content, B replaces it; then both update the cloud hash file."""
    import anyio

    a, b = _two_machines(tmp_path)
    b_stored, a_done = anyio.Event(), anyio.Event()
    outcomes: dict[str, Any] = {}

    async def b_after_put() -> None:
        b_stored.set()
        if order == "a-updates-first":
            await a_done.wait()

    async def machine_b() -> None:
        outcomes["b"] = await _upload_from(b, _pausing(shared_store, b_after_put))

    async def a_after_put() -> None:  # B uploads (and maybe records) between A's put and update
        tg.start_soon(machine_b)
        await b_stored.wait()
        if order == "b-updates-first":
            while "b" not in outcomes:
                await anyio.sleep(0.01)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            outcomes["a"] = await _upload_from(a, _pausing(shared_store, a_after_put))
            a_done.set()
    await _cloud_hash_truthful(shared_store)
    assert (await shared_store.get(PRODUCER)).data == (b / PRODUCER).read_bytes()
    assert outcomes["b"].keys_done == (KEY,) and not outcomes["b"].kept
    # a's content is in the content store; the latest is b's (same code hash: a lost)
    a_lost = [r for k, r in [*outcomes["a"].keys_failed, *outcomes["a"].kept] if k == KEY]
    assert a_lost and ("another upload replaced it" in a_lost[0] or "the latest is another upload" in a_lost[0])
    a_digest = hash_bytes((a / PRODUCER).read_bytes())
    assert (await shared_store.get(f".luisy-cas/{a_digest[:2]}/{a_digest}")).data == (a / PRODUCER).read_bytes()


# -- item 5: an output changed without a code change never silently replaces the cloud copy -----

@pytest.mark.timeout(120)
def test_a_locally_changed_output_does_not_replace_a_good_cloud_copy(machine, tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    ok(machine("a", "Consumer", "--upload"))
    good = (remote / PRODUCER).read_bytes()
    (tmp_path / "a" / PRODUCER).write_bytes(good[: len(good) // 2])  # truncated by accident

    plan = ok(machine("a", "Consumer", "--upload", "--dry-run"))
    assert "not uploaded: changed without a code change (1)" in plan, plan[-2000:]
    text = ok(machine("a", "Consumer", "--upload"))
    assert f"warning: not uploading {KEY}: its content differs from the cloud copy" in text, text[-2000:]
    assert (remote / PRODUCER).read_bytes() == good
    assert_cloud_truthful(remote)

    (tmp_path / "a" / PRODUCER).unlink()  # the documented way to replace it: rerun the task
    rerun = ok(machine("a", "Producer", "--upload", SAFETY_ROWS="60"))
    assert "warning" not in rerun
    assert (remote / PRODUCER).read_bytes() == (tmp_path / "a" / PRODUCER).read_bytes() != good
    assert_cloud_truthful(remote)


# -- item 9: output collisions, bad remote and report paths are found before any task runs ------

def _one_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode != 0 and "Traceback" not in proc.stdout + proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("luisy: error:")]
    assert len(errors) == 1, proc.stderr[-2000:]
    for needle in needles:
        assert needle in errors[0], errors[0]


@pytest.mark.timeout(60)
def test_distinct_tasks_sharing_an_output_file_are_refused_before_the_run(machine, tmp_path: Path) -> None:
    proc = machine("a", "Collide")
    _one_error(proc, "would both write /safety/interim/Named_label=a_b.pkl", "nothing was run")
    assert not (tmp_path / "a" / PROJECT).exists()


@pytest.mark.timeout(60)
def test_a_bad_local_remote_or_report_path_fails_before_any_task(machine, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    proc = machine("a", "Consumer", "--upload", LUISY_REMOTE="", LUISY_LOCAL_REMOTE=str(tmp_path / "a-file" / "remote"))
    _one_error(proc, "cannot be created", "a-file is a file", "nothing was run")
    assert not (tmp_path / "a" / PROJECT).exists()
    proc = machine("a", "Consumer", "--json", str(tmp_path / "missing" / "report.json"))
    _one_error(proc, "--json", "does not exist")
    assert not (tmp_path / "a" / PROJECT).exists()


@pytest.mark.parametrize("damage", ["deleted", "replaced"])
@pytest.mark.timeout(60)
async def test_upload_repairs_the_object_behind_a_current_entry(shared_store: Any, tmp_path: Path,
                                                                damage: str) -> None:
    """Item 1 on every store: the entry is current, the object is gone or holds other bytes."""
    from luisy_sync.stores.base import DIGEST_KEY

    a, _ = _two_machines(tmp_path)
    first = await _upload_from(a, shared_store)
    assert first.keys_done == (KEY,)
    if damage == "deleted":
        await shared_store.delete(PRODUCER)
    else:
        other = b"someone else's bytes"
        await shared_store.put(PRODUCER, other, metadata={DIGEST_KEY: hash_bytes(other)})
    repaired = await _upload_from(a, shared_store)
    assert repaired.keys_done == (KEY,) and repaired.files == 1
    assert (await shared_store.get(PRODUCER)).data == (a / PRODUCER).read_bytes()
    await _cloud_hash_truthful(shared_store)

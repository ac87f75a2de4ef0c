"""The cloud cache keyed by code hash (issue 13): every uploaded version stays
downloadable, content is stored once by digest, branch switches run nothing, concurrent
uploads of two versions keep both, and the 1.4.7 path layout keeps showing the latest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

import luisy
from luisy.cloud import open_session, read_state, upload
from luisy.cloud.state import CloudState, read_cloud_state
from luisy.cloud.sync import OutputsReport
from luisy.cloud.uploadplan import plan_uploads
from luisy.cloud.sync import upload as upload_outputs
from luisy.errors import CloudHashError
from luisy.graph import Output
from luisy.hashfile import CloudEntry, hash_object
from luisy.versions import (CAS_PREFIX, VERSIONS_FORMAT, cas_name, merge_versions, named_digests,
                            parse_versions, select_entry, versions_object)
from luisy_sync import hash_bytes
from luisy_sync.stores.base import Store
from luisy_sync.stores.small import read_small
from luisy_sync.stores.wrappers import Fault, FaultStore
from luisy_sync.tree import FileEntry, Tree

from cloud_helpers import (DOUBLE, FINAL, V2, V3, cas_objects, layout_is_true, read_json, read_object, store_call,
                           upload_two_branches)

pytestmark = pytest.mark.timeout(240)

REPO = Path(__file__).resolve().parents[2]
ALL = ["Double", "Final", "Raw", "Table"]
D1, D2 = "a" * 32, "b" * 32
FILE = "/p/interim/X.pkl"


# -- pure parts ---------------------------------------------------------------------------

def _entry(code_hash: str, digest: str, size: int = 3) -> CloudEntry:
    return CloudEntry.from_json({"hash": code_hash, "digest": digest, "size": size})


def test_names_of_the_index_and_the_content_store():
    assert versions_object("p") == "p/.luisy.versions"
    assert cas_name(D1) == f"{CAS_PREFIX}/aa/{D1}"


def test_merge_keeps_other_versions_and_the_upload_time_of_a_stored_one():
    doc = merge_versions(None, {FILE: _entry("h1", D1)}, 100.0, "x")
    assert doc == {"format": VERSIONS_FORMAT, "versions": {FILE: {"h1": {
        "hash": "h1", "digest": D1, "size": 3, "uploaded": 100.0}}}}
    doc = merge_versions(doc, {FILE: _entry("h2", D2), "/p/raw/Y.csv": _entry("h1", D1)}, 200.0, "x")
    assert set(doc["versions"][FILE]) == {"h1", "h2"} and doc["versions"][FILE]["h1"]["uploaded"] == 100.0
    assert merge_versions(doc, {FILE: _entry("h1", D1)}, 300.0, "x") == doc  # stored: no change
    assert merge_versions(doc, {FILE: _entry("h4", "c" * 32)}, 300.0, "x", named_only=True) == doc
    assert set(merge_versions(doc, {FILE: _entry("h4", D2)}, 300.0, "x", named_only=True)["versions"][FILE]) == \
        {"h1", "h2", "h4"}
    replaced = merge_versions(doc, {FILE: _entry("h1", D2)}, 300.0, "x")  # same code, other content
    assert replaced["versions"][FILE]["h1"] == {"hash": "h1", "digest": D2, "size": 3, "uploaded": 300.0}
    versions = parse_versions(replaced, "x")
    assert versions[FILE] == {"h1": _entry("h1", D2), "h2": _entry("h2", D2)}
    assert named_digests(versions) == {D1, D2}


@pytest.mark.parametrize("doc", [
    {"versions": {}}, {"format": VERSIONS_FORMAT, "versions": []},
    {"format": VERSIONS_FORMAT, "versions": {FILE: {"h1": "h1"}}},  # names no content
    {"format": VERSIONS_FORMAT, "versions": {FILE: {"h1": {"hash": "h2", "digest": D1, "size": 1}}}},
    {"format": VERSIONS_FORMAT, "versions": {FILE: {"h1": {"hash": "h1", "digest": 5, "size": 1}}}},
])
def test_a_malformed_index_is_never_merged_into(doc):
    with pytest.raises(CloudHashError, match="corrupt"):
        parse_versions(doc, "x")
    with pytest.raises(CloudHashError):
        merge_versions(doc, {FILE: _entry("h1", D1)}, 1.0, "x")


def test_the_version_of_the_wanted_hash_wins_over_the_latest():
    latest, old = _entry("h3", D2), _entry("h2", D1)
    assert select_entry(latest, {"h2": old, "h3": latest}, "h2") == old
    assert select_entry(latest, {"h2": old}, "h9") == latest
    assert select_entry(None, {"h2": old}, None) is None
    state = CloudState(entries={FILE: latest}, objects=Tree({"p/interim/X.pkl": FileEntry(3, D2)}),
                       versions={FILE: {"h2": old, "h3": latest}}, hashes={FILE: "h2"})
    assert state.sources(FILE, False) == {"p/interim/X.pkl": (cas_name(D1), FileEntry(3, D1))}
    assert state.verifiable_entries({FILE: False}) == {FILE: old}
    assert state.sources(FILE, True) is None  # the version is a file, not a directory
    state.hashes[FILE] = "h9"  # no such version: the latest, at its path
    assert state.sources(FILE, False) == {"p/interim/X.pkl": ("p/interim/X.pkl", FileEntry(3, D2))}


def test_upload_plan_puts_each_digest_once_and_relies_on_stored_content():
    local = Tree({"p/interim/A.pkl": FileEntry(3, D1), "p/interim/B.pkl": FileEntry(3, D1),
                  "p/interim/C.pkl": FileEntry(3, D2)}, root="/wd")
    outs = [Output(f"/p/interim/{n}.pkl", f"/wd/p/interim/{n}.pkl", "p", False, "h") for n in "ABC"]
    state = CloudState(versions={"/p/interim/Z.pkl": {"h0": CloudEntry.from_json(
        {"hash": "h0", "digest": D2, "size": 3})}})
    plan = plan_uploads(outs, local, state)
    assert plan.content == {"/p/interim/A.pkl": ["p/interim/A.pkl"], "/p/interim/B.pkl": [],
                            "/p/interim/C.pkl": []}
    assert plan.relied() == {D2: "p/interim/C.pkl"}
    assert all(plan.placed[o.key] == [o.key.lstrip("/")] for o in outs)


# -- end to end -----------------------------------------------------------------------------

def test_branches_each_get_their_own_results_and_switching_runs_nothing(pipeline, run_log, remote, machines):
    v2 = pipeline.load()
    machines("a")
    assert luisy.build(v2.Final(), upload=True).success and run_log() == ALL
    pipeline.edit(V2, V3)
    v3 = pipeline.load()
    machines("b")
    assert luisy.build(v3.Final(), download=True, upload=True).success
    assert run_log() == ["Double", "Final"]
    versions = layout_is_true()
    assert len(versions[FINAL]) == 2 and len(versions[DOUBLE]) == 2 and len(versions["/cloudproj/raw/Raw_n=5.pkl"]) == 1
    latest = store_call(read_json, hash_object("cloudproj"))[FINAL]
    assert latest["hash"] == max(versions[FINAL].items(), key=lambda kv: kv[1]["uploaded"])[0]  # v3's

    pipeline.edit(V3, V2)
    v2 = pipeline.load()
    machines("fresh-v2")
    result = luisy.build(v2.Final(), download=True)
    assert result.success and run_log() == [] and result.plan.to_download == (FINAL,)
    assert v2.Final().read() == {"sum": 20, "rows": 5}
    pipeline.edit(V2, V3)
    v3 = pipeline.load()
    machines("fresh-v3")
    assert luisy.build(v3.Final(), download=True).success and run_log() == []
    assert v3.Final().read() == {"sum": 30, "rows": 5}

    machines("switching")  # one machine: v3 -> v2 -> v3 -> v2, each with --download
    for edit, module_sum in (((V3, V3), 30), ((V3, V2), 20), ((V2, V3), 30), ((V3, V2), 20)):
        pipeline.edit(*edit)
        mod = pipeline.load()
        result = luisy.build(mod.Final(), download=True)
        assert result.success and run_log() == [] and result.plan.to_download == (FINAL,)
        assert mod.Final().read()["sum"] == module_sum
    assert store_call(read_json, hash_object("cloudproj"))[FINAL] == latest  # downloads move nothing


def test_an_old_version_uploaded_again_does_not_move_the_latest(pipeline, run_log, local_remote, machines):
    upload_two_branches(pipeline, machines)
    latest = (local_remote / "cloudproj" / "final" / "Final_n=5.pkl").read_bytes()
    pipeline.edit(V3, V2)
    v2 = pipeline.load()
    machines("a")  # machine a is still on v2 and uploads again: everything is a stored version
    before = store_call(read_json, versions_object("cloudproj"))
    open_session().current_hashes.clear()  # (this process last ran v3: hash the tasks again)
    outcome = upload([v2.Final(), v2.Double(), v2.Table(), v2.Raw()])
    assert outcome.keys_done == () and "nothing to upload" in outcome.summary_line()
    assert (local_remote / "cloudproj" / "final" / "Final_n=5.pkl").read_bytes() == latest
    assert store_call(read_json, versions_object("cloudproj")) == before


def test_identical_content_is_stored_once(pipeline, run_log, remote, machines, tmp_path):
    v2 = pipeline.load()
    machines("a")
    assert luisy.build(v2.Final(), upload=True).success
    cas = store_call(cas_objects)
    assert len(cas) == 4  # Raw, Double, Table's one part, Final
    pipeline.edit(V2, "[x * 2 for x")  # new code, same results
    v3 = pipeline.load()
    machines("b")
    assert luisy.build(v3.Final(), download=True, upload=True).success
    assert run_log() == sorted(ALL + ["Double", "Final"])
    versions = layout_is_true()
    assert len(versions[DOUBLE]) == 2 and len(versions[FINAL]) == 2
    assert store_call(cas_objects) == cas  # two new versions, no new content

    wd = machines("c")  # two outputs of two projects with the same bytes: one object
    outputs = []
    for project in ("pa", "pb"):
        path = wd / project / "interim" / "Same.pkl"
        path.parent.mkdir(parents=True)
        path.write_bytes(b"the same bytes in two projects")
        outputs.append(Output(f"/{project}/interim/Same.pkl", str(path), project, False, "h-" + project))
    outcome = upload(outputs)
    assert outcome.keys_done == ("/pa/interim/Same.pkl", "/pb/interim/Same.pkl")
    assert outcome.report.bytes_transferred == len(b"the same bytes in two projects")
    assert len(store_call(cas_objects)) == len(cas) + 1
    for project in ("pa", "pb"):
        assert store_call(read_object, f"{project}/interim/Same.pkl") == b"the same bytes in two projects"
        layout_is_true(project)


@pytest.mark.parametrize("order", ["b-records-first", "a-records-first"])
def test_concurrent_uploads_of_two_versions_keep_both(remote, tmp_path, order):
    key, name = "/vproj/interim/Out.pkl", "vproj/interim/Out.pkl"
    machines = {m: tmp_path / m for m in "ab"}
    for m, wd in machines.items():
        (wd / name).parent.mkdir(parents=True)
        (wd / name).write_bytes(f"machine {m} made this with its own code".encode())
    session = open_session()
    outcomes: dict[str, OutputsReport] = {}

    async def race(store: Store) -> None:
        placed = {m: anyio.Event() for m in machines}
        done = {m: anyio.Event() for m in machines}

        async def one(m: str, other: str) -> None:
            async def after_copy() -> None:  # both path views are made before either records
                placed[m].set()
                await placed[other].wait()
                if (order == "b-records-first") == (m == "a"):
                    await done[other].wait()

            view = FaultStore(store, Fault("copy", after=after_copy), batch=False)
            state = await read_cloud_state(view, ["vproj"])
            output = Output(key, str(machines[m] / name), "vproj", False, f"hash-of-{m}")
            outcomes[m] = await upload_outputs(view, str(machines[m]), [output], state)
            done[m].set()

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(one, "a", "b")
                tg.start_soon(one, "b", "a")

    session.call(race, session.store())
    assert all(o.ok and o.keys_done == (key,) for o in outcomes.values())
    kept = [m for m, o in outcomes.items() if o.kept]
    assert len(kept) == 1 and "the latest is another upload" in outcomes[kept[0]].kept[0][1]
    versions = layout_is_true("vproj")
    assert set(versions[key]) == {"hash-of-a", "hash-of-b"}
    winner = "a" if kept == ["b"] else "b"
    assert store_call(read_object, name) == (machines[winner] / name).read_bytes()
    loser = (machines[kept[0]] / name).read_bytes()
    state = read_state("vproj", hashes={key: f"hash-of-{kept[0]}"})  # the loser's version downloads
    assert state.sources(key, False) == {name: (cas_name(hash_bytes(loser)), FileEntry(len(loser), hash_bytes(loser)))}


def test_a_missing_content_object_fails_the_download_and_the_task_runs(pipeline, run_log, local_remote, machines):
    v2 = pipeline.load()
    machines("a")
    assert luisy.build(v2.Final(), upload=True).success
    run_log()
    digest = store_call(read_json, versions_object("cloudproj"))["versions"][FINAL]
    (local_remote / cas_name(next(iter(digest.values()))["digest"])).unlink()
    machines("b")
    result = luisy.build(v2.Final(), download=True)
    assert result.success and run_log() == ALL  # Final's download failed: it ran, and its inputs


def test_branch_switch_through_the_cli(pipeline, run_log, local_remote, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ["PYTHONPATH"]])}

    def luisy_cli(wd: str, *flags: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "luisy.cli", "--module", pipeline.module, "Final",
                               *flags, "--working-dir", str(tmp_path / wd), "--no-ask"],
                              capture_output=True, text=True, env=env, timeout=200)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout

    luisy_cli("a", "--upload")
    assert run_log() == ALL
    pipeline.edit(V2, V3)
    luisy_cli("b", "--download", "--upload")
    assert run_log() == ["Double", "Final"]
    pipeline.edit(V3, V2)
    out = luisy_cli("c", "--download")
    assert run_log() == [] and "download: 1 output(s)" in out
    pipeline.edit(V2, V3)
    out = luisy_cli("c", "--download")
    assert run_log() == [] and "download: 1 output(s)" in out


def _two_branches_uploaded(pipeline, machines):
    """``upload_two_branches``, then the package back on v2, returned loaded."""
    upload_two_branches(pipeline, machines)
    pipeline.edit(V3, V2)
    open_session().current_hashes.clear()  # (this process last ran v3: hash the tasks again)
    return pipeline.load()


def test_reads_task_download_and_status_find_an_older_version(pipeline, run_log, remote, machines):
    from luisy.status import CURRENT, DOWNLOAD, collect_status

    v2 = _two_branches_uploaded(pipeline, machines)
    run_log()
    wd = machines("c")
    lines = {t.key: t for t in collect_status(v2.Final(), say=lambda _line: None).tasks}
    assert lines[FINAL].cloud == CURRENT and lines[FINAL].action == DOWNLOAD
    assert lines[DOUBLE].cloud == CURRENT
    luisy.activate_download()  # (the machines fixture resets the config afterwards)
    assert v2.Double().read() == [0, 2, 4, 6, 8]  # v2's, though v3's is the latest
    v2.Final().download()
    assert v2.Final().read() == {"sum": 20, "rows": 5} and run_log() == []
    recorded = json.loads((wd / "cloudproj" / ".luisy.hash").read_text())
    versions = store_call(read_json, versions_object("cloudproj"))["versions"]
    assert recorded[FINAL] in versions[FINAL] and recorded[FINAL] != \
        store_call(read_json, hash_object("cloudproj"))[FINAL]["hash"]


def test_distributed_lookups_find_an_older_version(pipeline, run_log, local_remote, machines):
    from luisy.cloud.distributed import CloudShare

    v2 = _two_branches_uploaded(pipeline, machines)
    wd = machines("c")
    share = CloudShare(open_session())
    entry = share.current_entry(v2.Final(), fresh=True)
    versions = store_call(read_json, versions_object("cloudproj"))["versions"]
    assert entry is not None and entry.to_json() == {k: v for k, v in versions[FINAL][entry.code_hash].items()
                                                     if k not in ("uploaded", "parts")}
    assert share.fetch([v2.Final()]) == [FINAL]
    assert v2.Final().read() == {"sum": 20, "rows": 5}
    assert json.loads((wd / "cloudproj" / ".luisy.hash").read_text())[FINAL] == entry.code_hash


async def test_content_a_concurrent_gc_dropped_is_uploaded_before_the_index_is_written(tmp_path):
    """The upload is planned against an index whose other version names its content (so
    the content is not sent); then gc removes that version and its content: the merge
    into the index, which runs after every read (the retries of a failed conditional
    write included), finds the content unnamed and uploads it before naming it."""
    from luisy_sync.stores.memory import MemoryStore

    store = MemoryStore()
    data = b"content both versions share"
    digest = hash_bytes(data)
    for wd, key in ((tmp_path / "old", "/p/interim/Old.pkl"), (tmp_path / "new", "/p/interim/New.pkl")):
        (wd / key.lstrip("/")).parent.mkdir(parents=True)
        (wd / key.lstrip("/")).write_bytes(data)
    first = await upload_outputs(store, str(tmp_path / "old"), [
        Output("/p/interim/Old.pkl", "", "p", False, "h-old")], CloudState())
    assert first.keys_done == ("/p/interim/Old.pkl",)

    async def gc() -> None:  # after the upload planned (its path view is made), before it records
        if not gc_ran:
            gc_ran.append(True)
            raw, _etag = await read_small(store, versions_object("p"))
            doc = json.loads(raw)
            del doc["versions"]["/p/interim/Old.pkl"]
            await store.put(versions_object("p"), json.dumps(doc).encode())
            await store.delete(cas_name(digest))

    gc_ran: list[bool] = []
    view = FaultStore(store, Fault("copy", after=gc), batch=False)
    outcome = await upload_outputs(view, str(tmp_path / "new"), [
        Output("/p/interim/New.pkl", "", "p", False, "h-new")], CloudState())
    assert gc_ran and outcome.keys_done == ("/p/interim/New.pkl",) and outcome.report.bytes_transferred == len(data)
    assert (await store.get(cas_name(digest))).data == data
    versions = parse_versions(json.loads((await read_small(store, versions_object("p")))[0]), "x")
    assert list(versions) == ["/p/interim/New.pkl"]


def test_two_processes_upload_two_versions_at_once(pipeline, run_log, remote, tmp_path):
    """Machines on v2 and v3 run and upload at the same time (separate processes)."""
    import shutil

    v3_src = tmp_path / "src-v3"
    shutil.copytree(pipeline.dir, v3_src / pipeline.name)
    tasks = v3_src / pipeline.name / "tasks.py"
    tasks.write_text(tasks.read_text().replace(V2, V3))
    procs = []
    for wd, src in (("m-v2", pipeline.src), ("m-v3", v3_src)):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), str(REPO)])}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "luisy.cli", "--module", pipeline.module, "Final", "--upload",
             "--working-dir", str(tmp_path / wd), "--no-ask"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for proc in procs:
        _out, err = proc.communicate(timeout=200)
        assert proc.returncode == 0, err[-2000:]
    assert run_log() == sorted(ALL + ALL)
    versions = layout_is_true()
    assert len(versions[FINAL]) == 2 and len(versions[DOUBLE]) == 2
    assert len(versions["/cloudproj/raw/Raw_n=5.pkl"]) == 1  # same code on both: one version
    for wd in ("m-v2", "m-v3"):  # each machine's results are a version in the cloud
        recorded = json.loads((tmp_path / wd / "cloudproj" / ".luisy.hash").read_text())
        for key in (FINAL, DOUBLE):
            digest = hash_bytes((tmp_path / wd / key.lstrip("/")).read_bytes())
            assert versions[key][recorded[key]]["digest"] == digest


def test_a_new_version_keeps_the_parts_of_its_hash_and_bad_parts_explain_nothing():
    from luisy.codehash import CodePart, HashParts
    from luisy.versions import version_parts

    parts = HashParts(CodePart("p.tasks.X", "class", "p/tasks.py", D1), packages=("pandas==2.0.0",))
    doc = merge_versions(None, {FILE: _entry("h1", D1)}, 100.0, "x", parts={FILE: parts})
    assert version_parts(doc) == {(FILE, "h1"): parts}
    assert parse_versions(doc, "x")[FILE]["h1"] == _entry("h1", D1)  # planning ignores the parts
    doc["versions"][FILE]["h1"]["parts"] = {"task": "not a part"}
    assert version_parts(doc) == {} and version_parts(None) == {}

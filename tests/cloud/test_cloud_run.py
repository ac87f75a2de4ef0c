"""luisy.build with download/upload against a local remote and Azurite (in process)."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from pathlib import Path

import pytest

import luisy
from luisy.cloud import CloudError, open_session, read_state
from luisy.config import Config

pytestmark = pytest.mark.timeout(180)

ALL = ["Double", "Final", "Raw", "Table"]


def read_cloud_entries(project: str) -> dict:
    """The cloud hash file of ``project`` as JSON values (the shapes other readers see)."""
    return {k: e.to_json() for k, e in read_state(project).entries.items()}


def _files(wd: Path) -> set[str]:
    return {p.relative_to(wd).as_posix() for p in wd.rglob("*") if p.is_file()}


def test_upload_then_fresh_machine_downloads_only_the_final_output(pipeline, run_log, remote, machines):
    mod = pipeline.load()
    machines("a")
    result = luisy.build(mod.Final(), upload=True)
    assert result.success and run_log() == ALL
    entries = read_cloud_entries("cloudproj")
    assert len(entries) == 4
    table = next(e for k, e in entries.items() if "/Table" in k)
    assert set(table) == {"hash", "files", "size"} and list(table["files"]) == ["part-00000.parquet"]
    final = next(e for k, e in entries.items() if k.startswith("/cloudproj/final/"))
    assert set(final) == {"hash", "digest", "size"} and len(final["digest"]) == 32

    wd_b = machines("b")
    result = luisy.build(mod.Final(), download=True)
    assert result.success and run_log() == []
    assert result.plan.to_download == (next(k for k in entries if k.startswith("/cloudproj/final/")),)
    assert _files(wd_b) == {"cloudproj/final/Final_n=5.pkl", "cloudproj/.luisy.hash", "cloudproj/.luisy.parts"}
    assert mod.Final().read() == {"sum": 20, "rows": 5}
    stored = json.loads((wd_b / "cloudproj" / ".luisy.hash").read_text())
    assert stored == {"/cloudproj/final/Final_n=5.pkl": final["hash"]}


def test_code_change_runs_the_task_and_its_downstream_and_downloads_the_rest(
        pipeline, run_log, remote, machines):
    mod = pipeline.load()
    machines("a")
    assert luisy.build(mod.Final(), upload=True).success
    run_log()
    pipeline.edit("[2 * x for x", "[2 * int(x) for x")
    mod = pipeline.load()
    wd_b = machines("b")
    result = luisy.build(mod.Final(), download=True, upload=True)
    assert result.success
    assert run_log() == ["Double", "Final"]
    # Final reruns and needs Table (downloaded); Double reruns and needs Raw (downloaded)
    assert sorted(result.plan.to_download) == ["/cloudproj/interim/Table_n=5", "/cloudproj/raw/Raw_n=5.pkl"]
    assert (wd_b / "cloudproj" / "raw" / "Raw_n=5.pkl").is_file()
    assert (wd_b / "cloudproj" / "interim" / "Table_n=5" / "part-00000.parquet").is_file()
    # the new hashes are in the cloud now: a third machine downloads Final only
    machines("c")
    result = luisy.build(mod.Final(), download=True)
    assert result.success and run_log() == [] and len(result.plan.to_download) == 1


def test_upload_includes_outputs_made_earlier_and_is_idempotent(pipeline, run_log, local_remote, machines):
    mod = pipeline.load()
    machines("a")
    assert luisy.build(mod.Final()).success  # no upload yet
    run_log()
    result = luisy.build(mod.Final(), upload=True)
    assert result.success and run_log() == []
    assert len(read_cloud_entries("cloudproj")) == 4
    etag_before = (local_remote / "cloudproj" / ".luisy.hash").stat().st_mtime_ns
    assert luisy.build(mod.Final(), upload=True).success
    assert (local_remote / "cloudproj" / ".luisy.hash").stat().st_mtime_ns == etag_before


def test_changed_content_with_same_code_is_held_back_unless_recomputed(pipeline, run_log,
                                                                       local_remote, machines):
    mod = pipeline.load()
    wd = machines("a")
    assert luisy.build(mod.Final(), upload=True).success
    before = read_cloud_entries("cloudproj")["/cloudproj/final/Final_n=5.pkl"]
    good = (local_remote / "cloudproj" / "final" / "Final_n=5.pkl").read_bytes()
    (wd / "cloudproj" / "final" / "Final_n=5.pkl").write_bytes(b"\x80\x04N.")  # pickle of None
    assert luisy.build(mod.Final(), upload=True).success
    assert read_cloud_entries("cloudproj")["/cloudproj/final/Final_n=5.pkl"] == before
    assert (local_remote / "cloudproj" / "final" / "Final_n=5.pkl").read_bytes() == good

    (wd / "cloudproj" / "final" / "Final_n=5.pkl").unlink()  # recomputed: may replace the copy
    assert luisy.build(mod.Final(), upload=True).success
    assert read_cloud_entries("cloudproj")["/cloudproj/final/Final_n=5.pkl"]["hash"] == before["hash"]


def test_dry_run_changes_nothing_local_or_remote(pipeline, run_log, remote, machines):
    mod = pipeline.load()
    machines("a")
    assert luisy.build(mod.Final(), upload=True).success
    run_log()
    pipeline.edit('log_run("Final")', 'log_run("Final" + "")')
    mod = pipeline.load()
    wd_b = machines("b")
    session = open_session()
    store = session.store()
    listing = session.call(store.list, "")
    cloud_before = read_cloud_entries("cloudproj")
    result = luisy.build(mod.Final(), download=True, upload=True, dry_run=True)
    assert result.success and run_log() == []
    assert result.plan.to_run == (next(iter(result.plan.to_run)),) and "Final" in result.plan.to_run[0]
    assert _files(wd_b) == set()
    assert read_cloud_entries("cloudproj") == cloud_before
    assert session.call(store.list, "") == listing


def test_corrupt_cloud_hash_file_is_one_clear_error_and_nothing_runs(pipeline, run_log, local_remote, machines):
    mod = pipeline.load()
    (local_remote / "cloudproj").mkdir(parents=True)
    (local_remote / "cloudproj" / ".luisy.hash").write_text("{not json")
    wd = machines("a")
    with pytest.raises(CloudError, match=r"cloud hash file .*corrupt.*nothing was changed"):
        luisy.build(mod.Final(), download=True, upload=True)
    assert run_log() == [] and _files(wd) == set()
    assert (local_remote / "cloudproj" / ".luisy.hash").read_text() == "{not json"


def test_legacy_string_entries_are_read_and_rewritten_with_digests(pipeline, run_log, local_remote, machines):
    mod = pipeline.load()
    machines("a")
    assert luisy.build(mod.Final(), upload=True).success
    path = local_remote / "cloudproj" / ".luisy.hash"
    doc = json.loads(path.read_text())
    legacy = {k: v["hash"] for k, v in doc.items()}
    path.write_text(json.dumps(legacy))
    open_session().store()  # same session, new content on disk
    machines("b")
    run_log()
    result = luisy.build(mod.Final(), download=True, upload=True)
    assert result.success and run_log() == []  # blob metadata still carries the digests
    rewritten = json.loads(path.read_text())
    final_key = "/cloudproj/final/Final_n=5.pkl"
    assert rewritten[final_key] == doc[final_key]  # the output machine b has: with its digest
    assert {k: v for k, v in rewritten.items() if k != final_key} == \
        {k: v for k, v in legacy.items() if k != final_key}


def test_activate_download_reads_a_verified_output(pipeline, run_log, remote, machines):
    mod = pipeline.load()
    machines("a")
    assert luisy.build(mod.Final(), upload=True).success
    run_log()
    wd_b = machines("b")
    luisy.activate_download()
    assert mod.Double().read() == [0, 2, 4, 6, 8]
    assert mod.Table().read()["x"].tolist() == [0, 1, 2, 3, 4]
    assert run_log() == []
    assert (wd_b / "cloudproj" / "interim" / "Table_n=5" / "part-00000.parquet").is_file()
    assert "/cloudproj/interim/Double_n=5.pkl" in json.loads((wd_b / "cloudproj" / ".luisy.hash").read_text())


def test_tampered_cloud_pickle_is_never_unpickled(pipeline, run_log, local_remote, machines):
    mod = pipeline.load()
    machines("a")
    assert luisy.build(mod.Final(), upload=True).success
    blob = local_remote / "cloudproj" / "interim" / "Double_n=5.pkl"
    data = blob.read_bytes()
    blob.write_bytes(data[:-2] + b"X.")  # same size, other bytes; store metadata now ignored
    wd_b = machines("b")
    luisy.activate_download()
    with pytest.raises((CloudError, ValueError)):
        mod.Double().read()
    assert not (wd_b / "cloudproj" / "interim" / "Double_n=5.pkl").exists()


@pytest.mark.parametrize("where", ["main thread", "other thread"])
def test_build_from_a_thread_running_an_asyncio_loop(pipeline, run_log, local_remote, machines, where):
    mod = pipeline.load()
    machines("a")
    results: list[object] = []

    async def app() -> None:
        await asyncio.sleep(0)
        results.append(luisy.build(mod.Final(), upload=True, download=True))

    if where == "main thread":
        asyncio.run(app())
    else:
        thread = threading.Thread(target=lambda: asyncio.run(app()))
        thread.start()
        thread.join(120)
    assert results and results[0].success
    assert run_log() == ALL
    assert len(read_cloud_entries("cloudproj")) == 4


def test_hash_update_mode_with_upload_refreshes_cloud_hashes(pipeline, run_log, local_remote, machines):
    mod = pipeline.load()
    machines("a")
    assert luisy.build(mod.Final(), upload=True).success
    before = read_cloud_entries("cloudproj")
    pipeline.edit("[2 * x for x", "[x * 2 for x")
    mod = pipeline.load()
    result = luisy.build(mod.Final(), hash_update_mode=True, upload=True)
    assert result.success
    after = read_cloud_entries("cloudproj")
    changed = {k for k in after if after[k]["hash"] != before[k]["hash"]}
    assert changed == {"/cloudproj/interim/Double_n=5.pkl", "/cloudproj/final/Final_n=5.pkl"}
    assert all(after[k]["digest"] == before[k]["digest"] for k in changed)
    versions = read_state("cloudproj").versions  # the refreshed hashes are versions too
    assert all(set(versions[k]) == {before[k]["hash"], after[k]["hash"]} for k in changed)
    machines("b")
    run_log()
    assert luisy.build(mod.Final(), download=True).success and run_log() == []
    assert Config().working_dir.endswith("b")
    assert os.path.exists(os.path.join(Config().working_dir, "cloudproj", "final", "Final_n=5.pkl"))

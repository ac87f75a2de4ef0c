"""``luisy gc``: stale versions and the content only they name go (with ``--yes``), a dry
run changes nothing, referenced content never goes, and an upload running at the same
time keeps everything its index names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

import luisy
from luisy.cloud import collect_garbage
from luisy.cloud.gc import collect_garbage as collect_async
from luisy.gcplan import CLOCK_SLACK, GcPlan, content_digest, plan_gc, prune, upload_times
from luisy.hashfile import CloudEntry, hash_object
from luisy.versions import CAS_PREFIX, cas_name, parse_versions
from luisy_sync.stores.base import ObjectInfo, Store
from luisy_sync.stores.url import store_from_env
from luisy_sync.stores.wrappers import Fault, FaultStore

from cloud_helpers import DOUBLE, FINAL, V2, V3, layout_is_true, read_json, store_call, upload_two_branches

pytestmark = pytest.mark.timeout(240)

REPO = Path(__file__).resolve().parents[2]
D1, D2, D3 = "a" * 32, "b" * 32, "c" * 32
DAY = 86400.0


# -- pure parts ---------------------------------------------------------------------------

def _entry(code_hash: str, digest: str, size: int = 10) -> CloudEntry:
    return CloudEntry.from_json({"hash": code_hash, "digest": digest, "size": size})


def _index(*versions: tuple[str, str, str, float]) -> dict:
    """An index document of ``(key, code hash, digest, uploaded)`` versions."""
    doc: dict = {"format": "luisy-versions/1", "versions": {}}
    for key, code_hash, digest, uploaded in versions:
        doc["versions"].setdefault(key, {})[code_hash] = {**_entry(code_hash, digest).to_json(),
                                                          "uploaded": uploaded}
    return doc


def _content(*digests_and_times: tuple[str, float | None]) -> dict[str, ObjectInfo]:
    return {cas_name(d): ObjectInfo(cas_name(d), 10, '"e"', {}, t) for d, t in digests_and_times}


NOW = 100 * DAY
OLD, YOUNG = NOW - 30 * DAY, NOW - 1 * DAY

# id, versions of project p (key, hash, digest, uploaded), latest hash per key, content
# (digest, modified), expected stale (key, hash) and deleted digests (grace 7 days)
PLAN_CASES = [
    ("old-non-latest-goes", [("/p/X", "h2", D1, OLD), ("/p/X", "h3", D2, OLD)], {"/p/X": "h3"},
     [(D1, OLD), (D2, OLD)], [("/p/X", "h2")], [D1]),
    ("the-latest-stays-however-old", [("/p/X", "h2", D1, OLD)], {"/p/X": "h2"}, [(D1, OLD)], [], []),
    ("young-versions-stay", [("/p/X", "h2", D1, YOUNG), ("/p/X", "h3", D2, OLD)], {"/p/X": "h3"},
     [(D1, OLD), (D2, OLD)], [], []),
    ("content-another-version-names-stays", [("/p/X", "h2", D1, OLD), ("/p/Y", "h9", D1, OLD)],
     {"/p/X": "h3", "/p/Y": "h9"}, [(D1, OLD)], [("/p/X", "h2")], []),
    ("young-or-undated-content-stays", [("/p/X", "h2", D1, OLD), ("/p/X", "h4", D3, OLD)], {"/p/X": "h3"},
     [(D1, YOUNG), (D3, None)], [("/p/X", "h2"), ("/p/X", "h4")], []),
    ("orphan-content-goes", [("/p/X", "h3", D2, OLD)], {"/p/X": "h3"}, [(D1, OLD), (D2, OLD)], [], [D1]),
    ("a-key-without-latest-is-all-stale", [("/p/X", "h2", D1, OLD)], {}, [(D1, OLD)], [("/p/X", "h2")], [D1]),
]


@pytest.mark.parametrize(("versions", "latest", "content", "stale", "deleted"), [c[1:] for c in PLAN_CASES],
                         ids=[c[0] for c in PLAN_CASES])
def test_plan(versions, latest, content, stale, deleted) -> None:
    doc = _index(*versions)
    pointers = {k: _entry(h, next(d for kk, hh, d, _ in versions if (kk, hh) == (k, h)))
                for k, h in latest.items() if any((kk, hh) == (k, h) for kk, hh, _, _ in versions)}
    plan = plan_gc({"p": (parse_versions(doc, "x"), upload_times(doc))}, {"p": pointers},
                   _content(*content), NOW - 7 * DAY)
    assert [(v.key, v.code_hash) for v in plan.versions] == stale
    assert [content_digest(o.name) for o in plan.objects] == deleted
    assert plan.bytes == 10 * len(deleted)


def test_prune_decides_again_with_the_latest_read_now() -> None:
    doc = _index(("/p/X", "h2", D1, OLD), ("/p/X", "h3", D2, OLD))
    versions = parse_versions(doc, "x")
    assert set(prune(doc, versions, {"/p/X": _entry("h3", D2)}, NOW)["versions"]["/p/X"]) == {"h3"}
    # h2 became the latest meanwhile (another upload): it stays, h3 goes
    assert set(prune(doc, versions, {"/p/X": _entry("h2", D1)}, NOW)["versions"]["/p/X"]) == {"h2"}
    assert content_digest(f"{CAS_PREFIX}/zz/{D1}") is None and content_digest("p/x") is None
    assert GcPlan().monthly_saving() == 0.0


# -- end to end -----------------------------------------------------------------------------

async def _listing(store: Store) -> dict[str, tuple[int, str | None]]:
    return {i.name: (i.size, i.etag) for i in await store.list("") if not i.name.startswith(".luisy-store/")}


def _two_branches(pipeline, machines, run_log) -> None:
    """``upload_two_branches``: Double and Final have two versions."""
    upload_two_branches(pipeline, machines)
    run_log()
    time.sleep(CLOCK_SLACK + 1.0)  # gc with no grace keeps content written in its last seconds


def test_dry_run_reports_and_changes_nothing_then_yes_removes_only_stale_versions(pipeline, run_log, remote,
                                                                                 machines) -> None:
    _two_branches(pipeline, machines, run_log)
    before = store_call(_listing)
    assert collect_garbage().plan == GcPlan(versions_kept=6, objects_kept=6)  # default grace: all young
    dry = collect_garbage(grace_days=0)
    assert sorted(v.key for v in dry.plan.versions) == [FINAL, DOUBLE] and len(dry.plan.objects) == 2
    assert not dry.applied and store_call(_listing) == before
    assert dry.plan.bytes == sum(v.size for v in dry.plan.versions)

    done = collect_garbage(grace_days=0, apply=True)
    assert (done.versions_dropped, done.objects_deleted, done.kept_at_delete) == (2, 2, ())
    versions = layout_is_true()
    assert len(versions[FINAL]) == 1 and len(versions[DOUBLE]) == 1
    assert collect_garbage(grace_days=0).plan.versions == ()  # nothing left to collect

    machines("fresh-v3")  # the latest is untouched: a v3 machine runs nothing
    assert luisy.build(pipeline.load().Final(), download=True).success and run_log() == []
    pipeline.edit(V3, V2)  # v2's own versions are gone: it recomputes what changed
    machines("fresh-v2")
    assert luisy.build(pipeline.load().Final(), download=True).success
    assert run_log() == ["Double", "Final"]


def test_an_upload_during_gc_keeps_the_content_it_names(pipeline, run_log, remote, machines) -> None:
    _two_branches(pipeline, machines, run_log)
    pipeline.edit(V3, V2)
    v2 = pipeline.load()
    machines("a")  # still on v2, with v2's outputs
    uploaded: list[bool] = []

    def upload_v2_now() -> None:  # runs once gc pruned the indexes, before it looks at any content
        if not uploaded:
            uploaded.append(luisy.build(v2.Final(), upload=True).success)

    async def gc_with_a_concurrent_upload() -> object:
        store = FaultStore(store_from_env(), Fault("head", name=lambda n: n.startswith(CAS_PREFIX),
                                                    before=upload_v2_now))
        try:
            return await collect_async(store, grace_days=0, apply=True)
        finally:
            await store.close()

    report = anyio.run(gc_with_a_concurrent_upload)
    assert uploaded == [True]
    assert report.versions_dropped == 2 and report.objects_deleted == 0
    assert len(report.kept_at_delete) == 2  # put again by the upload: written after gc started
    versions = layout_is_true()
    assert len(versions[FINAL]) == 2  # v2 is back, as the latest; v3 stays
    latest = store_call(read_json, hash_object("cloudproj"))[FINAL]["hash"]
    assert CloudEntry.from_json(versions[FINAL][latest]).files == CloudEntry.from_json(
        store_call(read_json, hash_object("cloudproj"))[FINAL]).files


def test_gc_command_dry_run_and_json(pipeline, run_log, local_remote, machines, tmp_path) -> None:
    _two_branches(pipeline, machines, run_log)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    dry = subprocess.run([sys.executable, "-m", "luisy.cli", "gc", "--grace-days", "0"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert dry.stdout.startswith("would remove: 2 version(s) older than 0 day(s)")
    assert "USD/month" in dry.stdout and "dry run: nothing was changed" in dry.stdout
    bad = subprocess.run([sys.executable, "-m", "luisy.cli", "gc", "--grace-days", "-1"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1] == \
        "luisy: error: --grace-days must not be negative"
    done = subprocess.run([sys.executable, "-m", "luisy.cli", "gc", "--grace-days", "0", "--yes", "--json", "-"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["applied"] and report["versions_dropped"] == 2 and report["objects_deleted"] == 2
    assert report["monthly_saving_usd"] >= 0 and report["bytes_deleted"] == report["bytes"]

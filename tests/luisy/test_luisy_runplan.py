"""The pure run planner, as case tables."""

from __future__ import annotations

import pytest

from luisy.hashfile import CloudEntry
from luisy.runplan import (
    PlanTask,
    RunPlan,
    hashes_to_record,
    outdated_keys,
    plan_hash_update,
    plan_run,
)

# raw (external) -> a -> b -> final ; a -> c -> final
GRAPH = [
    PlanTask("raw", "/p/raw/r.csv", (), external=True),
    PlanTask("a", "/p/interim/a.pkl", ("raw",)),
    PlanTask("b", "/p/interim/b.pkl", ("a",)),
    PlanTask("c", "/p/interim/c.pkl", ("a",)),
    PlanTask("final", "/p/final/f.pkl", ("b", "c")),
]
KEYS = {t.name: t.key for t in GRAPH}
H = {k: f"h-{n}" for n, k in KEYS.items()}  # current hashes
ALL = set(KEYS.values())


def stored_with(**changed: str) -> dict[str, str]:
    stored = dict(H)
    for name, value in changed.items():
        stored[KEYS[name]] = value
    return stored


def keys(*names: str) -> tuple[str, ...]:
    return tuple(sorted(KEYS[n] for n in names))


CASES = [
    # id, stored, existing, expected to_run, expected deleted, expected missing external
    ("fresh", {}, {KEYS["raw"]}, ["a", "b", "c", "final"], (), ()),
    ("all-current", H, ALL, [], (), ()),
    ("b-changed", stored_with(b="old", final="old"), ALL, ["b", "final"], keys("b", "final"), ()),
    ("a-changed", stored_with(a="o", b="o", c="o", final="o"), ALL,
     ["a", "b", "c", "final"], keys("a", "b", "c", "final"), ()),
    ("external-hash-changed-is-kept", stored_with(raw="old"), ALL, [], (), ()),
    ("final-missing", H, ALL - {KEYS["final"]}, ["final"], (), ()),
    ("upstream-missing-but-final-there", H, ALL - {KEYS["b"]}, [], (), ()),
    ("raw-missing", {}, set(), ["a", "b", "c", "final"], (), ("raw",)),
    ("stale-entry-without-file", stored_with(c="old"), ALL - {KEYS["c"], KEYS["final"]},
     ["c", "final"], (), ()),
    ("unrecorded-existing-output", {}, ALL, [], (), ()),
]


@pytest.mark.parametrize("stored,existing,to_run,deleted,missing",
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_plan_run_cases(stored, existing, to_run, deleted, missing) -> None:
    plan = plan_run(GRAPH, ["final"], H, stored, existing)
    assert sorted(plan.to_run) == sorted(to_run)
    assert plan.outdated_to_delete == deleted
    assert plan.missing_external == missing
    assert plan.to_download == () and plan.to_upload == ()


def test_to_run_lists_requirements_first() -> None:
    plan = plan_run(GRAPH, ["final"], H, {}, {KEYS["raw"]})
    order = plan.to_run
    assert order.index("a") < order.index("b") < order.index("final")
    assert order.index("a") < order.index("c") < order.index("final")


def test_up_to_date_and_unrecorded() -> None:
    stored = {k: v for k, v in H.items() if k != KEYS["c"]}
    plan = plan_run(GRAPH, ["final"], H, stored, ALL)
    assert plan.up_to_date == tuple(sorted(ALL))
    assert plan.unrecorded == (KEYS["c"],)
    assert not plan.changes_anything


def test_wrapper_without_output_completes_with_its_requirements() -> None:
    graph = GRAPH + [PlanTask("wrap", None, ("b", "c"))]
    assert plan_run(graph, ["wrap"], H, H, ALL).to_run == ()
    plan = plan_run(graph, ["wrap"], H, H, ALL - {KEYS["c"]})
    assert plan.to_run == ("c", "wrap")


def test_unknown_root_is_an_error() -> None:
    with pytest.raises(KeyError):
        plan_run(GRAPH, ["nope"], H, {}, set())


CLOUD_CASES = [
    # id, existing, cloud hashes by task, expected to_run, downloads, uploads
    ("download-final-only", {KEYS["raw"]}, {"final": "h-final", "b": "h-b"}, [], ["final"],
     ["raw"]),
    ("stale-cloud-is-not-downloaded", {KEYS["raw"]}, {"final": "old"}, ["a", "b", "c", "final"],
     [], ["a", "b", "c", "final", "raw"]),
    ("download-b-run-rest", {KEYS["raw"]}, {"b": "h-b"}, ["a", "c", "final"], ["b"],
     ["a", "c", "final", "raw"]),
    ("external-downloaded-whatever-hash", set(), {"raw": "anything"}, ["a", "b", "c", "final"],
     ["raw"], ["a", "b", "c", "final", "raw"]),
]


@pytest.mark.parametrize("existing,cloud,to_run,downloads,uploads",
                         [c[1:] for c in CLOUD_CASES], ids=[c[0] for c in CLOUD_CASES])
def test_plan_with_cloud(existing, cloud, to_run, downloads, uploads) -> None:
    entries = {KEYS[n]: CloudEntry.from_json({"hash": h, "digest": "d", "size": 1})
               for n, h in cloud.items()}
    plan = plan_run(GRAPH, ["final"], H, {}, existing, entries, download=True, upload=True)
    assert sorted(plan.to_run) == sorted(to_run)
    assert plan.to_download == keys(*downloads)
    assert plan.to_upload == keys(*uploads)


def test_cloud_ignored_without_flags() -> None:
    entries = {KEYS["final"]: CloudEntry.from_json(H[KEYS["final"]])}
    plan = plan_run(GRAPH, ["final"], H, {}, {KEYS["raw"]}, entries)
    assert plan.to_download == () and plan.to_upload == ()
    assert len(plan.to_run) == 4


HASH_UPDATE_CASES = [
    ("nothing-stored", {}, ALL, {}),
    ("one-changed", stored_with(b="old"), ALL, {KEYS["b"]: H[KEYS["b"]]}),
    ("changed-but-missing-file", stored_with(b="old"), ALL - {KEYS["b"]}, {}),
    ("external-updated-too", stored_with(raw="old"), ALL, {KEYS["raw"]: H[KEYS["raw"]]}),
]


@pytest.mark.parametrize("stored,existing,expected", [c[1:] for c in HASH_UPDATE_CASES],
                         ids=[c[0] for c in HASH_UPDATE_CASES])
def test_plan_hash_update(stored, existing, expected) -> None:
    assert plan_hash_update(H, stored, existing) == expected


def test_hashes_to_record_skips_failed_and_missing() -> None:
    existing = ALL - {KEYS["c"]}
    recorded = hashes_to_record(H, existing, failed={KEYS["b"]})
    assert set(recorded) == ALL - {KEYS["c"], KEYS["b"]}


def test_outdated_keys_never_lists_external_or_absent() -> None:
    stored = stored_with(raw="x", a="x")
    assert outdated_keys(GRAPH, H, stored, ALL - {KEYS["a"]}) == []
    assert outdated_keys(GRAPH, H, stored, ALL) == [KEYS["a"]]


def test_run_plan_is_a_value() -> None:
    assert RunPlan() == RunPlan()
    assert not RunPlan().changes_anything

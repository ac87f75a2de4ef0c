"""plan: pure push/pull planning, as tables of cases."""

from __future__ import annotations

import pytest

from luisy_sync.plan import (CHANGE_KINDS, DOWNLOAD, LOCAL_ONLY, MISSING, PULL, PUSH, REFUSED,
                             REMOTE_ONLY, SKIP, UPLOAD, Plan, plan_pull, plan_push,
                             pull_conflicts)
from luisy_sync.errors import SyncError, UnsafePathError
from luisy_sync.tree import FileEntry, Tree

A, B, C = "a" * 32, "b" * 32, "c" * 32


def t(entries: dict[str, tuple[int, str | None]]) -> Tree:
    return Tree({k: FileEntry(size, digest) for k, (size, digest) in entries.items()})


def buckets(plan: Plan) -> dict[str, tuple]:
    out = {k: getattr(plan, k) for k in (UPLOAD, DOWNLOAD, SKIP, REMOTE_ONLY, LOCAL_ONLY, MISSING)}
    out[REFUSED] = tuple(p for p, _ in plan.refused)
    return {k: v for k, v in out.items() if v}


PUSH_CASES = [
    # id, local, remote, paths, expected buckets
    ("empty-trees", {}, {}, None, {}),
    ("all-new", {"x": (1, A), "d/y": (2, B)}, {}, None, {UPLOAD: ("d/y", "x")}),
    ("identical", {"x": (1, A)}, {"x": (1, A)}, None, {SKIP: ("x",)}),
    ("one-changed", {"x": (1, A), "y": (1, B)}, {"x": (1, A), "y": (1, C)}, None,
     {UPLOAD: ("y",), SKIP: ("x",)}),
    ("remote-digest-none", {"x": (1, A)}, {"x": (1, None)}, None, {UPLOAD: ("x",)}),
    ("size-mismatch-same-digest", {"x": (1, A)}, {"x": (2, A)}, None, {UPLOAD: ("x",)}),
    ("remote-only-left-alone", {"x": (1, A)}, {"x": (1, A), "old": (3, B)}, None,
     {SKIP: ("x",), REMOTE_ONLY: ("old",)}),
    ("paths-filter", {"x": (1, A), "y": (1, B)}, {"z": (1, C)}, ["y"], {UPLOAD: ("y",)}),
    ("paths-directory", {"d/x": (1, A), "d/y": (1, B), "dd": (1, C)}, {"d/x": (1, A)}, ["d"],
     {UPLOAD: ("d/y",), SKIP: ("d/x",)}),
    ("missing-requested", {"x": (1, A)}, {}, ["x", "gone"], {UPLOAD: ("x",), MISSING: ("gone",)}),
    ("unicode-names", {"ü/日本.csv": (1, A), "é": (1, B)}, {"é": (1, B)}, None,
     {UPLOAD: ("ü/日本.csv",), SKIP: ("é",)}),
    ("unsafe-local-name", {"a\\b": (1, A), "ok": (1, B)}, {}, None,
     {UPLOAD: ("ok",), REFUSED: ("a\\b",)}),
    ("file-dir-clash-on-target", {"x/y": (1, A)}, {"x": (1, B)}, None,
     {REFUSED: ("x/y",), REMOTE_ONLY: ("x",)}),
]


@pytest.mark.parametrize(("local", "remote", "paths", "expected"),
                         [c[1:] for c in PUSH_CASES], ids=[c[0] for c in PUSH_CASES])
def test_plan_push(local, remote, paths, expected) -> None:
    plan = plan_push(t(local), t(remote), paths=paths)
    assert plan.direction == PUSH
    assert buckets(plan) == expected


PULL_CASES = [
    # id, remote, local, paths, expected buckets
    ("empty-trees", {}, {}, None, {}),
    ("all-new", {"x": (1, A), "d/y": (2, B)}, {}, None, {DOWNLOAD: ("d/y", "x")}),
    ("identical", {"x": (1, A)}, {"x": (1, A)}, None, {SKIP: ("x",)}),
    ("one-changed", {"x": (1, A), "y": (1, C)}, {"x": (1, A), "y": (1, B)}, None,
     {DOWNLOAD: ("y",), SKIP: ("x",)}),
    ("remote-digest-none", {"x": (1, None)}, {"x": (1, A)}, None, {DOWNLOAD: ("x",)}),
    ("size-mismatch-same-digest", {"x": (2, A)}, {"x": (1, A)}, None, {DOWNLOAD: ("x",)}),
    ("local-only-left-alone", {"x": (1, A)}, {"x": (1, A), "mine": (1, B)}, None,
     {SKIP: ("x",), LOCAL_ONLY: ("mine",)}),
    ("paths-filter", {"x": (1, A), "y": (1, B)}, {}, ["x"], {DOWNLOAD: ("x",)}),
    ("paths-directory-trailing-slash", {"d/x": (1, A), "d/e/y": (1, B), "z": (1, C)}, {}, ["d/"],
     {DOWNLOAD: ("d/e/y", "d/x")}),
    ("missing-requested", {"x": (1, A)}, {}, ["x", "nope", "nope"],
     {DOWNLOAD: ("x",), MISSING: ("nope",)}),
    ("unsafe-dotdot", {"../evil": (1, A), "ok": (1, B)}, {}, None,
     {DOWNLOAD: ("ok",), REFUSED: ("../evil",)}),
    ("unsafe-absolute", {"/etc/passwd": (1, A)}, {}, None, {REFUSED: ("/etc/passwd",)}),
    ("unsafe-backslash", {"a\\..\\b": (1, A)}, {}, None, {REFUSED: ("a\\..\\b",)}),
    ("unsafe-empty-segment", {"a//b": (1, A)}, {}, None, {REFUSED: ("a//b",)}),
    ("unsafe-requested", {"../x": (1, A)}, {}, ["../x"], {REFUSED: ("../x",)}),
    ("file-and-dir-in-store", {"x": (1, A), "x/y": (1, B)}, {}, None,
     {DOWNLOAD: ("x/y",), REFUSED: ("x",)}),
    ("local-file-blocks-dir", {"x/y": (1, A)}, {"x": (1, B)}, None,
     {REFUSED: ("x/y",), LOCAL_ONLY: ("x",)}),
    ("unicode-names", {"ü/日本.csv": (1, A)}, {}, None, {DOWNLOAD: ("ü/日本.csv",)}),
]


@pytest.mark.parametrize(("remote", "local", "paths", "expected"),
                         [c[1:] for c in PULL_CASES], ids=[c[0] for c in PULL_CASES])
def test_plan_pull(remote, local, paths, expected) -> None:
    plan = plan_pull(t(remote), t(local), paths=paths)
    assert plan.direction == PULL
    assert buckets(plan) == expected


def test_every_path_lands_in_exactly_one_bucket() -> None:
    remote = t({"a": (1, A), "b": (1, B), "c/d": (1, None), "../x": (1, A)})
    local = t({"a": (1, A), "b": (1, C), "e": (1, A)})
    plan = plan_pull(remote, local)
    kinds = {p: plan.kind_of(p) for p in set(remote) | set(local)}
    assert kinds == {"a": SKIP, "b": DOWNLOAD, "c/d": DOWNLOAD, "../x": REFUSED, "e": LOCAL_ONLY}
    assert set(kinds.values()) <= set(CHANGE_KINDS)
    assert plan.kind_of("unknown") is None


def test_refusal_reason_names_the_path() -> None:
    plan = plan_pull(t({"../evil": (1, A)}), Tree())
    (path, reason), = plan.refused
    assert path == "../evil" and "../evil" in reason and "\n" not in reason


def test_a_refused_plan_raises_one_error_for_the_whole_operation() -> None:
    unsafe = plan_pull(t({"../evil": (1, A), "ok": (1, B)}), Tree())
    with pytest.raises(UnsafePathError, match=r"^1 name\(s\) refused, nothing was downloaded; first: .*\.\./evil"):
        unsafe.raise_if_refused("downloaded")
    clash = plan_push(t({"d/x": (1, A)}), t({"d": (1, B)}))  # a directory where the store has a file
    with pytest.raises(SyncError, match="refused, nothing was uploaded") as info:
        clash.raise_if_refused("uploaded")
    assert not isinstance(info.value, UnsafePathError)
    plan_push(t({"x": (1, A)}), Tree()).raise_if_refused("uploaded")  # nothing refused: no error


def test_tree_without_drops_only_named_entries_and_keeps_its_root() -> None:
    tree = Tree({"a": FileEntry(1, A), "b/c": FileEntry(2, B)}, root="/r")
    assert tree.without([None, "", "missing"]) is tree
    smaller = tree.without(["a", None])
    assert dict(smaller.items()) == {"b/c": FileEntry(2, B)} and smaller.root == "/r"


def test_totals_count_only_transfers() -> None:
    plan = plan_push(t({"x": (10, A), "y": (5, B), "z": (7, C)}), t({"z": (7, C)}))
    assert (plan.files_to_transfer, plan.bytes_to_transfer) == (2, 15)
    assert plan.transfers == ("x", "y")
    assert not plan.is_noop


def test_noop_plan_and_summary_line() -> None:
    same = t({"x": (1, A)})
    plan = plan_push(same, same)
    assert plan.is_noop and plan.files_to_transfer == 0 and plan.bytes_to_transfer == 0
    assert plan.summary() == "push: 0 to upload (0 B), 1 unchanged"


def test_summary_mentions_every_nonempty_bucket() -> None:
    plan = plan_pull(t({"x": (3 << 20, A), "../bad": (1, B)}), t({"mine": (1, C)}))
    assert plan.summary() == "pull: 1 to download (3.0 MiB), 0 unchanged, 1 only local, 1 refused"
    plan = plan_push(t({"x": (1, A)}), t({"r": (1, A)}), paths=["x", "q"])
    assert plan.summary() == "push: 1 to upload (1 B), 0 unchanged, 1 missing"


def test_plan_decides_by_digest_not_mtime() -> None:
    local = Tree({"x": FileEntry(1, A, mtime_ns=999)})
    remote = Tree({"x": FileEntry(1, A, mtime_ns=0)})
    assert plan_push(local, remote).skip == ("x",)
    assert plan_pull(remote, local).skip == ("x",)


def test_plan_is_frozen_and_keeps_its_trees() -> None:
    local, remote = t({"x": (1, A)}), Tree()
    plan = plan_push(local, remote)
    assert plan.source is local and plan.target is remote
    with pytest.raises(AttributeError):
        plan.upload = ()  # type: ignore[misc]


CONFLICT_CASES = [
    # id, store, local, synced digests, expected conflicts (path -> start of the reason)
    ("new-file-is-no-conflict", {"x": (1, A)}, {}, {}, {}),
    ("unchanged-since-sync", {"x": (1, B)}, {"x": (1, A)}, {"x": A}, {}),
    ("edited-locally", {"x": (1, A)}, {"x": (1, B)}, {"x": A}, {"x": "changed locally since"}),
    ("edited-on-both-sides", {"x": (1, C)}, {"x": (1, B)}, {"x": A},
     {"x": "changed locally and in the store"}),
    ("never-synced", {"x": (1, A)}, {"x": (1, B)}, {}, {"x": "exists locally and differs"}),
    ("identical-is-skipped", {"x": (1, A)}, {"x": (1, A)}, {}, {}),
]


@pytest.mark.parametrize(("store", "local", "synced", "expected"), [c[1:] for c in CONFLICT_CASES],
                         ids=[c[0] for c in CONFLICT_CASES])
def test_pull_conflicts(store, local, synced, expected) -> None:
    found = pull_conflicts(plan_pull(t(store), t(local)), synced)
    assert set(found) == set(expected)
    assert all(found[p].startswith(why) for p, why in expected.items())

"""The cloud .luisy.hash: parsing (1.4.7 and extended entries), what can be downloaded
verified, what must be uploaded, and concurrent read -> merge -> conditional writes."""

from __future__ import annotations

import json

import anyio
import pytest

from luisy.cloud.state import CloudState, read_cloud_state, update_cloud_hash
from luisy.cloud.uploadplan import plan_uploads
from luisy.errors import CloudHashError, CorruptCloudHash
from luisy.graph import Output
from luisy.hashfile import CloudEntry, hash_object, output_object, parse_cloud_hash, project_of
from luisy_sync.stores.base import DIGEST_KEY
from luisy_sync.stores.memory import MemoryStore
from luisy_sync.stores.small import read_small, write_small
from luisy_sync.tree import FileEntry, Tree

D1, D2 = "a" * 32, "b" * 32
FILE = "/p/interim/X.pkl"
DIR = "/p/interim/Dir"


def test_key_object_and_project_names():
    assert output_object(FILE) == "p/interim/X.pkl"
    assert project_of(FILE) == "p"
    assert hash_object("p") == "p/.luisy.hash"


@pytest.mark.parametrize("doc, expected", [
    (None, {}),
    ({FILE: "h1"}, {FILE: {"hash": "h1"}}),
    ({FILE: {"hash": "h1", "digest": D1, "size": 3}}, {FILE: {"hash": "h1", "digest": D1, "size": 3}}),
    ({DIR: {"hash": "h", "files": {"a": {"digest": D1, "size": 1}}, "size": 1}},
     {DIR: {"hash": "h", "files": {"a": {"digest": D1, "size": 1}}, "size": 1}}),
])
def test_parse_accepts_legacy_and_extended_entries(doc, expected):
    entries = parse_cloud_hash(doc, "x")
    assert {k: e.to_json() for k, e in entries.items()} == {
        k: (v["hash"] if set(v) == {"hash"} else v) for k, v in expected.items()}
    assert all(e.legacy == (set(expected[k]) == {"hash"}) for k, e in entries.items())


@pytest.mark.parametrize("doc", [
    [1, 2], {FILE: 3}, {FILE: {"digest": D1, "size": 1}}, {FILE: {"hash": "h", "digest": 5, "size": 1}},
    {DIR: {"hash": "h", "files": {"a": {"digest": D1}}}}, {DIR: {"hash": "h", "files": []}},
])
def test_parse_rejects_malformed_documents(doc):
    with pytest.raises(CloudHashError, match="corrupt"):
        parse_cloud_hash(doc, "x")


def _state(entries, objects):
    return CloudState(entries={k: CloudEntry.from_json(v) for k, v in entries.items()},
                      objects=Tree(objects))


@pytest.mark.parametrize("entry, objects, is_dir, ok", [
    ({"hash": "h", "digest": D1, "size": 3}, {"p/interim/X.pkl": FileEntry(3, D1)}, False, True),
    ({"hash": "h", "digest": D1, "size": 3}, {"p/interim/X.pkl": FileEntry(3, None)}, False, True),
    ({"hash": "h", "digest": D1, "size": 3}, {"p/interim/X.pkl": FileEntry(3, D2)}, False, False),
    ({"hash": "h", "digest": D1, "size": 3}, {"p/interim/X.pkl": FileEntry(4, D1)}, False, False),
    ({"hash": "h", "digest": D1, "size": 3}, {}, False, False),
    ({"hash": "h"}, {"p/interim/X.pkl": FileEntry(3, D1)}, False, True),
    ({"hash": "h"}, {"p/interim/X.pkl": FileEntry(3, None)}, False, False),
    ({"hash": "h", "digest": D1, "size": 3}, {"p/interim/X.pkl": FileEntry(3, D1)}, True, False),
])
def test_expected_files_for_file_outputs(entry, objects, is_dir, ok):
    files = _state({FILE: entry}, objects).expected_files(FILE, is_dir)
    assert (files is not None) == ok
    if ok:
        assert files == {"p/interim/X.pkl": FileEntry(3, D1)}


def test_expected_files_for_directory_outputs():
    entry = {"hash": "h", "files": {"a.parquet": {"digest": D1, "size": 1},
                                    "sub/b.parquet": {"digest": D2, "size": 2}}, "size": 3}
    objects = {"p/interim/Dir/a.parquet": FileEntry(1, D1), "p/interim/Dir/sub/b.parquet": FileEntry(2, D2),
               "p/interim/Dir/stale.parquet": FileEntry(9, D2)}
    state = _state({DIR: entry}, objects)
    assert state.expected_files(DIR, True) == {"p/interim/Dir/a.parquet": FileEntry(1, D1),
                                               "p/interim/Dir/sub/b.parquet": FileEntry(2, D2)}
    del objects["p/interim/Dir/sub/b.parquet"]
    assert _state({DIR: entry}, objects).expected_files(DIR, True) is None
    legacy = _state({DIR: {"hash": "h"}}, {"p/interim/Dir/a.parquet": FileEntry(1, D1)})
    assert legacy.expected_files(DIR, True) == {"p/interim/Dir/a.parquet": FileEntry(1, D1)}
    unsafe = {"hash": "h", "files": {"../../x": {"digest": D1, "size": 1}}, "size": 1}
    assert _state({DIR: unsafe}, {"p/x": FileEntry(1, D1)}).expected_files(DIR, True) is None


def test_local_entry_and_upload_plan():
    local = Tree({"p/interim/X.pkl": FileEntry(3, D1), "p/interim/Dir/a": FileEntry(1, D2)}, root="/wd")
    assert CloudEntry.describing("h", FILE, False, local).to_json() == {"hash": "h", "digest": D1, "size": 3}
    assert CloudEntry.describing("h", DIR, True, local).to_json() == {
        "hash": "h", "files": {"a": {"digest": D2, "size": 1}}, "size": 1}
    outputs = [Output(FILE, "/wd" + FILE, "p", False, "h"), Output(DIR, "/wd" + DIR, "p", True, "h")]
    # nothing in the cloud: both versions, both contents to the content store, both path views
    plan = plan_uploads(outputs, local, _state({}, {}))
    assert plan.keys == (DIR, FILE)
    assert plan.content == {FILE: ["p/interim/X.pkl"], DIR: ["p/interim/Dir/a"]}
    assert plan.placed == {FILE: ["p/interim/X.pkl"], DIR: ["p/interim/Dir/a"]}
    # both stored as versions and as the latest, path objects intact: nothing
    state = _state({FILE: {"hash": "h", "digest": D1, "size": 3},
                    DIR: {"hash": "h", "files": {"a": {"digest": D2, "size": 1}}, "size": 1}},
                   {"p/interim/X.pkl": FileEntry(3, D1), "p/interim/Dir/a": FileEntry(1, D2)})
    state.versions = {k: {"h": e} for k, e in state.entries.items()}
    assert plan_uploads(outputs, local, state).keys == ()
    # the latest of FILE is another version: FILE's version is stored, nothing moves
    state.entries[FILE] = CloudEntry.from_json({"hash": "old", "digest": D2, "size": 3})
    state.objects = Tree({"p/interim/X.pkl": FileEntry(3, D2), "p/interim/Dir/a": FileEntry(1, D2)})
    assert plan_uploads(outputs, local, state).keys == ()
    # not stored as a version, the content is (under another key): no content, a path view
    state.versions = {DIR: {"h": CloudEntry.from_json({"hash": "h", "files": {"a": {"digest": D1, "size": 3}}})}}
    plan = plan_uploads(outputs, local, state)
    assert plan.keys == (DIR, FILE) and plan.content == {FILE: [], DIR: ["p/interim/Dir/a"]}
    assert plan.placed == {FILE: ["p/interim/X.pkl"], DIR: []}
    assert plan.relied() == {D1: "p/interim/X.pkl"}


async def test_concurrent_updates_keep_every_entry():
    store = MemoryStore()
    await write_small(store, hash_object("p"), json.dumps({"/p/raw/legacy.csv": "h0"}).encode())

    async def writer(i: int) -> None:
        await store.put(f"p/interim/T{i}.pkl", b"x" * i, metadata={DIGEST_KEY: D1})
        entry = CloudEntry.from_json({"hash": f"h{i}", "digest": D1, "size": i})
        await update_cloud_hash(store, "p", {f"/p/interim/T{i}.pkl": entry})

    async with anyio.create_task_group() as tg:
        for i in range(12):
            tg.start_soon(writer, i)
    state = await read_cloud_state(store, ["p"])
    assert len(state.entries) == 13
    assert state.entries["/p/raw/legacy.csv"] == CloudEntry("h0", legacy=True)
    raw = json.loads((await read_small(store, hash_object("p")))[0])
    assert raw["/p/raw/legacy.csv"] == "h0"  # entries of others are kept as written


async def test_corrupt_file_is_never_overwritten():
    store = MemoryStore()
    await write_small(store, hash_object("p"), b"{broken")
    with pytest.raises(CorruptCloudHash, match="p/.luisy.hash"):
        await update_cloud_hash(store, "p", {FILE: CloudEntry.from_json({"hash": "h", "digest": D1, "size": 1})})
    with pytest.raises(CorruptCloudHash, match="p/.luisy.hash"):
        await read_cloud_state(store, ["p"])
    assert (await read_small(store, hash_object("p")))[0] == b"{broken"


async def test_an_update_naming_content_the_store_lacks_is_not_written():
    store = MemoryStore()
    await store.put("p/interim/X.pkl", b"abc", metadata={DIGEST_KEY: D2})  # another writer won
    await update_cloud_hash(store, "p", {FILE: CloudEntry.from_json({"hash": "h", "digest": D1, "size": 3})})
    assert (await read_cloud_state(store, ["p"])).entries == {}
    with_d2 = CloudEntry.from_json({"hash": "h", "digest": D2, "size": 3})
    await update_cloud_hash(store, "p", {FILE: with_d2})
    await store.put("p/interim/X.pkl", b"abcd", metadata={DIGEST_KEY: D1})  # replaced again
    await update_cloud_hash(store, "p", {FILE: with_d2})
    assert (await read_cloud_state(store, ["p"])).entries == {}  # the stale entry was removed


@pytest.mark.parametrize("value", [
    "h1",
    {"hash": "h", "digest": D1, "size": 3},
    {"hash": "h", "files": {"a": {"digest": D1, "size": 1}, "b/c": {"digest": D2, "size": 2}}, "size": 3},
    {"hash": "h", "files": {}, "size": 0},
])
def test_cloud_entries_keep_their_json_shape(value):
    entry = CloudEntry.from_json(value)
    assert json.dumps(entry.to_json(), sort_keys=True) == json.dumps(value, sort_keys=True)
    assert entry.legacy is isinstance(value, str)


def test_an_entry_is_current_for_its_code_hash_or_external_data():
    entry = CloudEntry.from_json({"hash": "h", "digest": D1, "size": 3})
    assert entry.is_current("h", external=False)
    assert not entry.is_current("other", external=False) and not entry.is_current(None, external=False)
    assert entry.is_current("other", external=True)
    assert entry.objects(FILE) == {"p/interim/X.pkl": FileEntry(3, D1)}


def test_the_session_turns_engine_errors_into_one_line_cloud_errors():
    from luisy.cloud.session import CloudSession
    from luisy.errors import CloudError, LuisyError, NotRecorded
    from luisy_sync.errors import SyncError

    session = CloudSession(None, "the test remote", MemoryStore)

    async def raising(exc: BaseException) -> None:
        raise exc

    async def in_a_group(exc: Exception) -> None:
        raise ExceptionGroup("several", [exc])

    with pytest.raises(CloudHashError, match=r"p/.luisy.hash is corrupt \(top level is a list\)"):
        session.call(raising, CorruptCloudHash("mem://p/.luisy.hash", "top level is a list"))
    with pytest.raises(CloudError, match=r"^cloud sync failed \(the test remote\): boom$"):
        session.call(in_a_group, SyncError("boom\nsecond line"))
    with pytest.raises(CloudError, match="^uploaded content could not be recorded"):
        session.call(raising, NotRecorded(SyncError("gone")))
    with pytest.raises(ValueError, match="not an engine error"):  # anything else as it is
        session.call(raising, ValueError("not an engine error"))
    assert issubclass(CloudHashError, LuisyError) and issubclass(CloudError, LuisyError)

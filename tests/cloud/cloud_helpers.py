"""Helpers the versioned-cloud tests share: reading the store of the current session, the
check that the layout tells the truth, and two code versions of the test pipeline
uploaded from two machines."""

from __future__ import annotations

import json
from typing import Any

import luisy
from luisy.cloud import open_session
from luisy.hashfile import CloudEntry, hash_object
from luisy.versions import CAS_PREFIX, cas_name, named_digests, parse_versions, versions_object
from luisy_sync import hash_bytes
from luisy_sync.stores.base import Store
from luisy_sync.stores.small import read_small

V2, V3 = "[2 * x for x", "[3 * x for x"
"""The test pipeline's Double on code version v2 and v3 (tests/cloud/conftest.py)."""
FINAL = "/cloudproj/final/Final_n=5.pkl"
DOUBLE = "/cloudproj/interim/Double_n=5.pkl"


def store_call(fn: Any, *args: Any) -> Any:
    """``fn(store, *args)`` on the current session's store, through its bridge."""
    session = open_session()
    return session.call(fn, session.store(), *args)


async def cas_objects(store: Store) -> dict[str, int]:
    return {info.name: info.size for info in await store.list(CAS_PREFIX + "/")}


async def read_json(store: Store, name: str) -> dict:
    return json.loads((await read_small(store, name))[0])


async def read_object(store: Store, name: str) -> bytes:
    return (await store.get(name)).data


def layout_is_true(project: str = "cloudproj") -> dict:
    """The plain store API sees the 1.4.7 view: each ``.luisy.hash`` entry names exactly
    the objects at its path; every version names content the content store holds, with
    that digest. Returns the index's ``versions`` (key -> code hash -> raw entry)."""
    for key, entry in store_call(read_json, hash_object(project)).items():
        for obj, fe in CloudEntry.from_json(entry).objects(key).items():
            assert hash_bytes(store_call(read_object, obj)) == fe.digest, obj
    versions = store_call(read_json, versions_object(project))
    digests = named_digests(parse_versions(versions, "x"))
    assert {cas_name(d) for d in digests} <= set(store_call(cas_objects))
    for digest in digests:
        assert hash_bytes(store_call(read_object, cas_name(digest))) == digest
    return versions["versions"]


def upload_two_branches(pipeline: Any, machines: Any) -> None:
    """v2 uploaded by machine a, then v3 (Double and Final changed) by machine b with
    ``--download --upload``; the package is left on v3."""
    machines("a")
    assert luisy.build(pipeline.load().Final(), upload=True).success
    pipeline.edit(V2, V3)
    machines("b")
    assert luisy.build(pipeline.load().Final(), download=True, upload=True).success

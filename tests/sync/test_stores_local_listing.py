"""The listing of a large LocalStore in a helper process (``luisy_sync.stores.local_listing``).

The helper is a real child interpreter; ``HELPER_FROM`` is lowered so that a few files
count as a large store.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

import luisy_sync.stores.local_listing as local_listing
from luisy_sync import push
from luisy_sync.conventions import MANIFEST_NAME
from luisy_sync.errors import UnsafePathError
from luisy_sync.stores.base import DIGEST_KEY
from luisy_sync.stores.local import LocalStore


@pytest.fixture
def helper_from_three(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_listing, "HELPER_FROM", 3)


async def fill(store: LocalStore) -> None:
    """Objects with digests and other metadata, a file put there by hand, a second folder."""
    for i in range(5):
        await store.put(f"a/f{i}", b"x" * i, metadata={DIGEST_KEY: f"{i:032x}", "owner": "me"})
    await store.put("b/g", b"gg", metadata={DIGEST_KEY: "f" * 32})
    Path(store.root, "a", "by-hand").write_bytes(b"hand")


async def test_the_helper_lists_exactly_what_the_store_lists(local_store: LocalStore,
                                                              helper_from_three: None) -> None:
    await fill(local_store)
    for prefix in ("", "a/", "a/f", "b/"):
        apart = await local_store.list_apart(prefix)
        assert apart is not None or prefix == "b/"  # b/ holds one object: listed here
        if apart is not None:
            assert apart == await local_store.list(prefix)
    listed = await local_store.list_apart("a/")
    assert listed is not None
    assert [o.name for o in listed] == ["a/by-hand", *(f"a/f{i}" for i in range(5))]
    assert listed[1].metadata == {DIGEST_KEY: "0" * 32, "owner": "me"}
    assert listed[0].metadata == {} and listed[0].digest is None


async def test_a_small_store_is_listed_in_this_process(local_store: LocalStore) -> None:
    await fill(local_store)
    assert await local_store.list_apart("") is None
    assert len(await local_store.list("")) == 7


async def test_a_missing_root_or_index_lists_here(tmp_path: Path, helper_from_three: None) -> None:
    assert await LocalStore(tmp_path / "none").list_apart("") is None
    bare = tmp_path / "bare"
    bare.mkdir()
    for i in range(5):
        (bare / f"f{i}").write_bytes(b"1")  # files without an index: no rows to count
    assert await LocalStore(bare).list_apart("") is None


async def test_a_failing_helper_falls_back_to_the_listing_here(local_store: LocalStore,
                                                                helper_from_three: None,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    await fill(local_store)
    os.symlink(local_store.root, os.path.join(local_store.root, "a", "loop"))
    assert await local_store.list_apart("") is None  # the helper refused the symlink
    with pytest.raises(UnsafePathError, match="symlink"):
        await local_store.list("")  # where the caller gets the one-line error
    os.unlink(os.path.join(local_store.root, "a", "loop"))
    monkeypatch.setattr(sys, "executable", str(Path(local_store.root) / "no-such-python"))
    assert await local_store.list_apart("") is None
    monkeypatch.setattr(sys, "executable", "")
    assert await local_store.list_apart("") is None


async def test_the_helper_imports_this_copy_of_the_package(local_store: LocalStore, helper_from_three: None,
                                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    await fill(local_store)
    decoy = tmp_path / "cwd" / "luisy_sync"
    decoy.mkdir(parents=True)
    (decoy / "__init__.py").write_text("raise ImportError('the decoy was imported')\n")
    monkeypatch.chdir(decoy.parent)  # a luisy_sync in the working directory is not the one imported
    listed = await local_store.list_apart("")
    assert listed is not None and len(listed) == 7


async def test_pushes_through_a_helper_listing(tmp_path: Path, helper_from_three: None,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    for d in range(3):
        (src / f"d{d}").mkdir(parents=True)
        for i in range(4):
            (src / f"d{d}" / f"f{i}").write_bytes(f"{d}-{i}".encode())
    store = LocalStore(tmp_path / "remote")
    calls: list[str] = []
    real = local_listing.list_in_helper

    def spy(root: str, book: str, prefix: str):  # type: ignore[no-untyped-def]
        calls.append(prefix)
        return real(root, book, prefix)

    monkeypatch.setattr(local_listing, "list_in_helper", spy)
    first = await push(src, store, cache=False)
    assert len(first.uploaded) == 12 and calls == []  # an empty store: listed here
    again = await push(src, store, cache=False)
    assert again.uploaded == () and len(again.skipped) == 12 and calls == [""]
    (src / "d1" / "f2").write_bytes(b"changed")
    (src / "d2" / "new").write_bytes(b"new")
    changed = await push(src, store, prefix="", cache=False)
    assert sorted(changed.uploaded) == ["d1/f2", "d2/new"] and len(calls) == 2
    manifest = (tmp_path / "remote" / MANIFEST_NAME).read_text()
    assert '"d2/new"' in manifest
    assert Path(store.root, "d1", "f2").read_bytes() == b"changed"

"""The wrapper stores: forwarding, prefix, fault injection and counting.

(``any_store`` also runs every conformance test on a PrefixStore.)
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import anyio
import pytest

from luisy_sync.errors import NotFoundError, PreconditionFailed, StoreError, TransientError
from luisy_sync.stores.base import GetResult, ObjectInfo, PutMode, Store
from luisy_sync.stores.local import LocalStore
from luisy_sync.stores.memory import MemoryStore
from luisy_sync.stores.wrappers import CountingStore, Fault, FaultStore, ForwardingStore, PrefixStore


async def test_forwarding_offers_the_batch_calls_only_when_the_inner_store_has_them(tmp_path: Path) -> None:
    local = LocalStore(tmp_path / "r")
    assert isinstance(ForwardingStore(local), Store)
    assert hasattr(ForwardingStore(local), "put_many") and hasattr(ForwardingStore(local), "get_many")
    assert not hasattr(ForwardingStore(local, batch=False), "put_many")
    assert not hasattr(ForwardingStore(MemoryStore()), "get_many")
    with pytest.raises(AttributeError):
        ForwardingStore(MemoryStore()).no_such_verb  # noqa: B018
    store = ForwardingStore(local)
    [info] = await store.put_many([("a", b"1", None)])
    [got] = await store.get_many(["a"])
    assert isinstance(info, ObjectInfo) and got == GetResult(b"1", info.etag or "")
    assert store.url == local.url


async def test_prefix_store_maps_names_both_ways(tmp_path: Path) -> None:
    inner = LocalStore(tmp_path / "r")
    store = PrefixStore(inner, "/p/q/")
    assert store.url == inner.url + "/p/q"
    info = await store.put("a/b", b"data", metadata={"k": "v"})
    assert info.name == "a/b" and (await inner.head("p/q/a/b")).etag == info.etag
    assert [o.name for o in await store.list()] == ["a/b"]
    assert [o.name for o in await store.list("a/")] == ["a/b"]
    assert (await store.get("a/b", 1, 2)).data == b"at"
    await store.put_block("big", "b0", b"xy")
    assert (await store.commit_blocks("big", ["b0"])).name == "big"
    assert (await inner.get("p/q/big")).data == b"xy"
    results = await store.put_many([("c", b"c", None), ("a/b", b"!", None, PutMode.CREATE)])
    assert isinstance(results[0], ObjectInfo) and results[0].name == "c"
    assert isinstance(results[1], PreconditionFailed)
    got = await store.get_many(["c", "missing"])
    assert got[0] == GetResult(b"c", results[0].etag or "") and isinstance(got[1], NotFoundError)
    await store.delete("c")
    assert sorted(o.name for o in await inner.list()) == ["p/q/a/b", "p/q/big"]
    with pytest.raises(ValueError):
        PrefixStore(inner, "/")


async def test_fault_rules_count_skip_and_act() -> None:
    inner = MemoryStore()
    await inner.put("a", b"a")
    await inner.put("b", b"b")
    log: list[str] = []
    store = FaultStore(
        inner,
        Fault("get", name="a", skip=1, times=2, error=partial(TransientError, "injected")),
        Fault(("get", "head"), name=lambda n: n == "b", times=1, before=lambda: log.append("before"),
              after=lambda: log.append("after")),
        Fault("list", alter=lambda listed: listed[:1]),
    )
    assert (await store.get("a")).data == b"a"  # skipped
    for _ in range(2):
        with pytest.raises(TransientError, match="injected"):
            await store.get("a")
    assert (await store.get("a")).data == b"a"  # times used up
    assert store.failures == 2 and store.faults[0].seen == 4 and store.faults[0].hits == 2
    await store.head("b")
    await store.get("b")
    assert log == ["before", "after"] and store.faults[1].seen == 2
    assert [o.name for o in await store.list()] == ["a"]


async def test_a_fault_can_hold_a_call_until_an_event() -> None:
    release = anyio.Event()
    store = FaultStore(MemoryStore(), Fault("put", before=release.wait))
    done: list[ObjectInfo] = []

    async def put() -> None:
        done.append(await store.put("x", b"1"))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(put)
            await anyio.sleep(0.05)
            assert done == [] and await store.list() == []
            release.set()
    assert [o.name for o in await store.list()] == ["x"]


async def test_an_error_before_the_call_leaves_the_store_unchanged() -> None:
    store = FaultStore(MemoryStore(), Fault("*", name="x", error=StoreError("denied", status=403)))
    with pytest.raises(StoreError, match="denied"):
        await store.put("x", b"1")
    with pytest.raises(StoreError, match="denied"):
        await store.delete("x")
    await store.put("y", b"1")
    assert [o.name for o in await store.list()] == ["y"] and store.failures == 2


async def test_counting_store_counts_verbs_failures_and_concurrency() -> None:
    store = CountingStore(FaultStore(MemoryStore(), Fault("put", name="bad", error=StoreError("no"))),
                          delay=0.01)
    async with anyio.create_task_group() as tg:
        for i in range(5):
            tg.start_soon(partial(store.put, f"f{i}", b"x"))
    with pytest.raises(StoreError):
        await store.put("bad", b"x")
    await store.head("f0")
    assert store.calls == {"put": 6, "head": 1} and store.failed == {"put": 1}
    assert store.peak == 5 and store.now == 0
    assert store.requests[-2:] == [("put", "bad"), ("head", "f0")]
    only_gets = CountingStore(MemoryStore(), verbs=["get"])
    await only_gets.put("a", b"1")
    await only_gets.get("a")
    assert only_gets.calls == {"get": 1} and only_gets.peak == 1


async def test_copy_through_the_wrappers(tmp_path: Path) -> None:
    inner = LocalStore(tmp_path / "r")
    prefixed = PrefixStore(inner, "p")
    await inner.put("cas/x", b"outside the prefix")
    source = await prefixed.put("cas/x", b"inside", metadata={"xxh3": "a" * 32})
    counting = CountingStore(FaultStore(prefixed, Fault("copy", name="cas/x", times=1,
                                                         error=partial(TransientError, "injected"))))
    with pytest.raises(TransientError, match="injected"):
        await counting.copy("cas/x", "view/y")
    copied = await counting.copy("cas/x", "view/y")
    assert (copied.name, copied.digest, copied.etag) == ("view/y", "a" * 32, source.etag)
    assert (await inner.get("p/view/y")).data == b"inside" and await counting.head("view/y") == copied
    assert counting.calls == {"copy": 2, "head": 1} and counting.failed == {"copy": 1}
    assert counting.requests[:2] == [("copy", "cas/x"), ("copy", "cas/x")]
    assert sorted(o.name for o in await inner.list()) == ["cas/x", "p/cas/x", "p/view/y"]
    with pytest.raises(NotFoundError):
        await counting.copy("view/missing", "view/z")
    assert isinstance(ForwardingStore(MemoryStore()), Store)

"""Early creates against Azurite behind a 40 ms round trip: a push creates its first new files
(If-None-Match: *) while the listing is on its way, every file arrives once and verified, and
a push refused after its early creates leaves the container exactly as it was (the early
objects deleted again with If-Match, a real conditional delete on the service). A pull
fetches its first files while the listing is on its way, each file once and verified."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio
import pytest

from luisy_sync import SyncError, pull, push
from luisy_sync.adaptive import INITIAL_LIMIT
from luisy_sync.conventions import MANIFEST_NAME
from luisy_sync.stores.base import PutMode
from luisy_sync.stores.wrappers import ForwardingStore
from rel_helpers import assert_manifest_truthful, make_files, proxied_store, store_contents

pytestmark = [pytest.mark.azurite]


class Calls(ForwardingStore):
    """Records, in order, each put's object name and mode, each block put, each commit,
    each get and the listing's answer (``networked`` comes from the Azure store); the
    listing is sent ``list_delay`` seconds late."""

    def __init__(self, inner: Any, list_delay: float = 0.0):
        super().__init__(inner)
        self.puts: list[tuple[str, str]] = []
        self.calls: list[tuple[str, Any]] = []
        self.list_delay = list_delay

    async def _forward(self, verb: str, *args: Any, **kw: Any) -> Any:
        if verb == "list":
            await anyio.sleep(self.list_delay)
        elif verb == "get":
            self.calls.append((verb, args[0]))
        elif verb == "put":
            self.puts.append((args[0], kw.get("mode", PutMode.OVERWRITE).kind))
        elif verb == "put_block":
            self.calls.append((verb, args[1]))
        elif verb == "commit_blocks":
            self.calls.append((verb, tuple(args[1])))
        result = await super()._forward(verb, *args, **kw)
        if verb == "list":
            self.calls.append(("listed", None))
        return result


@pytest.mark.timeout(60)
async def test_early_creates_through_a_real_round_trip(azurite, azure_store, fault_proxy, tmp_path: Path) -> None:
    src = tmp_path / "src"
    files = make_files(src, 40, seed=3)
    proxy = fault_proxy(azurite.port, delay_ms=20)
    async with proxied_store(proxy.port, azure_store.container) as remote:
        store = Calls(remote)
        assert store.networked
        report = await push(src, store, prefix="p", cache=False)
        data_puts = [name for name, _ in store.puts if name != f"p/{MANIFEST_NAME}"]
        creates = [name for name, kind in store.puts if kind == "create" and name in data_puts]
        assert creates and len(creates) <= INITIAL_LIMIT  # at most the first round of requests
        assert sorted(data_puts) == sorted(f"p/{rel}" for rel in files)  # each file once
        assert report.uploaded == tuple(sorted(files)) and report.failed == ()
        assert await store_contents(azure_store, "p") == files  # read directly, digests verified
        assert set(await assert_manifest_truthful(azure_store, "p")) == set(files)

        # a refused push: its early objects are deleted again, the rest stays as it was
        await azure_store.put("q/d1", b"a file where the push needs a directory")
        before = {o.name: o.etag for o in await azure_store.list()}
        store = Calls(remote)
        with pytest.raises(SyncError, match="refused, nothing was uploaded"):
            await push(src, store, prefix="q", cache=False)
        assert any(kind == "create" for _, kind in store.puts)
        assert {o.name: o.etag for o in await azure_store.list()} == before


@pytest.mark.timeout(60)
async def test_early_blocks_through_a_real_round_trip(azurite, azure_store, fault_proxy, tmp_path: Path) -> None:
    src = tmp_path / "src"
    files = make_files(src, 3, seed=5)
    big = os.urandom(6 * 2 ** 20 + 77)
    (src / "big.bin").write_bytes(big)
    files["big.bin"] = big
    proxy = fault_proxy(azurite.port, delay_ms=20)
    async with proxied_store(proxy.port, azure_store.container) as remote:
        store = Calls(remote)
        report = await push(src, store, prefix="b", cache=False, block_size=2 ** 20)
    listed = store.calls.index(("listed", None))
    assert any(verb == "put_block" for verb, _ in store.calls[:listed])  # staged before the listing answered
    blocks = [arg for verb, arg in store.calls if verb == "put_block"]
    commits = [arg for verb, arg in store.calls if verb == "commit_blocks"]
    assert commits == [tuple(blocks)] and len(blocks) == 7  # one attempt, each block once
    assert report.uploaded == tuple(sorted(files)) and report.failed == ()
    assert await store_contents(azure_store, "b") == files  # read directly, digests verified
    assert set(await assert_manifest_truthful(azure_store, "b")) == set(files)


@pytest.mark.timeout(60)
async def test_early_gets_through_a_real_round_trip(azurite, azure_store, fault_proxy, tmp_path: Path) -> None:
    """The listing held back 300 ms (as a listing of many objects is slow on the service):
    the pull fetches files the manifest names meanwhile, and writes each once, verified."""
    src = tmp_path / "src"
    files = make_files(src, 40, seed=7)
    await push(src, azure_store, prefix="g", cache=False)
    proxy = fault_proxy(azurite.port, delay_ms=20)
    dest = tmp_path / "dest"
    async with proxied_store(proxy.port, azure_store.container) as remote:
        store = Calls(remote, list_delay=0.3)
        report = await pull(store, dest, prefix="g", cache=False)
    listed = store.calls.index(("listed", None))
    gets = [name for verb, name in store.calls if verb == "get" and name != f"g/{MANIFEST_NAME}"]
    early = [name for verb, name in store.calls[:listed] if verb == "get" and name != f"g/{MANIFEST_NAME}"]
    assert len(early) >= 8  # fetched before the listing answered
    assert sorted(gets) == sorted(f"g/{rel}" for rel in files)  # each file once
    assert report.downloaded == tuple(sorted(files)) and report.failed == ()
    assert {p.relative_to(dest).as_posix(): p.read_bytes() for p in dest.rglob("*")
            if p.is_file() and not p.name.startswith(".luisy")} == files

"""Faults on the wire: push and pull through the fault proxy to Azurite still end complete.

The proxy resets connections, answers 503/429 with Retry-After and cuts response bodies
short. The store is made to open one connection per request so that the per-connection
fault rates are per-request rates. Every file must arrive byte-identical and no request
may be tried more often than the retry policy allows.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.azurite import ACCOUNT, KEY, free_port
from benchmarks.proxy import FaultConfig
from luisy_sync import AzureBlobStore, RetryPolicy, SyncError, TransientError, pull, push
from rel_helpers import (CountingProgress, assert_manifest_truthful, make_files, proxied_store,
                               read_tree, store_contents, temp_files)

pytestmark = [pytest.mark.azurite]

BLOCK = 256 * 1024
BIG = {"big/multi-block.bin": 3 * 2 ** 20 + 12345}
FAULTS = FaultConfig(reset_prob=0.07, reset_after=(0, 8192), status_503_prob=0.03, status_429_prob=0.03,
                     truncate_prob=0.08, retry_after=1)
POLICY = RetryPolicy(max_attempts=8, base=0.01, cap=0.25)


@pytest.mark.timeout(60)
async def test_push_and_pull_through_faults_complete_verified_with_bounded_retries(
        azurite, azure_store, fault_proxy, one_request_per_connection, tmp_path: Path) -> None:
    src = tmp_path / "src"
    files = make_files(src, 300, seed=7, big=BIG)
    proxy = fault_proxy(azurite.port, faults=FAULTS, seed=11)
    pushed_progress, pulled_progress = CountingProgress(), CountingProgress()

    async with proxied_store(proxy.port, azure_store.container) as faulty:
        pushed = await push(src, faulty, prefix="proj", block_size=BLOCK, concurrency=16,
                            progress=pushed_progress, cache=False, policy=POLICY)
        assert pushed.failed == () and len(pushed.uploaded) == len(files)
        after_push = dict(proxy.stats.faults)

        dest = tmp_path / "dest"
        pulled = await pull(faulty, dest, prefix="proj", block_size=BLOCK, concurrency=16,
                            progress=pulled_progress, cache=False, policy=POLICY)
    assert pulled.failed == () and len(pulled.downloaded) == len(files)

    # byte-identical everywhere: the store (read directly, not through the proxy) and the pull
    assert await store_contents(azure_store, "proj") == files
    assert set((await assert_manifest_truthful(azure_store, "proj"))) == set(files)
    assert read_tree(dest) == files and temp_files(dest) == []

    # the faults really happened, on both legs
    faults = proxy.stats.faults
    print(f"faults: push {after_push}, total {dict(faults)}, connections {proxy.stats.connections}, "
          f"retries push {sum(pushed_progress.retries.values())} pull {sum(pulled_progress.retries.values())}, "
          f"max attempt {max(pushed_progress.max_attempt, pulled_progress.max_attempt) + 1}")
    assert after_push.get("reset", 0) >= 5 and after_push.get("503", 0) >= 2 and after_push.get("429", 0) >= 2
    assert faults["truncate"] >= 3 and faults["reset"] > after_push["reset"]
    assert proxy.stats.connections >= 600  # one connection per request
    # retries were needed, and bounded by the policy: no request tried more than max_attempts times
    for progress in (pushed_progress, pulled_progress):
        assert sum(progress.retries.values()) > 0
        assert progress.max_attempt <= POLICY.max_attempts - 1
        assert progress.failed_paths == {}
    assert sum(pushed_progress.retries.values()) <= sum(after_push.values())
    assert sum(pulled_progress.retries.values()) <= sum(faults.values()) - sum(after_push.values())


@pytest.mark.timeout(30)
async def test_permanently_failing_endpoint_ends_with_one_clear_error(
        azurite, azure_store, fault_proxy, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_files(src, 5, seed=1)
    proxy = fault_proxy(azurite.port, faults=FaultConfig(reset_prob=1.0, reset_after=(0, 0)))
    policy = RetryPolicy(max_attempts=4, base=0.01, cap=0.05)
    async with proxied_store(proxy.port, azure_store.container) as dead:
        with pytest.raises(TransientError) as pushed:
            await push(src, dead, cache=False, policy=policy)
        with pytest.raises(TransientError) as pulled:
            await pull(dead, tmp_path / "dest", cache=False, policy=policy)
    for err, verb in ((pushed.value, "read"), (pulled.value, "list")):  # push: the manifest's error
        message = str(err)
        assert "\n" not in message
        assert message.startswith(f"{verb} az://{azure_store.container}")
        assert f"cannot reach http://127.0.0.1:{proxy.port}/{ACCOUNT}" in message
        assert "gave up after 4 attempt(s)" in " ".join(getattr(err, "__notes__", []))
    # 4 attempts each, then it stopped (aiohttp may reopen a reset connection once per attempt),
    # plus one attempt per file the push created early while its listing was being retried
    assert 8 <= proxy.stats.connections <= 16 + 5
    assert not (tmp_path / "dest").exists()
    assert await azure_store.list() == []


@pytest.mark.timeout(30)
async def test_closed_port_ends_with_one_clear_error(azure_store, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_files(src, 3, seed=2)
    port = free_port()  # nothing listens here
    policy = RetryPolicy(max_attempts=3, base=0.01, cap=0.05)
    store = AzureBlobStore.from_account_key(ACCOUNT, KEY, "nowhere", endpoint=f"http://127.0.0.1:{port}/x")
    async with store:
        with pytest.raises(SyncError) as caught:
            await push(src, store, cache=False, policy=policy)
    message = str(caught.value)
    assert "\n" not in message and f"cannot reach http://127.0.0.1:{port}/x" in message
    assert message.startswith("read az://nowhere/.luisy-sync.json")


@pytest.mark.parametrize("seed", [8, 63])  # connection 1 (creating the container): a 503 / a reset
@pytest.mark.timeout(30)
async def test_container_creation_is_retried_too(azurite, container_name: str, fault_proxy,
                                                 one_request_per_connection, tmp_path: Path,
                                                 seed: int) -> None:
    src = tmp_path / "src"
    files = make_files(src, 20, seed=seed)
    proxy = fault_proxy(azurite.port, faults=FAULTS, seed=seed)
    async with proxied_store(proxy.port, container_name) as faulty:
        report = await push(src, faulty, cache=False, policy=POLICY)
    assert report.failed == () and proxy.stats.faults
    async with proxied_store(azurite.port, container_name) as direct:
        assert await store_contents(direct) == files

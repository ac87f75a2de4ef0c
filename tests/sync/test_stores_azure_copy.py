"""AzureBlobStore.copy (Copy Blob) on both request paths: a copy the service reports
pending is watched until it ends, a failed, replaced or too slow copy fails clearly (a
slow one is aborted), and a SAS-authorized store authorizes the source with its SAS.

The conformance tests run copy on Azurite, which finishes every copy at once; the
pending cases are played by a scripted server here."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import AsyncIterator

import pytest
from aiohttp import web

from benchmarks.azurite import ACCOUNT, KEY, Azurite, container_sas
from luisy_sync.errors import NotFoundError, StoreError, TransientError
from luisy_sync.stores.azure import AzureBlobStore
from luisy_sync.stores.base import DIGEST_KEY

LAST_MODIFIED = "Wed, 25 Nov 2026 20:50:43 GMT"
LAST_MODIFIED_SECONDS = 1795639843.0


@dataclass
class CopyScript:
    """What the scripted server answers: the copy states Get Blob Properties of the
    destination reports in turn (the last one repeats), and what it was asked."""

    states: list[tuple[str, str]] = field(default_factory=list)
    """(x-ms-copy-status, x-ms-copy-id) per look at the destination."""
    copy_headers: dict[str, str] = field(default_factory=dict)
    looks: int = 0
    aborted: list[str] = field(default_factory=list)


def _blob_headers(etag: str, **extra: str) -> dict[str, str]:
    return {"ETag": etag, "Last-Modified": LAST_MODIFIED, "Content-Length": "5",
            "x-ms-blob-type": "BlockBlob", "x-ms-meta-xxh3": "d" * 32, **extra}


async def _scripted_server(script: CopyScript) -> AsyncIterator[str]:
    async def handle(request: web.Request) -> web.StreamResponse:
        blob = request.path.rsplit("/", 1)[-1]
        if request.method == "HEAD" and blob == "src":
            return web.Response(status=200, headers=_blob_headers('"0xS"'))
        if request.method == "PUT" and request.query.get("comp") == "copy":
            script.aborted.append(request.query["copyid"])
            return web.Response(status=204)
        if request.method == "PUT":
            script.copy_headers = {k.lower(): v for k, v in request.headers.items()}
            return web.Response(status=202, headers={
                "ETag": '"0xE0"', "Last-Modified": LAST_MODIFIED, "x-ms-copy-id": "id-1",
                "x-ms-copy-status": "pending"})
        if request.method == "HEAD" and blob == "dst":
            status, copy_id = script.states[min(script.looks, len(script.states) - 1)]
            script.looks += 1
            return web.Response(status=200, headers=_blob_headers(
                f'"0xE{script.looks}"', **{"x-ms-copy-id": copy_id, "x-ms-copy-status": status,
                                           "x-ms-copy-status-description": "500 InternalError"}))
        return web.Response(status=404, headers={"x-ms-error-code": "BlobNotFound"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/{ACCOUNT}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[CopyScript, str]]:
    """A scripted Blob endpoint: ``src`` exists, a copy onto ``dst`` starts pending."""
    script = CopyScript()
    async for endpoint in _scripted_server(script):
        yield script, endpoint


@pytest.mark.parametrize("fast", [True, False])
async def test_a_pending_copy_is_watched_until_it_succeeds(scripted: tuple[CopyScript, str], fast: bool) -> None:
    script, endpoint = scripted
    script.states = [("pending", "id-1"), ("pending", "id-1"), ("success", "id-1")]
    async with AzureBlobStore.from_account_key(ACCOUNT, KEY, "c", endpoint=endpoint, fast_path=fast) as store:
        info = await asyncio.wait_for(store.copy("src", "dst"), 20)
    assert script.looks == 3 and script.aborted == []
    assert (info.name, info.size, info.digest, info.etag) == ("dst", 5, "d" * 32, '"0xE3"')
    assert info.modified == LAST_MODIFIED_SECONDS
    assert script.copy_headers["x-ms-copy-source"] == f"{endpoint}/c/src"
    assert script.copy_headers["x-ms-source-if-match"] == '"0xS"'


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("end, kind, words", [
    ("failed", TransientError, "copy failed (500 InternalError)"),
    ("aborted", StoreError, "ended 'aborted'"),
    ("replaced", StoreError, "was replaced while the copy was pending"),
])
async def test_a_copy_that_does_not_succeed_fails_clearly(scripted: tuple[CopyScript, str], fast: bool,
                                                          end: str, kind: type, words: str) -> None:
    script, endpoint = scripted
    script.states = [("pending", "id-1"), ("success", "id-2") if end == "replaced" else (end, "id-1")]
    async with AzureBlobStore.from_account_key(ACCOUNT, KEY, "c", endpoint=endpoint, fast_path=fast) as store:
        with pytest.raises(kind) as err:
            await asyncio.wait_for(store.copy("src", "dst"), 20)
    assert type(err.value) is kind and words in str(err.value) and "\n" not in str(err.value)
    assert "copy 'src' to 'dst'" in str(err.value) and script.aborted == []


@pytest.mark.parametrize("fast", [True, False])
async def test_a_copy_pending_too_long_is_aborted(scripted: tuple[CopyScript, str], fast: bool) -> None:
    script, endpoint = scripted
    script.states = [("pending", "id-1")]
    async with AzureBlobStore.from_account_key(ACCOUNT, KEY, "c", endpoint=endpoint, fast_path=fast,
                                               copy_timeout=0.3) as store:
        with pytest.raises(TransientError, match=r"still pending after 0\.3 s and was aborted"):
            await asyncio.wait_for(store.copy("src", "dst"), 20)
    assert script.aborted == ["id-1"] and script.looks >= 2


@pytest.mark.parametrize("fast", [True, False])
async def test_a_missing_source_is_not_found_before_any_copy(scripted: tuple[CopyScript, str], fast: bool) -> None:
    script, endpoint = scripted
    async with AzureBlobStore.from_account_key(ACCOUNT, KEY, "c", endpoint=endpoint, fast_path=fast) as store:
        with pytest.raises(NotFoundError, match="copy 'gone' to 'dst'"):
            await store.copy("gone", "dst")
    assert script.copy_headers == {}


@pytest.mark.parametrize("fast", [True, False])
async def test_a_sas_store_authorizes_the_source_with_its_sas(scripted: tuple[CopyScript, str], fast: bool) -> None:
    script, endpoint = scripted
    script.states = [("success", "id-1")]
    sas = "sv=2021-08-06&sr=c&sp=rwl&sig=c2lnbmF0dXJlc2lnbmF0dXJl"
    async with AzureBlobStore("c", account_url=endpoint, credential=sas, fast_path=fast) as store:
        assert store.fast_path is fast
        info = await asyncio.wait_for(store.copy("src", "dst"), 20)
    assert script.copy_headers["x-ms-copy-source"] == f"{endpoint}/c/src?{sas}"
    assert info.etag == '"0xE1"' and script.looks == 1


@pytest.mark.azurite
@pytest.mark.parametrize("fast", [True, False])
async def test_copy_with_a_container_sas(azurite: Azurite, container_name: str, fast: bool) -> None:
    async with AzureBlobStore.from_connection_string(azurite.connection_string, container_name) as admin:
        await admin.ensure_container()
        sas = container_sas(container_name)
        async with AzureBlobStore.from_sas_url(f"{azurite.endpoint}/{container_name}?{sas}", "p",
                                               fast_path=fast) as store:
            assert store.fast_path is fast
            source = await store.put("cas/1", b"by sas", metadata={DIGEST_KEY: "e" * 32})
            copied = await store.copy("cas/1", "view/1")
            assert (copied.digest, copied.size) == ("e" * 32, 6) and copied.etag != source.etag
            assert (await admin.get("p/view/1")).data == b"by sas"
            assert (await admin.head("p/view/1")).etag == copied.etag


@pytest.mark.azurite
@pytest.mark.parametrize("fast", [True, False])
async def test_copy_of_awkward_names(azurite: Azurite, container_name: str, fast: bool) -> None:
    names = ["100%/a b.txt", "hash#tag", "what?.csv", "amp&eq=plus+tilde~", "ünïcødé/日本語 ファイル",
             "percent%2Fencoded", "semi;colon,comma"]
    async with AzureBlobStore.from_account_key(ACCOUNT, KEY, container_name, endpoint=azurite.endpoint,
                                               fast_path=fast) as store, \
            AzureBlobStore.from_account_key(ACCOUNT, KEY, container_name, endpoint=azurite.endpoint,
                                            fast_path=not fast) as other:
        await store.ensure_container()
        for i, name in enumerate(names):
            await store.put(name, name.encode(), metadata={DIGEST_KEY: f"{i:032x}"})
            copied = await store.copy(name, f"copies/{name}")
            assert copied.digest == f"{i:032x}"
            got = await other.get(f"copies/{name}")
            assert (got.data, got.etag) == (name.encode(), copied.etag)
            await store.copy(f"copies/{name}", name)  # and back, onto the source
            assert (await other.get(name)).data == name.encode()

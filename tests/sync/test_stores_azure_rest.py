"""The fast path of AzureBlobStore (Shared Key signed here): wire compatibility with the
SDK path, awkward names, listing pages, selection and opt-out, errors."""

from __future__ import annotations

import asyncio
import base64
import os
import tracemalloc

import pytest
import xxhash

from benchmarks.azurite import ACCOUNT, KEY, Azurite
from luisy_sync.errors import AuthError, BlocksNotStaged, NotFoundError, StoreError, TransientError
from luisy_sync.stores.azure import AzureBlobStore
from luisy_sync.stores.azure_errors import translate_status
from luisy_sync.stores.azure_auth import SharedKeyAuth
from luisy_sync.stores.azure_rest import RestBlobClient, block_id_b64
from luisy_sync.stores.azure_sdk import SDK_GET_PIECE, SdkBlobClient
from luisy_sync.stores.http1 import HttpPool
from luisy_sync.stores.base import GetResult

WRONG_KEY = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3Jvbmc="
AWKWARD = ["100%/a b.txt", "hash#tag", "what?.csv", "amp&eq=plus+tilde~", "quote'n\"dq",
           "ünïcødé/日本語 ファイル", "semi;colon,comma", "percent%2Fencoded", "brackets[1]{2}(3)"]


def _store(azurite: Azurite, container: str, fast: bool, **kw) -> AzureBlobStore:
    return AzureBlobStore.from_account_key(ACCOUNT, KEY, container, endpoint=azurite.endpoint,
                                           fast_path=fast, **kw)


@pytest.mark.azurite
@pytest.mark.parametrize("writer_fast", [True, False])
async def test_awkward_names_and_metadata_cross_paths(azurite: Azurite, container_name: str,
                                                      writer_fast: bool) -> None:
    async with _store(azurite, container_name, writer_fast, prefix="pre fix") as writer, \
            _store(azurite, container_name, not writer_fast, prefix="pre fix") as reader:
        await writer.ensure_container()
        written = {}
        for i, name in enumerate(AWKWARD):
            data = name.encode() * (i + 1)
            info = await writer.put(name, data, metadata={"xxh3": f"{i:032x}", "Odd_Name": "v v"})
            written[name] = (data, info.etag)
        listed = {o.name: o for o in await reader.list()}
        assert sorted(listed) == sorted(AWKWARD)
        for name, (data, etag) in written.items():
            head = await reader.head(name)
            assert (head.size, head.etag, listed[name].etag) == (len(data), etag, etag)
            assert head.digest == listed[name].digest == f"{AWKWARD.index(name):032x}"
            assert {k.lower(): v for k, v in head.metadata.items()}["odd_name"] == "v v"
            assert await reader.get(name) == GetResult(data, etag)
            assert await reader.get(name, 2, 3) == GetResult(data[2:5], etag)
        assert [o.name for o in await reader.list("100%/")] == ["100%/a b.txt"]


@pytest.mark.azurite
@pytest.mark.parametrize("stager_fast", [True, False])
async def test_blocks_staged_by_one_path_commit_with_the_other(azurite: Azurite, container_name: str,
                                                               stager_fast: bool) -> None:
    async with _store(azurite, container_name, stager_fast) as stager, \
            _store(azurite, container_name, not stager_fast) as committer:
        await stager.ensure_container()
        blocks = [(f"blk-{i:04d}", bytes([i]) * 1000) for i in range(5)]
        for block_id, data in blocks:
            await stager.put_block("big #1", block_id, data)
        info = await committer.commit_blocks("big #1", [b for b, _ in blocks], metadata={"xxh3": "a" * 32})
        assert (info.size, info.digest) == (5000, "a" * 32)
        assert (await stager.get("big #1")).data == b"".join(d for _, d in blocks)


@pytest.mark.azurite
@pytest.mark.parametrize("fast", [True, False])
async def test_a_commit_of_blocks_it_staged_reads_nothing_back(azurite: Azurite, container_name: str,
                                                               fast: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The committed size is the staged blocks' lengths: no Get Properties after the
    commit, and the info says what a head of the object says."""
    heads: list[str] = []
    for client in (RestBlobClient, SdkBlobClient):
        real = client.head
        monkeypatch.setattr(client, "head", lambda self, full, name, what="", real=real:
                            heads.append(name) or real(self, full, name, what))
    async with _store(azurite, container_name, fast) as store:
        await store.ensure_container()
        await store.put_block("big", "abn-0", b"an attempt that never committed")
        for attempt in ("old", "new"):  # the second commit replaces the first
            blocks = [(f"{attempt}-{i}", bytes([i]) * (1000 + i)) for i in range(3)]
            for block_id, data in blocks:
                await store.put_block("big", block_id, data)
            info = await store.commit_blocks("big", [b for b, _ in blocks], metadata={"xxh3": "b" * 32})
        assert heads == []
        head = await store.head("big")
        assert (info.size, info.etag, info.digest) == (head.size, head.etag, head.digest) == (3003, head.etag, "b" * 32)
        assert info.modified is not None and abs(info.modified - (head.modified or 0)) < 2
        assert store._staged == {}  # the abandoned attempt's block too: the commit dropped it


@pytest.mark.azurite
async def test_listing_follows_next_marker(azurite: Azurite, container_name: str) -> None:
    async with _store(azurite, container_name, True) as store:
        await store.ensure_container()
        names = [f"p/{i:02d}" for i in range(11)] + ["q"]
        for name in names:
            await store.put(name, name.encode(), metadata={"xxh3": "0" * 32})
    pool = HttpPool(azurite.endpoint.rsplit("/", 1)[0])
    try:
        client = RestBlobClient(azurite.endpoint, container_name, SharedKeyAuth(ACCOUNT, base64.b64decode(KEY)),
                                http=lambda: pool, list_page_size=3)
        listed = await client.list("", "", "list")
        assert [o.name for o in listed] == names and all(o.digest == "0" * 32 for o in listed)
        below = await client.list("p/", "p/", "list")
        assert [o.name for o in below] == [n[2:] for n in names[:-1]]
        assert all(o.etag and o.etag.startswith('"') for o in below)
    finally:
        await pool.close()


@pytest.mark.azurite
async def test_range_edges_and_missing(azurite: Azurite, container_name: str) -> None:
    async with _store(azurite, container_name, True) as store:
        await store.ensure_container()
        await store.put("f", b"0123456789")
        assert (await store.get("f", 10)).data == b""
        assert (await store.get("f", 12, 5)).data == b""
        assert (await store.get("f", 8, 100)).data == b"89"
        with pytest.raises(NotFoundError):
            await store.head("nope")
        with pytest.raises(NotFoundError):
            (await store.get("nope")).data


class _SmallSink:
    """A BodySink with one 256 KiB buffer that hashes what lands in it."""

    def __init__(self) -> None:
        self.buf, self.hasher, self.length, self.got = bytearray(256 * 1024), xxhash.xxh3_128(), -1, 0

    def start(self, length: int) -> None:
        self.length = length

    def buffer(self, wake):
        return memoryview(self.buf)

    def received(self, nbytes: int) -> None:
        self.hasher.update(memoryview(self.buf)[:nbytes])
        self.got += nbytes


@pytest.mark.azurite
@pytest.mark.parametrize("fast", [True, False])
async def test_streamed_range_holds_pieces_not_the_range(azurite: Azurite, container_name: str,
                                                         fast: bool) -> None:
    """get_stream hands a 40 MiB range over as it arrives on both paths: the client never
    holds the range (the SDK path holds a few pieces of SDK_GET_PIECE at a time)."""
    data = os.urandom(40 * 2 ** 20 + 5)
    async with _store(azurite, container_name, fast) as store:
        await store.ensure_container()
        etag = (await store.put("big", data)).etag
        sink = _SmallSink()
        tracemalloc.start()
        try:
            got = await store.get_stream("big", 3, len(data) - 3, sink)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert got == GetResult(b"", etag) and (sink.length, sink.got) == (len(data) - 3, len(data) - 3)
    assert sink.hasher.hexdigest() == xxhash.xxh3_128(data[3:]).hexdigest()
    assert peak < 5 * SDK_GET_PIECE, f"held {peak} bytes at once"


def test_fast_path_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    cs = f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};BlobEndpoint=http://127.0.0.1:1/{ACCOUNT}"
    monkeypatch.delenv("LUISY_SYNC_AZURE_FASTPATH", raising=False)
    assert AzureBlobStore.from_connection_string(cs, "c").fast_path
    assert AzureBlobStore.from_account_key(ACCOUNT, KEY, "c").fast_path
    assert AzureBlobStore("c", account_url="https://a.blob.core.windows.net", credential=KEY).fast_path
    assert not AzureBlobStore.from_account_key(ACCOUNT, KEY, "c", fast_path=False).fast_path
    assert AzureBlobStore.from_sas_url("https://a.blob.core.windows.net/c?sv=1&sig=x").fast_path
    monkeypatch.setenv("LUISY_SYNC_AZURE_FASTPATH", "0")
    assert not AzureBlobStore.from_connection_string(cs, "c").fast_path
    assert AzureBlobStore.from_connection_string(cs, "c", fast_path=True).fast_path


@pytest.mark.azurite
async def test_wrong_key_message_has_no_key_or_signature(azurite: Azurite, container_name: str) -> None:
    async with _store(azurite, container_name, True) as good:
        await good.ensure_container()
        await good.put("x", b"1")
    async with AzureBlobStore.from_account_key(ACCOUNT, WRONG_KEY, container_name,
                                               endpoint=azurite.endpoint) as store:
        for op in (store.head("x"), store.get("x"), store.put_block("x", "b1", b"1"),
                   store.commit_blocks("x", ["b1"]), store.list()):
            with pytest.raises(AuthError) as err:
                await op
            text = str(err.value)
            assert WRONG_KEY[:16] not in text and "SharedKey" not in text and "\n" not in text


@pytest.mark.parametrize("fast", [True, False])
async def test_error_answers_on_both_paths(fast: bool, canned_reply_server) -> None:
    cut = (b"HTTP/1.1 206 Partial Content\r\nContent-Length: 100\r\nContent-Range: bytes 0-99/100\r\n"
           b"x-ms-blob-type: BlockBlob\r\n"
           b"ETag: \"0x1\"\r\n\r\n" + b"x" * 40)
    busy = (b"HTTP/1.1 503 Server Busy\r\nRetry-After: 4\r\nx-ms-error-code: ServerBusy\r\n"
            b"Content-Length: 0\r\n\r\n")
    xml = b'<?xml version="1.0"?><Error><Code>InvalidBlockList</Code><Message>no</Message></Error>'
    code_in_body = (b"HTTP/1.1 400 Bad\r\nContent-Type: application/xml\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(xml), xml))
    for reply, call, kind in ((cut, "get", TransientError), (busy, "put", TransientError),
                              (code_in_body, "commit", BlocksNotStaged)):
        server, port = await canned_reply_server(reply)
        async with server, AzureBlobStore.from_account_key(
                ACCOUNT, KEY, "c", endpoint=f"http://127.0.0.1:{port}/{ACCOUNT}", fast_path=fast) as store:
            op = {"get": lambda: store.get("x"), "put": lambda: store.put("x", b"1"),
                  "commit": lambda: store.commit_blocks("x", ["a"])}[call]
            with pytest.raises(kind) as err:
                await asyncio.wait_for(op(), 20)
        assert type(err.value) is kind and KEY not in str(err.value)
        if reply is busy:
            assert (err.value.status, err.value.retry_after) == (503, 4.0)
        if reply is code_in_body:
            assert "never staged" in str(err.value)


def test_translate_status_and_block_ids() -> None:
    err = translate_status(429, "", {"retry-after": "2"}, "put 'x'", "https://a", [KEY], f"key {KEY}")
    assert isinstance(err, TransientError) and err.retry_after == 2.0
    err = translate_status(409, "LeaseIdMissing", {}, "put 'x'", "https://a", [KEY], f"key {KEY}")
    assert type(err) is StoreError and KEY not in str(err) and "LeaseIdMissing" in str(err)
    assert block_id_b64("blk-0001") == base64.b64encode(b"blk-0001").decode()

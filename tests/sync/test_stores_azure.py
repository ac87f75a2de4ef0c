"""AzureBlobStore specifics: prefixes, credentials, error translation, no secrets in output."""

from __future__ import annotations

import asyncio

import pytest
from azure.core.exceptions import HttpResponseError

from benchmarks.azurite import ACCOUNT, KEY, Azurite, container_sas, free_port
from luisy_sync.errors import (AuthError, BlocksNotStaged, ConfigError, ContainerNotFound,
                               NotFoundError, PreconditionFailed, StoreError, TransientError)
from luisy_sync.stores.azure import AzureBlobStore
from luisy_sync.stores.azure_errors import parse_retry_after, scrub, translate
from luisy_sync.stores.small import read_small, write_small

pytestmark = pytest.mark.azurite
WRONG_KEY = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3Jvbmc="


async def test_prefix_is_stripped_and_url_is_secret_free(azurite: Azurite, container_name: str) -> None:
    store = AzureBlobStore.from_connection_string(azurite.connection_string, container_name, "/proj/v1/")
    raw = AzureBlobStore.from_connection_string(azurite.connection_string, container_name)
    async with store, raw:
        assert store.url == f"az://{container_name}/proj/v1" and KEY not in store.url
        await store.ensure_container()
        await raw.put("outside", b"o")
        await store.put("a/b.txt", b"data", metadata={"xxh3": "f" * 32})
        assert [(o.name, o.digest) for o in await store.list()] == [("a/b.txt", "f" * 32)]
        assert [o.name for o in await store.list("a/")] == ["a/b.txt"]
        assert sorted(o.name for o in await raw.list()) == ["outside", "proj/v1/a/b.txt"]
        assert (await store.get("a/b.txt", 1, 2)).data == b"at"


async def test_wrong_key_is_an_auth_error_without_the_key(azurite: Azurite, container_name: str) -> None:
    async with AzureBlobStore.from_account_key(ACCOUNT, WRONG_KEY, container_name,
                                               endpoint=azurite.endpoint) as store:
        for op in (store.list(), store.put("x", b"1"), store.ensure_container()):
            with pytest.raises(AuthError) as err:
                await op
            text = str(err.value)
            assert "credentials rejected by" in text and azurite.endpoint in text
            assert WRONG_KEY not in text and WRONG_KEY[:20] not in text and "\n" not in text


async def test_unreachable_endpoint_is_transient(container_name: str) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}/{ACCOUNT}"
    async with AzureBlobStore.from_account_key(ACCOUNT, KEY, container_name, endpoint=endpoint,
                                               connection_timeout=5) as store:
        with pytest.raises(TransientError) as err:
            await asyncio.wait_for(store.head("x"), 20)
        assert err.value.retryable and KEY not in str(err.value)


async def test_missing_container(azurite: Azurite, container_name: str) -> None:
    async with AzureBlobStore.from_account_key(ACCOUNT, KEY, container_name, endpoint=azurite.endpoint) as store:
        with pytest.raises(ContainerNotFound) as err:
            await store.ensure_container(create=False)
        assert "\n" not in str(err.value)
        with pytest.raises(ContainerNotFound):
            await store.list()
        await store.ensure_container(create=True)
        await store.ensure_container(create=True)
        await store.ensure_container(create=False)
        assert await store.list() == []


async def test_container_sas_url(azurite: Azurite, container_name: str) -> None:
    async with AzureBlobStore.from_connection_string(azurite.connection_string, container_name) as admin:
        await admin.ensure_container()
    sas = container_sas(container_name)
    url = f"{azurite.endpoint}/{container_name}?{sas}"
    async with AzureBlobStore.from_sas_url(url, "pre") as store:
        assert store.url == f"az://{container_name}/pre"
        await store.ensure_container()
        etag = await write_small(store, "m", b"1", if_none_match=True)
        with pytest.raises(PreconditionFailed):
            await write_small(store, "m", b"2", if_none_match=True)
        assert await read_small(store, "m") == (b"1", etag)
    bad = url.replace("sig=", "sig=AAAA")
    async with AzureBlobStore.from_sas_url(bad) as store:
        with pytest.raises(AuthError) as err:
            await store.list()
        assert "sig=" not in str(err.value) and sas not in str(err.value)


def test_malformed_credentials_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        AzureBlobStore.from_connection_string("garbage", "c")
    with pytest.raises(ConfigError) as err:
        AzureBlobStore.from_connection_string("AccountName=a;AccountKey=not base64!!", "c")
    assert "not base64!!" not in str(err.value)
    with pytest.raises(ConfigError):
        AzureBlobStore.from_sas_url("https://acct.blob.core.windows.net/c")  # no token
    with pytest.raises(ConfigError):
        AzureBlobStore(None, account_url="https://acct.blob.core.windows.net", credential=KEY)


class _FakeResponse:
    def __init__(self, status: int, headers: dict[str, str]):
        self.status_code = status
        self.reason = "Reason"
        self.headers = headers
        self.content_type = "application/xml"

    def text(self, encoding: str | None = None) -> str:
        return ""


def _http_error(status: int, code: str = "", **headers: str) -> HttpResponseError:
    if code:
        headers["x-ms-error-code"] = code
    headers = {k.replace("_", "-"): v for k, v in headers.items()}
    return HttpResponseError(message=f"failed https://a.blob.core.windows.net/c/x?sig={KEY}",
                             response=_FakeResponse(status, headers))


@pytest.mark.parametrize("status,code,kind", [
    (408, "", TransientError), (429, "", TransientError), (500, "", TransientError),
    (502, "", TransientError), (503, "ServerBusy", TransientError), (504, "", TransientError),
    (401, "", AuthError), (403, "AuthorizationFailure", AuthError), (404, "BlobNotFound", NotFoundError),
    (404, "ContainerNotFound", ContainerNotFound), (412, "ConditionNotMet", PreconditionFailed),
    (409, "BlobAlreadyExists", PreconditionFailed), (400, "InvalidBlockList", BlocksNotStaged),
    (409, "LeaseIdMissing", StoreError),
])
def test_status_translation(status: int, code: str, kind: type) -> None:
    err = translate(_http_error(status, code), "put 'x'", "https://a.blob.core.windows.net", [KEY])
    assert type(err) is kind and err.status == status
    assert KEY not in str(err) and "sig=" not in str(err) and "\n" not in str(err)


def test_retry_after_is_parsed() -> None:
    err = translate(_http_error(503, retry_after="7"), "get", "https://a", ())
    assert isinstance(err, TransientError) and err.retry_after == 7.0
    assert translate(_http_error(500), "get", "https://a", ()).retry_after is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert parse_retry_after("soon") is None


def test_connection_errors_are_transient() -> None:
    for exc in (ConnectionResetError("reset"), asyncio.TimeoutError()):
        assert isinstance(translate(exc, "get", "https://a", ()), TransientError)
    boom = ValueError("a bug")
    assert translate(boom, "get", "https://a", ()) is boom


def test_scrub_removes_secrets() -> None:
    text = (f"GET https://acct.blob.core.windows.net/c/x?sv=2020&sig=abc%2Bdef failed\n"
            f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={KEY}")
    out = scrub(text, [KEY])
    assert out == "GET https://acct.blob.core.windows.net/c/x failed"
    assert KEY not in scrub(f"AccountKey={KEY};", []) and "<redacted>" in scrub(f"key {KEY}", [KEY])


async def test_truncated_body_is_transient(canned_reply_server) -> None:
    reply = (b"HTTP/1.1 206 Partial Content\r\nContent-Length: 100\r\nContent-Range: bytes 0-99/100\r\n"
             b"x-ms-blob-type: BlockBlob\r\nETag: \"0x1\"\r\n\r\n" + b"x" * 40)
    server, port = await canned_reply_server(reply)
    async with server, AzureBlobStore.from_account_key(
            ACCOUNT, KEY, "c", endpoint=f"http://127.0.0.1:{port}/{ACCOUNT}") as store:
        with pytest.raises(TransientError):
            await asyncio.wait_for(store.get("x", 0, 100), 20)


async def test_busy_server_retry_after_end_to_end(canned_reply_server) -> None:
    reply = (b"HTTP/1.1 503 Server Busy\r\nRetry-After: 3\r\nx-ms-error-code: ServerBusy\r\n"
             b"Content-Length: 0\r\n\r\n")
    server, port = await canned_reply_server(reply)
    async with server, AzureBlobStore.from_account_key(
            ACCOUNT, KEY, "c", endpoint=f"http://127.0.0.1:{port}/{ACCOUNT}") as store:
        with pytest.raises(TransientError) as err:
            await asyncio.wait_for(store.put("x", b"1"), 20)
        assert err.value.retry_after == 3.0 and err.value.status == 503

"""How the fast path authorizes requests (luisy_sync.stores.azure_auth): Shared Key, SAS and
Azure AD bearer tokens on the wire, token refresh, and which credential takes which path."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest
from azure.core.credentials import AccessToken, AzureNamedKeyCredential, AzureSasCredential
from azure.core.exceptions import ClientAuthenticationError

from benchmarks.azurite import ACCOUNT, KEY
from luisy_sync.errors import AuthError
from luisy_sync.stores.azure import AzureBlobStore
from luisy_sync.stores.azure_auth import BearerAuth, SasAuth, SharedKeyAuth
from luisy_sync.stores.azure_rest import RestBlobClient
from luisy_sync.stores.http1_response import Headers, Response

SAS = "sv=2021-08-06&ss=b&srt=sco&sp=rwdlac&se=2030-01-01T00%3A00%3A00Z&sig=c2lnbmF0dXJlK3NsYXNoLw%3D%3D"
URL = "https://acct.blob.core.windows.net"


class RecordingPool:
    """Stands in for the HttpPool: records what would be sent, answers 200 with an ETag."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict[str, str]]] = []

    async def request(self, verb: str, target: str, headers: dict[str, str], body: Any = None,
                      sink: Any = None) -> Response:
        self.sent.append((verb, target, dict(headers)))
        return Response(200, "OK", Headers([("ETag", '"0x1"'), ("Content-Length", "3"),
                                            ("x-ms-copy-status", "success")]), bytearray(b"abc"))


class FakeTokens:
    """An async TokenCredential whose tokens live ``lifetime`` seconds on ``clock``."""

    def __init__(self, clock: list[float], lifetime: float = 3600.0, fail: bool = False):
        self.clock, self.lifetime, self.fail = clock, lifetime, fail
        self.calls: list[tuple[str, ...]] = []

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.calls.append(scopes)
        await asyncio.sleep(0.01)  # a fetch takes a while: concurrent requests must share it
        if self.fail:
            raise ClientAuthenticationError("no identity available: secret-ish detail")
        return AccessToken(f"token-{len(self.calls)}", int(self.clock[0] + self.lifetime))

    async def close(self) -> None:
        return None


def _client(auth: Any) -> tuple[RestBlobClient, RecordingPool]:
    pool = RecordingPool()
    return RestBlobClient(URL, "box", auth, http=lambda: pool, secrets=[SAS]), pool  # type: ignore[arg-type, return-value]


async def test_sas_goes_into_every_query_and_no_authorization_header() -> None:
    client, pool = _client(SasAuth("?" + SAS))
    await client.head("a b/c", "a b/c")
    await client.put_block("f", "f", "blk-1", b"xyz")
    await client.start_copy("src", "dst", "dst", '"0x1"', "copy")
    (_, head_target, head_headers), (_, block_target, _), (_, copy_target, copy_headers) = pool.sent
    assert head_target == f"/box/a%20b/c?{SAS}" and "Authorization" not in head_headers
    assert block_target == f"/box/f?comp=block&blockid={base64.b64encode(b'blk-1').decode().replace('=', '%3D')}&{SAS}"
    assert copy_target == f"/box/dst?{SAS}"
    assert copy_headers["x-ms-copy-source"] == f"{URL}/box/src?{SAS}"  # the source is read with the SAS too


async def test_shared_key_signs_without_touching_the_query() -> None:
    client, pool = _client(SharedKeyAuth(ACCOUNT, base64.b64decode(KEY)))
    await client.head("x", "x")
    (_, target, headers), = pool.sent
    assert target == "/box/x" and headers["Authorization"].startswith(f"SharedKey {ACCOUNT}:")


async def test_bearer_token_is_fetched_once_for_concurrent_requests_and_again_before_it_expires() -> None:
    clock = [1000.0]
    tokens = FakeTokens(clock)
    client, pool = _client(BearerAuth(tokens, clock=lambda: clock[0]))
    await asyncio.gather(*(client.head(f"f{i}", f"f{i}") for i in range(20)))
    assert tokens.calls == [("https://storage.azure.com/.default",)]
    assert {h["Authorization"] for _, _, h in pool.sent} == {"Bearer token-1"}
    assert all("?" not in target for _, target, _ in pool.sent)
    clock[0] += 3600 - 301  # more than 5 minutes left: still the same token
    await client.head("x", "x")
    clock[0] += 2  # under 5 minutes left: a new one, before the old one runs out
    await client.head("x", "x")
    assert len(tokens.calls) == 2 and pool.sent[-1][2]["Authorization"] == "Bearer token-2"


async def test_a_short_lived_token_is_used_for_half_its_life_not_fetched_per_request() -> None:
    clock = [0.0]
    tokens = FakeTokens(clock, lifetime=120.0)
    client, _ = _client(BearerAuth(tokens, clock=lambda: clock[0]))
    for _ in range(5):
        await client.head("x", "x")
    clock[0] += 59
    await client.head("x", "x")
    assert len(tokens.calls) == 1
    clock[0] += 2
    await client.head("x", "x")
    assert len(tokens.calls) == 2


async def test_a_credential_that_cannot_give_a_token_is_one_auth_error() -> None:
    client, pool = _client(BearerAuth(FakeTokens([0.0], fail=True)))
    with pytest.raises(AuthError, match=r"^head 'x': could not obtain credentials for https://acct") as err:
        await client.head("x", "x")
    assert "\n" not in str(err.value) and not pool.sent


def test_which_credential_takes_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LUISY_SYNC_AZURE_FASTPATH", raising=False)
    tokens = FakeTokens([0.0])
    assert AzureBlobStore("c", account_url=URL, credential=AzureSasCredential(SAS)).fast_path
    assert AzureBlobStore("c", account_url=URL, credential=SAS).fast_path  # a SAS string
    assert AzureBlobStore.from_sas_url(f"{URL}/c?{SAS}").fast_path
    assert AzureBlobStore("c", account_url=URL, credential=tokens).fast_path
    assert AzureBlobStore("c", account_url=URL, credential=AzureNamedKeyCredential(ACCOUNT, KEY)).fast_path
    # a token never travels unencrypted: over http the SDK path refuses it as before
    assert not AzureBlobStore("c", account_url="http://127.0.0.1:1/acct", credential=tokens).fast_path
    assert not AzureBlobStore("c", account_url=URL, credential=tokens, fast_path=False).fast_path
    monkeypatch.setenv("LUISY_SYNC_AZURE_FASTPATH", "0")
    assert not AzureBlobStore.from_sas_url(f"{URL}/c?{SAS}").fast_path


@pytest.mark.parametrize("host", ["127.0.0.1:10000", "localhost:10000", "10.1.2.3", "[::1]:10000"])
def test_ip_and_localhost_endpoints_name_the_account_in_the_path(host: str) -> None:
    """Azurite and IP endpoints are path-style (…/<account>/<container>) for a SAS URL and
    for an account URL with a key alike; a DNS name carries the account in the host."""
    sas = AzureBlobStore.from_sas_url(f"http://{host}/{ACCOUNT}/box/pre?sv=1&sig=x")
    assert (sas.account_url, sas.container, sas.prefix) == (f"http://{host}/{ACCOUNT}", "box", "pre")
    keyed = AzureBlobStore("box", account_url=f"http://{host}/{ACCOUNT}", credential=KEY)
    assert keyed._credential.named_key.name == ACCOUNT
    named = AzureBlobStore("box", account_url="https://acct.blob.core.windows.net", credential=KEY)
    assert named._credential.named_key.name == "acct"

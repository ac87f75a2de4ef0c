"""How a request of the lean REST path (``azure_rest``) is authorized.

Three ways, one per kind of credential:

- ``SharedKeyAuth``: an account key signs each request (``Authorization: SharedKey``);
  the HMAC key schedule is set up once and copied per request.
- ``SasAuth``: a shared access signature travels in every request's query string.
- ``BearerAuth``: an Azure AD token (from an async ``TokenCredential``, e.g.
  azure-identity's ``DefaultAzureCredential``) travels as ``Authorization: Bearer``; it
  is fetched once and fetched again 5 minutes before it expires, one fetch at a time.

None of them puts a secret into a message; ``secrets`` lists what messages must never show.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from typing import Any, Callable, Protocol
from urllib.parse import urlsplit

from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential

__all__ = ["RequestAuth", "SharedKeyAuth", "SasAuth", "BearerAuth", "STORAGE_SCOPE", "request_auth"]

STORAGE_SCOPE = "https://storage.azure.com/.default"
"""The OAuth scope of Azure Storage tokens."""
TOKEN_REFRESH_MARGIN = 300.0
"""A token is fetched again this many seconds before it expires (as the SDK does)."""

Query = tuple[tuple[str, str], ...]


def plain_sort(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The order of x-ms-* headers in a Shared Key signature when every name is plain."""
    return sorted(headers)


class RequestAuth(Protocol):
    """What the REST client asks of an authorization."""

    query: str
    """Text appended to every request's query string ("" when none)."""

    def stale(self) -> bool:
        """True when ``refresh`` must be awaited before the next ``authorize``."""
        ...

    async def refresh(self) -> None:
        """Make the credential current (fetch a token)."""
        ...

    def authorize(self, verb: str, path: str, query: Query, headers: dict[str, str], length: int,
                  content_type: str, sort: Callable[[list[tuple[str, str]]], Any]) -> None:
        """Add what authorizes this request to ``headers``."""
        ...


class _LastingAuth:
    """An authorization that never expires on its own (nothing to refresh)."""

    query = ""

    def stale(self) -> bool:
        return False

    async def refresh(self) -> None:
        return None


class SharedKeyAuth(_LastingAuth):
    """Shared Key signing (Blob service, version 2015-02-21 and later) with an account key."""

    def __init__(self, account: str, key: bytes):
        self._resource_prefix = f"/{account}"
        self._auth_prefix = f"SharedKey {account}:"
        self._mac = hmac.new(key, digestmod=hashlib.sha256)

    def authorize(self, verb: str, path: str, query: Query, headers: dict[str, str], length: int,
                  content_type: str, sort: Callable[[list[tuple[str, str]]], Any] = plain_sort) -> None:
        xms = sort([(k.lower(), v.strip()) for k, v in headers.items() if k[:5].lower() == "x-ms-"])
        canonical = "".join(f"{k}:{v}\n" for k, v in xms)
        resource = self._resource_prefix + path + "".join(f"\n{k}:{v}" for k, v in sorted(query))
        to_sign = (f"{verb}\n\n\n{length or ''}\n\n{content_type}\n\n\n"
                   f"{headers.get('If-Match', '')}\n{headers.get('If-None-Match', '')}\n\n\n"
                   f"{canonical}{resource}")
        mac = self._mac.copy()
        mac.update(to_sign.encode("utf-8"))
        headers["Authorization"] = self._auth_prefix + base64.b64encode(mac.digest()).decode("ascii")


class SasAuth(_LastingAuth):
    """A shared access signature (the token without its leading ``?``) on every request."""

    def __init__(self, token: str):
        self.query = token.lstrip("?")

    def authorize(self, verb: str, path: str, query: Query, headers: dict[str, str], length: int,
                  content_type: str, sort: Callable[[list[tuple[str, str]]], Any] = plain_sort) -> None:
        return None


class BearerAuth:
    """An Azure AD token of ``credential`` (an async TokenCredential) for ``scope``."""

    query = ""

    def __init__(self, credential: Any, scope: str = STORAGE_SCOPE, *,
                 clock: Callable[[], float] = time.time):
        self._credential = credential
        self._scope = scope
        self._clock = clock
        self._header = ""
        self._refresh_at = float("-inf")
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None

    def stale(self) -> bool:
        return self._clock() >= self._refresh_at

    async def refresh(self) -> None:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:  # a lock belongs to one loop
            self._lock, self._lock_loop = asyncio.Lock(), loop
        async with self._lock:  # one fetch; requests that waited find the token current
            if not self.stale():
                return
            token = await self._credential.get_token(self._scope)
            self._header = f"Bearer {token.token}"
            left = float(token.expires_on) - self._clock()
            # a short-lived token is used for half its life, not fetched for every request
            self._refresh_at = float(token.expires_on) - min(TOKEN_REFRESH_MARGIN, max(left, 0.0) / 2)

    def authorize(self, verb: str, path: str, query: Query, headers: dict[str, str], length: int,
                  content_type: str, sort: Callable[[list[tuple[str, str]]], Any] = plain_sort) -> None:
        headers["Authorization"] = self._header


def request_auth(credential: Any, account_url: str) -> RequestAuth | None:
    """How the fast path authorizes requests with ``credential``; None where it cannot
    (the SDK path serves them): a token over plain http (the SDK refuses to send one
    unencrypted, and so do we), a key without an account name, or another credential."""
    if isinstance(credential, AzureNamedKeyCredential):
        name, key = credential.named_key
        return SharedKeyAuth(name, base64.b64decode(key)) if name else None
    if isinstance(credential, AzureSasCredential):
        return SasAuth(credential.signature)
    if callable(getattr(credential, "get_token", None)) and urlsplit(account_url).scheme == "https":
        return BearerAuth(credential)
    return None

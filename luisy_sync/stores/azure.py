"""AzureBlobStore: a Store on Azure Blob Storage (or Azurite) via azure.storage.blob.aio.

One ContainerClient per event loop on an aiohttp session, one lean keep-alive pool
(``http1``) per event loop for the fast path, both sized for the engine's concurrency,
SDK retries off (the transfer engine owns the retry policy).
The xxh3 digest travels as blob metadata ``xxh3``. Errors are translated in
``azure_errors``; no message carries a key, SAS token or connection string.

The request path is chosen once, at construction: the verbs (list, head, get, put,
put_block, commit_blocks, copy) go through ``RestBlobClient`` (``azure_rest``, on the
lean pool) with an account key (Shared Key), a SAS, or an Azure AD token credential on
an https endpoint (``azure_auth``); otherwise (``fast_path=False``,
``LUISY_SYNC_AZURE_FASTPATH=0``, a token over plain http, any other credential) through
``SdkBlobClient`` (``azure_sdk``), which also does delete and container management on
both paths.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any, Mapping, Protocol, Sequence
from urllib.parse import urlsplit

import aiohttp
from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential
from azure.core.pipeline.transport import AioHttpTransport
from azure.storage.blob.aio import BlobServiceClient, ContainerClient

from luisy_sync.errors import NotFoundError, PreconditionFailed, StoreError, TransientError
from luisy_sync.paths import safe_relpath
from luisy_sync.stores.azure_errors import scrub
from luisy_sync.stores.azure_sdk import SDK_GET_PIECE, SdkBlobClient
from luisy_sync.stores.azure_auth import request_auth
from luisy_sync.stores.azure_credentials import resolve_credentials
from luisy_sync.stores.azure_rest import CopyState, RestBlobClient
from luisy_sync.stores.base import BodySink, BytesLike, GetResult, ObjectInfo, PutMode, check_range
from luisy_sync.stores.http1 import HttpPool, proxy_from_env

DEFAULT_ENDPOINT = "https://{account}.blob.core.windows.net"
COPY_TIMEOUT = 300.0
"""Seconds a pending Copy Blob may take before ``copy`` aborts it and fails."""
_COPY_POLL = (0.05, 2.0)
"""The first and the longest pause between two looks at a pending copy (seconds)."""


class BlobRequests(Protocol):
    """The verbs of one request path: ``RestBlobClient`` (on the store's lean HTTP/1.1
    pool) or ``SdkBlobClient`` (the azure SDK). ``full`` is the blob
    name below the container, ``name`` the store-relative one (results, messages)."""

    async def list(self, full_prefix: str, head: str, what: str) -> list[ObjectInfo]: ...

    async def head(self, full: str, name: str, what: str = "") -> ObjectInfo: ...

    async def get(self, full: str, name: str, start: int, length: int | None,
                  what: str, sink: BodySink | None = None) -> GetResult | None: ...

    async def put(self, full: str, name: str, data: BytesLike, metadata: Mapping[str, str] | None,
                  mode: PutMode) -> ObjectInfo: ...

    async def put_block(self, full: str, name: str, block_id: str, data: BytesLike) -> None: ...

    async def commit_blocks(self, full: str, name: str, block_ids: Sequence[str],
                            metadata: Mapping[str, str] | None, size: int | None) -> ObjectInfo: ...

    async def start_copy(self, full_src: str, full: str, name: str, source_etag: str | None,
                         what: str) -> CopyState: ...

    async def copy_state(self, full: str, name: str, what: str) -> CopyState: ...

    async def abort_copy(self, full: str, name: str, copy_id: str, what: str) -> None: ...


class AzureBlobStore:
    """A Store on one Azure Blob container; names are relative to ``prefix``.

    Credentials: ``connection_string``; or ``account_url`` with ``credential`` (an account
    key string, an ``AzureNamedKeyCredential``, a SAS string or an async TokenCredential);
    or a ``sas_url``; with ``account_url`` alone, ``DefaultAzureCredential`` from
    azure-identity is used. ``fast_path`` (default: on unless LUISY_SYNC_AZURE_FASTPATH=0)
    sends the hot calls without the SDK: Shared Key signed, with the SAS, or with the
    token (https only).
    ``copy_timeout``: seconds ``copy`` waits for a Copy Blob the service reports pending.
    """

    networked = True
    """Calls cross a network: a push creates new files while its listing is on its way."""

    def __init__(self, container: str | None, prefix: str = "", *, account_url: str | None = None,
                 credential: Any = None, connection_string: str | None = None,
                 sas_url: str | None = None, max_connections: int = 64,
                 connection_timeout: float = 20.0, read_timeout: float = 120.0,
                 fast_path: bool | None = None, copy_timeout: float = COPY_TIMEOUT):
        given = resolve_credentials(container, prefix, account_url=account_url, credential=credential,
                                    connection_string=connection_string, sas_url=sas_url)
        self._secrets, self._owned_credential = given.secrets, given.owned
        container, credential = given.container, given.credential
        self.account_url = given.account_url.rstrip("/")
        self.container = container
        self.prefix = given.prefix.strip("/")
        self.url = f"az://{container}/{self.prefix}" if self.prefix else f"az://{container}"
        self._credential = credential
        self._max_connections = max_connections
        self._connection_timeout, self._read_timeout = connection_timeout, read_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: aiohttp.ClientSession | None = None
        self._pool: HttpPool | None = None
        self._pool_loop: asyncio.AbstractEventLoop | None = None
        self._service: BlobServiceClient | None = None
        self._client: ContainerClient | None = None
        self.copy_timeout = copy_timeout
        self._staged: dict[str, dict[str, int]] = {}
        """full name -> block id -> length of each block this store staged since the name's
        last commit (a commit drops them all, as the service drops uncommitted blocks)."""
        self._sdk = SdkBlobClient(self._container, container, self.account_url, self._secrets,
                                  credential.signature if isinstance(credential, AzureSasCredential) else None)
        if fast_path is None:
            fast_path = os.environ.get("LUISY_SYNC_AZURE_FASTPATH", "1").strip() not in ("0", "false", "no")
        self._requests: BlobRequests = self._sdk
        auth = request_auth(credential, self.account_url) if fast_path else None
        if auth is not None:
            self._requests = RestBlobClient(self.account_url, container, auth, http=self._http,
                                            secrets=self._secrets)
        self.fast_path = self._requests is not self._sdk
        endpoint = urlsplit(self.account_url)
        self._proxy = proxy_from_env(endpoint.scheme, endpoint.hostname or "") if self.fast_path else None

    # -- constructors ----------------------------------------------------------------

    @classmethod
    def from_connection_string(cls, connection_string: str, container: str,
                               prefix: str = "", **kw: Any) -> "AzureBlobStore":
        """A store from an Azure storage connection string."""
        return cls(container, prefix, connection_string=connection_string, **kw)

    @classmethod
    def from_account_key(cls, account_name: str, key: str, container: str, prefix: str = "",
                         endpoint: str | None = None, **kw: Any) -> "AzureBlobStore":
        """A store from an account name and key; ``endpoint`` overrides the public URL."""
        url = endpoint or DEFAULT_ENDPOINT.format(account=account_name)
        return cls(container, prefix, account_url=url,
                   credential=AzureNamedKeyCredential(account_name, key), **kw)

    @classmethod
    def from_sas_url(cls, url: str, prefix: str = "", container: str | None = None,
                     **kw: Any) -> "AzureBlobStore":
        """A store from a container SAS URL (or an account SAS URL plus ``container``)."""
        return cls(container, prefix, sas_url=url, **kw)

    # -- plumbing --------------------------------------------------------------------

    def _container(self) -> ContainerClient:
        """The ContainerClient of the running loop (created on first use)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            connector = aiohttp.TCPConnector(limit=self._max_connections,
                                             limit_per_host=self._max_connections,
                                             ttl_dns_cache=300)
            # trust_env: the SDK path takes https_proxy / http_proxy / no_proxy like the fast path
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                                  trust_env=True)
            transport = AioHttpTransport(session=self._session, session_owner=False)
            self._service = BlobServiceClient(self.account_url, credential=self._credential,
                                              transport=transport, retry_total=0,
                                              max_single_get_size=SDK_GET_PIECE,
                                              max_chunk_get_size=SDK_GET_PIECE,
                                              connection_timeout=self._connection_timeout,
                                              read_timeout=self._read_timeout)
            self._client = self._service.get_container_client(self.container)
            self._loop = loop
        return self._client

    def _http(self) -> HttpPool:
        """The fast path's connection pool of the running loop (created on first use)."""
        loop = asyncio.get_running_loop()
        if self._pool is None or self._pool_loop is not loop:
            self._pool = HttpPool(urlsplit(self.account_url)._replace(path="").geturl(),
                                  limit=self._max_connections, connect_timeout=self._connection_timeout,
                                  read_timeout=self._read_timeout, proxy=self._proxy)
            self._pool_loop = loop
        return self._pool

    def _full(self, name: str) -> str:
        safe_relpath(name)
        return f"{self.prefix}/{name}" if self.prefix else name

    # -- Store protocol --------------------------------------------------------------

    async def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Every object whose name (relative to the store prefix) starts with ``prefix``."""
        head = f"{self.prefix}/" if self.prefix else ""
        return await self._requests.list(head + prefix, head, f"list {self.url}")

    async def head(self, name: str) -> ObjectInfo:
        """Info for one object; raises NotFoundError."""
        return await self._requests.head(self._full(name), name)

    async def get(self, name: str, start: int = 0, length: int | None = None) -> GetResult:
        """Up to ``length`` bytes from ``start`` and their ETag; a short body raises
        TransientError. One Get Blob request (a Get Blob Properties for the ETag of an
        empty range)."""
        check_range(name, start, length)
        full = self._full(name)
        # a whole read is often a push's first request (the manifest): name the store in full
        what = f"read {self.url}/{name}" if start == 0 and length is None else f"read {name!r}"
        got = None if length == 0 else await self._requests.get(full, name, start, length, what)
        if got is None:  # an empty range: no bytes, the ETag from the properties
            return GetResult(b"", (await self._requests.head(full, name, what)).etag or "")
        return got

    async def get_stream(self, name: str, start: int, length: int | None, sink: BodySink) -> GetResult:
        """``get(name, start, length)`` with the bytes handed to ``sink`` as they arrive
        (on the fast path straight from the socket, reading paused while the sink
        is full; the SDK path in pieces of ``SDK_GET_PIECE``). The result's data is
        empty; a range past the end delivers ``sink.start(0)``."""
        check_range(name, start, length)
        full = self._full(name)
        got = None if length == 0 else await self._requests.get(full, name, start, length,
                                                                 f"read {name!r}", sink)
        if got is None:
            sink.start(0)
            return GetResult(b"", (await self._requests.head(full, name)).etag or "")
        return got

    async def put(self, name: str, data: BytesLike, *, metadata: Mapping[str, str] | None = None,
                  mode: PutMode = PutMode.OVERWRITE) -> ObjectInfo:
        """One Put Blob request with metadata (If-None-Match / If-Match per ``mode``)."""
        return await self._requests.put(self._full(name), name, data, metadata, mode)

    async def put_block(self, name: str, block_id: str, data: BytesLike) -> None:
        """Put Block (``block_id`` travels base64-encoded)."""
        full = self._full(name)
        await self._requests.put_block(full, name, block_id, data)
        self._staged.setdefault(full, {})[block_id] = len(data)

    async def commit_blocks(self, name: str, block_ids: Sequence[str], *,
                            metadata: Mapping[str, str] | None = None) -> ObjectInfo:
        """Put Block List with metadata. The committed size is the sum of the blocks'
        lengths when this store staged them all (no request more), else read back."""
        full = self._full(name)
        staged = self._staged.get(full, {})
        sizes = [staged.get(block_id) for block_id in block_ids]
        known = None if None in sizes else sum(s or 0 for s in sizes)
        info = await self._requests.commit_blocks(full, name, block_ids, metadata, known)
        if self._staged.get(full) is staged:  # the blocks of any other attempt are gone too
            del self._staged[full]
        return info

    async def copy(self, src: str, dst: str) -> ObjectInfo:
        """Copy Blob from ``src``'s URL (same account): Get Blob Properties of ``src``, then
        the copy of exactly that version (``x-ms-source-if-match``; a source replaced in
        between is read again), its metadata included. Same-account copies usually finish
        at once; a pending one is watched until it succeeds, and aborted (failing with
        TransientError) after ``copy_timeout`` seconds."""
        full_src, full = self._full(src), self._full(dst)
        what = f"copy {src!r} to {dst!r}"
        if full_src == full:
            return await self._requests.head(full, dst, what)
        for attempt in range(3):
            source = await self._requests.head(full_src, src, f"{what} (reading the source)")
            try:
                state = await self._requests.start_copy(full_src, full, dst, source.etag, what)
                break
            except PreconditionFailed:
                if attempt == 2:
                    raise TransientError(f"{what}: the source kept changing during the copy; "
                                         "the copy can be retried") from None
        state = await self._finish_copy(full, dst, state, what)
        return ObjectInfo(dst, source.size, state.etag, dict(source.metadata), state.modified)

    async def _finish_copy(self, full: str, name: str, state: CopyState, what: str) -> CopyState:
        """The state of a started copy once it is no longer pending (a success), polling
        Get Blob Properties meanwhile; a failed, aborted, replaced or too slow copy raises."""
        deadline = time.monotonic() + self.copy_timeout
        pause = _COPY_POLL[0]
        while state.status == "pending":
            left = deadline - time.monotonic()
            if left <= 0:
                try:
                    await self._requests.abort_copy(full, name, state.copy_id, what)
                except StoreError:
                    pass  # finished or gone meanwhile: the error below says what to do either way
                raise TransientError(f"{what}: the copy was still pending after {self.copy_timeout:g} s "
                                     "and was aborted; the copy can be retried")
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, _COPY_POLL[1])
            current = await self._requests.copy_state(full, name, what)
            if current.copy_id != state.copy_id:
                raise StoreError(f"{what}: {name!r} was replaced while the copy was pending; "
                                 "copy again if it should still be a copy")
            state = current
        reason = scrub(state.detail, self._secrets) or "no reason given"
        if state.status == "failed":
            raise TransientError(f"{what}: the copy failed ({reason}); the copy can be retried")
        if state.status not in ("success", ""):
            raise StoreError(f"{what}: the copy ended {state.status!r} ({reason}); copy again")
        return state

    async def delete(self, name: str, *, etag: str | None = None) -> None:
        """Delete Blob (with its snapshots; with ``etag``: If-Match); a missing blob is fine
        (the service answers If-Match on a missing blob with 412: a head tells which)."""
        try:
            await self._sdk.delete(self._full(name), name, etag)
        except PreconditionFailed:
            if etag is None:
                raise
            try:
                await self.head(name)
            except NotFoundError:
                return
            raise

    async def ensure_container(self, create: bool = True) -> None:
        """Create the container when missing (``create``), else check that it exists."""
        await self._sdk.ensure_container(create)

    async def close(self) -> None:
        """Close the HTTP session (and a credential this store created)."""
        service, session, pool = self._service, self._session, self._pool
        self._client = self._service = self._session = self._pool = None
        if pool is not None:
            await pool.close()
        if service is not None:
            await service.close()
        if session is not None:
            await session.close()
        if self._owned_credential is not None:
            await self._owned_credential.close()

    async def __aenter__(self) -> "AzureBlobStore":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()



"""AzureBlobStore: a Store on Azure Blob Storage (or Azurite) via azure.storage.blob.aio.

One ContainerClient per event loop, one aiohttp session with a pool sized for the
engine's concurrency, SDK retries off (the transfer engine owns the retry policy).
The xxh3 digest travels as blob metadata ``xxh3``. Errors are translated in
``azure_errors``; no message carries a key, SAS token or connection string.

With an account key the hot calls (put, put_block, commit_blocks, get_range, head,
list) take the Shared Key fast path of ``azure_sharedkey`` on the same session; the
SDK does the rest. ``fast_path=False`` or ``LUISY_SYNC_AZURE_FASTPATH=0`` turns it off.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
from typing import Any, AsyncIterator, Mapping
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from azure.core import MatchConditions
from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.core.pipeline.transport import AioHttpTransport
from azure.storage.blob import BlobBlock
from azure.storage.blob.aio import BlobServiceClient, ContainerClient

from luisy_sync.errors import ConfigError, StoreError, TransientError
from luisy_sync.paths import safe_relpath
from luisy_sync.stores.azure_errors import translate
from luisy_sync.stores.azure_sharedkey import SharedKeyBlobClient
from luisy_sync.stores.base import ObjectInfo

DEFAULT_ENDPOINT = "https://{account}.blob.core.windows.net"


def _parse_connection_string(cs: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for part in cs.strip().strip(";").split(";"):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ConfigError("the Azure connection string is malformed: expected "
                              "'Key=Value;...' with AccountName and AccountKey (or a SAS)")
        fields[key.strip().lower()] = value.strip()
    return fields


def _endpoint_from_connection_string(fields: dict[str, str]) -> str:
    if fields.get("blobendpoint"):
        return fields["blobendpoint"].rstrip("/")
    account = fields.get("accountname")
    if not account:
        raise ConfigError("the Azure connection string has neither AccountName nor BlobEndpoint")
    protocol = fields.get("defaultendpointsprotocol", "https")
    suffix = fields.get("endpointsuffix", "core.windows.net")
    return f"{protocol}://{account}.blob.{suffix}"


class AzureBlobStore:
    """A Store on one Azure Blob container; names are relative to ``prefix``.

    Credentials: ``connection_string``; or ``account_url`` with ``credential`` (an account
    key string, an ``AzureNamedKeyCredential``, a SAS string or an async TokenCredential);
    or a ``sas_url``; with ``account_url`` alone, ``DefaultAzureCredential`` from
    azure-identity is used. ``fast_path`` (default: on unless LUISY_SYNC_AZURE_FASTPATH=0)
    sends the hot calls Shared Key signed without the SDK when an account key is known.
    """

    def __init__(self, container: str | None, prefix: str = "", *, account_url: str | None = None,
                 credential: Any = None, connection_string: str | None = None,
                 sas_url: str | None = None, max_connections: int = 64,
                 connection_timeout: float = 20.0, read_timeout: float = 120.0,
                 fast_path: bool | None = None):
        self._secrets: list[str] = []
        self._owned_credential: Any = None
        self._sas_container_url: str | None = None
        if connection_string:
            fields = _parse_connection_string(connection_string)
            account_url = _endpoint_from_connection_string(fields)
            if fields.get("accountkey"):
                _check_key(fields["accountkey"])
                name = fields.get("accountname") or ""
                credential = AzureNamedKeyCredential(name, fields["accountkey"])
                self._secrets.append(fields["accountkey"])
            elif fields.get("sharedaccesssignature"):
                credential = AzureSasCredential(fields["sharedaccesssignature"])
                self._secrets.append(fields["sharedaccesssignature"])
            else:
                raise ConfigError("the Azure connection string has neither AccountKey nor "
                                  "SharedAccessSignature")
        elif sas_url:
            parts = urlsplit(sas_url)
            if not parts.scheme or not parts.netloc or not parts.query:
                raise ConfigError("the SAS URL is malformed: expected "
                                  "https://<account>.blob.core.windows.net/<container>?<sas token>")
            self._secrets.append(parts.query)
            path = [p for p in parts.path.split("/") if p]
            account_url = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
            # Azurite style endpoints carry the account name as the first path segment.
            if path and parts.netloc.split(":")[0] in ("127.0.0.1", "localhost"):
                account_url += "/" + path.pop(0)
            if path:
                container = path[0]
                if len(path) > 1 and not prefix:
                    prefix = "/".join(path[1:])
            credential = AzureSasCredential(parts.query)
        elif not account_url:
            raise ConfigError("AzureBlobStore needs a connection string, an account URL or a SAS URL")
        elif credential is None:
            credential = self._owned_credential = _default_credential()
        elif isinstance(credential, str):
            self._secrets.append(credential)
            if credential.lstrip("?").startswith(("sv=", "se=", "sp=", "st=", "sig=")):
                credential = AzureSasCredential(credential.lstrip("?"))
            else:
                credential = AzureNamedKeyCredential(_account_from_url(account_url), credential)
        if isinstance(credential, AzureNamedKeyCredential):
            self._secrets.append(credential.named_key.key)
        if not container:
            raise ConfigError("no Azure container given: pass one or set LUISY_AZURE_CONTAINER_NAME")
        self.account_url = account_url.rstrip("/")
        self.container = container
        self.prefix = prefix.strip("/")
        self.url = f"az://{container}/{self.prefix}" if self.prefix else f"az://{container}"
        self._credential = credential
        self._max_connections = max_connections
        self._timeouts = {"connection_timeout": connection_timeout, "read_timeout": read_timeout}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: aiohttp.ClientSession | None = None
        self._service: BlobServiceClient | None = None
        self._client: ContainerClient | None = None
        self._rest: SharedKeyBlobClient | None = None
        if fast_path is None:
            fast_path = os.environ.get("LUISY_SYNC_AZURE_FASTPATH", "1").strip() not in ("0", "false", "no")
        if fast_path and isinstance(credential, AzureNamedKeyCredential) and credential.named_key.name:
            self._rest = SharedKeyBlobClient(
                self.account_url, credential.named_key.name, base64.b64decode(credential.named_key.key),
                container, secrets=self._secrets, **self._timeouts)
        self.fast_path = self._rest is not None

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
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
            transport = AioHttpTransport(session=self._session, session_owner=False)
            self._service = BlobServiceClient(self.account_url, credential=self._credential,
                                              transport=transport, retry_total=0,
                                              **self._timeouts)
            self._client = self._service.get_container_client(self.container)
            self._loop = loop
        return self._client

    def _http(self) -> aiohttp.ClientSession:
        """The aiohttp session of the running loop (shared with the SDK clients)."""
        self._container()
        assert self._session is not None
        return self._session

    def _full(self, name: str) -> str:
        safe_relpath(name)
        return f"{self.prefix}/{name}" if self.prefix else name

    def _error(self, exc: BaseException, what: str) -> BaseException:
        return translate(exc, what, self.account_url, self._secrets)

    def _info(self, name: str, props: Any) -> ObjectInfo:
        etag = props.etag
        if etag and not etag.startswith('"'):  # listings report ETags unquoted
            etag = f'"{etag}"'
        return ObjectInfo(name, int(props.size or 0), etag, dict(props.metadata or {}))

    # -- Store protocol --------------------------------------------------------------

    async def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Every object whose name (relative to the store prefix) starts with ``prefix``."""
        head = f"{self.prefix}/" if self.prefix else ""
        if self._rest is not None:
            return await self._rest.list(self._http(), head + prefix, head, f"list {self.url}")
        out: list[ObjectInfo] = []
        try:
            blobs: AsyncIterator[Any] = self._container().list_blobs(
                name_starts_with=head + prefix, include=["metadata"], results_per_page=5000)
            async for blob in blobs:
                out.append(self._info(blob.name[len(head):], blob))
        except Exception as exc:
            raise self._error(exc, f"list {self.url}") from None
        return out

    async def head(self, name: str) -> ObjectInfo:
        """Info for one object; raises NotFoundError."""
        if self._rest is not None:
            return await self._rest.head(self._http(), self._full(name), name)
        try:
            props = await self._container().get_blob_client(self._full(name)).get_blob_properties()
        except Exception as exc:
            raise self._error(exc, f"head {name!r}") from None
        return self._info(name, props)

    async def get_range(self, name: str, start: int = 0, length: int | None = None) -> bytes:
        """Up to ``length`` bytes from ``start``; a short body raises TransientError."""
        if start < 0 or (length is not None and length < 0):
            raise StoreError(f"invalid range start={start} length={length} for {name!r}")
        if length == 0:
            return b""
        if self._rest is not None:
            return await self._rest.get_range(self._http(), self._full(name), name, start, length)
        try:
            blob = self._container().get_blob_client(self._full(name))
            offset = None if start == 0 and length is None else start
            stream = await blob.download_blob(offset=offset, length=length, max_concurrency=1)
            data = await stream.readall()
        except HttpResponseError as exc:
            if exc.status_code == 416:  # start at or beyond the end: nothing there
                return b""
            raise self._error(exc, f"read {name!r}") from None
        except Exception as exc:
            raise self._error(exc, f"read {name!r}") from None
        if len(data) != stream.size:
            raise TransientError(f"read {name!r}: received {len(data)} of {stream.size} bytes; "
                                 "the connection was cut, the read can be retried")
        return data

    async def put(self, name: str, data: bytes, *,
                  metadata: Mapping[str, str] | None = None) -> ObjectInfo:
        """One Put Blob request (overwrite) with metadata."""
        if self._rest is not None:
            return await self._rest.put(self._http(), self._full(name), name, data, metadata)
        try:
            blob = self._container().get_blob_client(self._full(name))
            result = await blob.upload_blob(data, overwrite=True, metadata=dict(metadata or {}),
                                            length=len(data), max_concurrency=1)
        except Exception as exc:
            raise self._error(exc, f"put {name!r}") from None
        return ObjectInfo(name, len(data), result.get("etag"), dict(metadata or {}))

    async def put_block(self, name: str, block_id: str, data: bytes) -> None:
        """Put Block (``block_id`` travels base64-encoded)."""
        if self._rest is not None:
            return await self._rest.put_block(self._http(), self._full(name), name, block_id, data)
        try:
            blob = self._container().get_blob_client(self._full(name))
            await blob.stage_block(block_id, data, length=len(data))
        except Exception as exc:
            raise self._error(exc, f"stage block {block_id!r} of {name!r}") from None

    async def commit_blocks(self, name: str, block_ids: list[str], *,
                            metadata: Mapping[str, str] | None = None) -> ObjectInfo:
        """Put Block List with metadata, then read back the committed size."""
        if self._rest is not None:
            return await self._rest.commit_blocks(self._http(), self._full(name), name, block_ids,
                                                  metadata)
        try:
            blob = self._container().get_blob_client(self._full(name))
            await blob.commit_block_list([BlobBlock(block_id=b) for b in block_ids],
                                         metadata=dict(metadata or {}))
            props = await blob.get_blob_properties()
        except Exception as exc:
            raise self._error(exc, f"commit {name!r}") from None
        return self._info(name, props)

    async def delete(self, name: str) -> None:
        """Delete Blob (with its snapshots); a missing blob is fine."""
        try:
            blob = self._container().get_blob_client(self._full(name))
            await blob.delete_blob(delete_snapshots="include")
        except ResourceNotFoundError as exc:
            if getattr(exc, "error_code", None) == "ContainerNotFound":
                raise self._error(exc, f"delete {name!r}") from None
        except Exception as exc:
            raise self._error(exc, f"delete {name!r}") from None

    async def read_small(self, name: str) -> tuple[bytes, str]:
        """Bytes and ETag of a small object."""
        try:
            stream = await self._container().get_blob_client(self._full(name)).download_blob()
            data = await stream.readall()
        except Exception as exc:  # often a push's first request: name the store in full
            raise self._error(exc, f"read {self.url}/{name}") from None
        if len(data) != stream.size:
            raise TransientError(f"read {name!r}: received {len(data)} of {stream.size} bytes; "
                                 "the read can be retried")
        return data, stream.properties.etag

    async def write_small(self, name: str, data: bytes, *, if_match: str | None = None,
                          if_none_match: bool = False) -> str:
        """Conditional Put Blob (If-Match / If-None-Match: *); raises PreconditionFailed."""
        kw: dict[str, Any] = {}
        if if_none_match:
            kw = {"match_condition": MatchConditions.IfMissing}
        elif if_match is not None:
            kw = {"etag": if_match, "match_condition": MatchConditions.IfNotModified}
        try:
            blob = self._container().get_blob_client(self._full(name))
            result = await blob.upload_blob(data, overwrite=True, length=len(data), **kw)
        except Exception as exc:
            raise self._error(exc, f"write {name!r}") from None
        return result["etag"]

    async def ensure_container(self, create: bool = True) -> None:
        """Create the container when missing (``create``), else check that it exists."""
        client = self._container()
        if create:
            try:
                await client.create_container()
                return
            except ResourceExistsError:
                return
            except HttpResponseError as exc:
                if exc.status_code != 403:  # a SAS may not create containers: check below
                    raise self._error(exc, f"create container {self.container!r}") from None
            except Exception as exc:
                raise self._error(exc, f"create container {self.container!r}") from None
        try:
            async for _ in client.list_blobs(results_per_page=1).by_page():
                break
        except Exception as exc:
            raise self._error(exc, f"open container {self.container!r}") from None

    async def close(self) -> None:
        """Close the HTTP session (and a credential this store created)."""
        service, session = self._service, self._session
        self._client = self._service = self._session = None
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


def _check_key(key: str) -> None:
    try:
        base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError("the Azure account key is not valid base64: copy it again from the "
                          "storage account's access keys") from None


def _account_from_url(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host in ("127.0.0.1", "localhost") or host.replace(".", "").isdigit():
        return parts.path.strip("/").split("/")[0]
    return host.split(".")[0]


def _default_credential() -> Any:
    try:
        from azure.identity.aio import DefaultAzureCredential
    except ImportError:
        raise ConfigError("no Azure key or SAS configured and azure-identity is not installed: "
                          "set LUISY_AZURE_STORAGE_KEY or `pip install azure-identity`") from None
    return DefaultAzureCredential()

"""The azure SDK request path of AzureBlobStore (the fast path off, or a credential it cannot use).

``SdkBlobClient`` implements the same verbs as ``azure_rest.RestBlobClient``
with ``azure.storage.blob.aio``, plus the container management (create, check) and
deletes that only the SDK does. Callers pass the full blob name and the
store-relative name (for results and messages); the ContainerClient of the running
loop comes from the ``container`` callable. Errors are translated in ``azure_errors``;
nothing here retries.
"""

from __future__ import annotations

from typing import Any, AsyncIterator, Callable, Iterable, Mapping, Sequence

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobBlock
from azure.storage.blob.aio import ContainerClient

from luisy_sync.errors import TransientError
from luisy_sync.stores.azure_answers import quoted_etag
from luisy_sync.stores.azure_errors import translate
from luisy_sync.stores.azure_rest import CopyState
from luisy_sync.stores.base import BodySink, BytesLike, GetResult, ObjectInfo, PutMode, feed_sink


SDK_GET_PIECE = 4 * 2 ** 20
"""Bytes the SDK reads per request and holds at once (its first and later range reads);
a streamed read on this path goes to its sink piece by piece, not in one piece."""


def _seconds(when: Any) -> float | None:
    """POSIX seconds of the SDK's ``last_modified`` (an aware datetime), None if absent."""
    return None if when is None else float(when.timestamp())


def _info(name: str, props: Any) -> ObjectInfo:
    return ObjectInfo(name, int(props.size or 0), quoted_etag(props.etag), dict(props.metadata or {}),
                      _seconds(props.last_modified))


def _conditions(mode: PutMode) -> dict[str, Any]:
    """The SDK keywords of a PutMode (If-None-Match: * or If-Match: <etag>)."""
    if mode.kind == "create":
        return {"match_condition": MatchConditions.IfMissing}
    if mode.kind == "update":
        return {"etag": mode.etag, "match_condition": MatchConditions.IfNotModified}
    return {}


def _as_bytes(data: BytesLike) -> bytes:
    """``data`` as bytes: the SDK takes a view for an iterable of chunks."""
    return data if isinstance(data, bytes) else bytes(data)


class SdkBlobClient:
    """Blob calls through the azure SDK on one container (see the module docstring)."""

    def __init__(self, container: Callable[[], ContainerClient], container_name: str,
                 account_url: str, secrets: Iterable[str] = (), source_sas: str | None = None):
        self._container = container
        self.container_name = container_name
        self.account_url = account_url
        self._secrets = list(secrets)
        self._source_sas = source_sas.lstrip("?") if source_sas else None

    def _error(self, exc: BaseException, what: str) -> BaseException:
        return translate(exc, what, self.account_url, self._secrets)

    # -- the verbs both request paths implement ----------------------------------------

    async def list(self, full_prefix: str, head: str, what: str) -> list[ObjectInfo]:
        """List Blobs with metadata below ``full_prefix``; names lose ``head``."""
        out: list[ObjectInfo] = []
        try:
            blobs: AsyncIterator[Any] = self._container().list_blobs(
                name_starts_with=full_prefix, include=["metadata"], results_per_page=5000)
            async for blob in blobs:
                out.append(_info(blob.name[len(head):], blob))
        except Exception as exc:
            raise self._error(exc, what) from None
        return out

    async def head(self, full: str, name: str, what: str = "") -> ObjectInfo:
        """Get Blob Properties."""
        try:
            props = await self._container().get_blob_client(full).get_blob_properties()
        except Exception as exc:
            raise self._error(exc, what or f"head {name!r}") from None
        return _info(name, props)

    async def get(self, full: str, name: str, start: int, length: int | None,
                  what: str, sink: BodySink | None = None) -> GetResult | None:
        """Get Blob (ranged unless whole); None when ``start`` is at or past the end;
        a short body is TransientError. ``sink``: the bytes go there as each piece is
        read (the result's data is then empty)."""
        try:
            blob = self._container().get_blob_client(full)
            offset = None if start == 0 and length is None else start
            stream = await blob.download_blob(offset=offset, length=length, max_concurrency=1)
            if sink is None:
                data = await stream.readall()
                received = len(data)
            else:  # piece by piece (SDK_GET_PIECE each, the same version): memory stays flat
                data, received = b"", 0
                sink.start(stream.size)
                async for piece in stream.chunks():
                    await feed_sink(sink, piece, start=False)
                    received += len(piece)
        except HttpResponseError as exc:
            if exc.status_code == 416:  # start at or beyond the end: nothing there
                return None
            raise self._error(exc, what) from None
        except Exception as exc:
            raise self._error(exc, what) from None
        if received != stream.size:
            raise TransientError(f"read {name!r}: received {received} of {stream.size} bytes; "
                                 "the connection was cut, the read can be retried")
        etag = quoted_etag(stream.properties.etag)
        assert etag is not None
        return GetResult(data, etag)

    async def put(self, full: str, name: str, data: BytesLike, metadata: Mapping[str, str] | None,
                  mode: PutMode) -> ObjectInfo:
        """Put Blob with metadata, conditional per ``mode``."""
        try:
            blob = self._container().get_blob_client(full)
            body = _as_bytes(data)
            result = await blob.upload_blob(body, overwrite=True, metadata=dict(metadata or {}),
                                            length=len(body), max_concurrency=1, **_conditions(mode))
        except Exception as exc:
            raise self._error(exc, f"put {name!r}") from None
        return ObjectInfo(name, len(data), quoted_etag(result.get("etag")), dict(metadata or {}),
                          _seconds(result.get("last_modified")))

    async def put_block(self, full: str, name: str, block_id: str, data: BytesLike) -> None:
        """Put Block (``block_id`` travels base64-encoded)."""
        try:
            body = _as_bytes(data)
            await self._container().get_blob_client(full).stage_block(block_id, body, length=len(body))
        except Exception as exc:
            raise self._error(exc, f"stage block {block_id!r} of {name!r}") from None

    async def commit_blocks(self, full: str, name: str, block_ids: Sequence[str],
                            metadata: Mapping[str, str] | None, size: int | None) -> ObjectInfo:
        """Put Block List with metadata; the committed size is ``size``, or read back
        when that is None."""
        meta = dict(metadata or {})
        try:
            blob = self._container().get_blob_client(full)
            done = await blob.commit_block_list([BlobBlock(block_id=b) for b in block_ids], metadata=meta)
            if size is None:
                return _info(name, await blob.get_blob_properties())
        except Exception as exc:
            raise self._error(exc, f"commit {name!r}") from None
        etag = done.get("etag")
        return ObjectInfo(name, size, quoted_etag(etag if isinstance(etag, str) else None), meta,
                          _seconds(done.get("last_modified")))

    async def start_copy(self, full_src: str, full: str, name: str, source_etag: str | None,
                         what: str) -> CopyState:
        """Copy Blob (``start_copy_from_url``) from ``full_src`` in this container, only
        while the source still has ``source_etag`` (when given). A SAS-authorized store
        authorizes the source with its SAS too (Azure AD and Shared Key need nothing)."""
        conditions: dict[str, Any] = {}
        if source_etag:
            conditions = {"source_etag": source_etag, "source_match_condition": MatchConditions.IfNotModified}
        try:
            container = self._container()
            source = container.get_blob_client(full_src).url
            if self._source_sas:
                source += "?" + self._source_sas
            result = await container.get_blob_client(full).start_copy_from_url(source, **conditions)
        except Exception as exc:
            raise self._error(exc, what) from None
        etag = result.get("etag")
        return CopyState(str(result.get("copy_status") or "").lower(), str(result.get("copy_id") or ""),
                         quoted_etag(etag if isinstance(etag, str) else None),
                         _seconds(result.get("last_modified")))

    async def copy_state(self, full: str, name: str, what: str) -> CopyState:
        """Get Blob Properties: the state of the last copy onto ``full``."""
        try:
            props = await self._container().get_blob_client(full).get_blob_properties()
        except Exception as exc:
            raise self._error(exc, what) from None
        copy = props.copy
        return CopyState(str(copy.status or "").lower(), str(copy.id or ""), quoted_etag(props.etag),
                         _seconds(props.last_modified), str(copy.status_description or ""))

    async def abort_copy(self, full: str, name: str, copy_id: str, what: str) -> None:
        """Abort Copy Blob: stop the pending copy ``copy_id`` onto ``full``."""
        try:
            await self._container().get_blob_client(full).abort_copy(copy_id)
        except Exception as exc:
            raise self._error(exc, what) from None

    # -- only here ---------------------------------------------------------------------

    async def delete(self, full: str, name: str, etag: str | None = None) -> None:
        """Delete Blob (with its snapshots; If-Match ``etag`` when given); a missing blob is fine."""
        condition: dict[str, Any] = {} if etag is None else {
            "etag": etag, "match_condition": MatchConditions.IfNotModified}
        try:
            await self._container().get_blob_client(full).delete_blob(delete_snapshots="include", **condition)
        except ResourceNotFoundError as exc:
            if getattr(exc, "error_code", None) == "ContainerNotFound":
                raise self._error(exc, f"delete {name!r}") from None
        except Exception as exc:
            raise self._error(exc, f"delete {name!r}") from None

    async def ensure_container(self, create: bool) -> None:
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
                    raise self._error(exc, f"create container {self.container_name!r}") from None
            except Exception as exc:
                raise self._error(exc, f"create container {self.container_name!r}") from None
        try:
            async for _ in client.list_blobs(results_per_page=1).by_page():
                break
        except Exception as exc:
            raise self._error(exc, f"open container {self.container_name!r}") from None

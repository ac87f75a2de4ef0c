"""The fast data path of AzureBlobStore: Blob REST calls without the SDK's pipeline.

The Store's requests (Put Blob, also conditional, Put Block, Put Block List, Get Blob,
Get Blob Properties, List Blobs, Copy Blob and Abort Copy Blob) go straight through the
store's lean HTTP/1.1 connection pool (``luisy_sync.stores.http1``), authorized by a
``RequestAuth`` of ``azure_auth``: Shared Key signed with an account key, a shared access
signature in the query, or an Azure AD token as ``Authorization: Bearer``. Everything
that can be is computed once (the canonical resource prefix, the date of the current
second, the signing key schedule).

Path-style endpoints (Azurite: ``http://127.0.0.1:PORT/devstoreaccount1``) and
host-style endpoints (``https://account.blob.core.windows.net``) are handled alike:
requests go to ``<account_url>/<container>/<blob>`` and a Shared Key signs
``/<account>`` followed by that URL's encoded path. Errors are translated in
``azure_errors``, and dates, ETags and listing pages read in ``azure_answers``; nothing
here retries and no message carries a key, token or signature.
"""

from __future__ import annotations

import base64
import functools
import re
import time
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any, Callable, Iterable, Mapping, Sequence
from urllib.parse import quote, urlsplit

from luisy_sync.concurrently import both
from luisy_sync.errors import TransientError
from luisy_sync.stores.azure_answers import http_date, next_marker_ahead, parse_list_page
from luisy_sync.stores.azure_auth import Query, RequestAuth, plain_sort
from luisy_sync.stores.azure_errors import translate, translate_status
from luisy_sync.stores.base import BodySink, BytesLike, GetResult, ObjectInfo, PutMode
from luisy_sync.stores.http1 import Headers, HttpPool

API_VERSION = "2021-08-06"
LIST_PAGE_SIZE = 5000
_META = "x-ms-meta-"
_PLAIN_META_NAME = re.compile(r"[a-z0-9]+")
_CODE = re.compile(rb"<Code>([^<]{1,100})</Code>")
_MESSAGE = re.compile(rb"<Message>([^<\r\n]{1,300})")

_NO_BODY_TYPE = "application/octet-stream"
"""The Content-Type of a PUT without a body (Copy Blob, Abort Copy Blob)."""

def _header_sort(meta_names: Iterable[str]) -> Any:
    """The x-ms-* header order the service uses: a plain sort unless an odd metadata name
    (underscores, capitals) needs the service's collation, which the SDK implements."""
    if all(_PLAIN_META_NAME.fullmatch(n) for n in meta_names):
        return plain_sort
    from azure.storage.blob._shared.authentication import _storage_header_sort

    return _storage_header_sort


def block_id_b64(block_id: str) -> str:
    """The wire form of a block id (base64 of its UTF-8 bytes), as the SDK sends it."""
    return base64.b64encode(block_id.encode("utf-8")).decode("ascii")


@dataclass(frozen=True, slots=True)
class CopyState:
    """Where a Copy Blob stands: ``status`` (``success``, ``pending``, ``failed`` or
    ``aborted``), its ``copy_id``, and the destination's ETag and Last-Modified (POSIX
    seconds) as of this answer; ``detail``: the service's status description, if any."""

    status: str
    copy_id: str
    etag: str | None
    modified: float | None
    detail: str = ""


def _copy_state(headers: Mapping[str, str]) -> CopyState:
    """The CopyState in the headers of a Copy Blob or Get Blob Properties answer."""
    return CopyState((headers.get("x-ms-copy-status") or "").lower(), headers.get("x-ms-copy-id") or "",
                     headers.get("ETag"), http_date(headers.get("Last-Modified")),
                     headers.get("x-ms-copy-status-description") or "")


class RestBlobClient:
    """Blob REST calls on one container, authorized by ``auth``; ``http`` returns the
    HttpPool of the running loop; callers pass the full blob name and the store-relative
    name (for results and messages)."""

    def __init__(self, account_url: str, container: str, auth: RequestAuth, *,
                 http: Callable[[], HttpPool], secrets: Iterable[str] = (),
                 list_page_size: int = LIST_PAGE_SIZE):
        self._http = http
        parts = urlsplit(account_url)
        self.account_url = account_url.rstrip("/")
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._container_path = f"{parts.path.rstrip('/')}/{quote(container, safe='')}"
        self._auth = auth
        self._secrets = list(secrets)
        self._page_size = list_page_size
        self._second = -1
        self._date = ""

    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        now = int(time.time())
        if now != self._second:
            self._date, self._second = formatdate(now, usegmt=True), now
        headers = {"x-ms-date": self._date, "x-ms-version": API_VERSION}
        if extra:
            headers.update(extra)
        return headers

    def _path(self, full: str) -> str:
        return f"{self._container_path}/{quote(full, safe='/~')}"

    async def _call(self, verb: str, path: str, query: Query,
                    headers: dict[str, str], what: str, body: BytesLike | None = None,
                    content_type: str = "", sort: Any = plain_sort,
                    allow: int = 0, sink: BodySink | None = None) -> tuple[int, Headers, bytes]:
        """One authorized request: (status, headers, body); error answers raise translated.
        ``sink``: where a 2xx answer's body goes as it arrives."""
        length = len(body) if body is not None else 0
        if content_type:
            headers["Content-Type"] = content_type
        auth = self._auth
        try:
            if auth.stale():
                await auth.refresh()
            auth.authorize(verb, path, query, headers, length, content_type, sort)
            target = path
            if query or auth.query:
                target += "?" + "&".join([*(f"{k}={quote(v, safe='')}" for k, v in query),
                                          *([auth.query] if auth.query else [])])
            resp = await self._http().request(verb, target, headers, body, sink)
        except Exception as exc:
            raise translate(exc, what, self.account_url, self._secrets) from None
        status, rheaders, data = resp.status, resp.headers, resp.body
        if status >= 300 and status != allow:
            code = rheaders.get("x-ms-error-code", "")
            match = _CODE.search(data) if not code else None
            if match:
                code = match.group(1).decode("utf-8", "replace")
            message = _MESSAGE.search(data)
            detail = message.group(1).decode("utf-8", "replace") if message else resp.reason
            raise translate_status(status, code, rheaders, what, self.account_url, self._secrets,
                                   detail)
        return status, rheaders, data  # type: ignore[return-value]  # a bytearray, not copied

    # -- operations ------------------------------------------------------------------

    async def put(self, full: str, name: str, data: BytesLike,
                  metadata: Mapping[str, str] | None, mode: PutMode) -> ObjectInfo:
        """Put Blob (a block blob) with metadata, conditional per ``mode``
        (If-None-Match: * or If-Match: <etag>)."""
        meta = dict(metadata or {})
        headers = self._headers({"x-ms-blob-type": "BlockBlob"})
        if mode.kind == "create":
            headers["If-None-Match"] = "*"
        elif mode.etag is not None:
            headers["If-Match"] = mode.etag
        for k, v in meta.items():
            headers[_META + k] = v
        _, rheaders, _ = await self._call("PUT", self._path(full), (), headers,
                                          f"put {name!r}", data, "application/octet-stream",
                                          _header_sort(meta) if meta else plain_sort)
        return ObjectInfo(name, len(data), rheaders.get("ETag"), meta, http_date(rheaders.get("Last-Modified")))

    async def put_block(self, full: str, name: str,
                        block_id: str, data: BytesLike) -> None:
        """Put Block with the base64 form of ``block_id``."""
        query = (("comp", "block"), ("blockid", block_id_b64(block_id)))
        await self._call("PUT", self._path(full), query, self._headers(),
                         f"stage block {block_id!r} of {name!r}", data, "application/octet-stream")

    async def commit_blocks(self, full: str, name: str, block_ids: Sequence[str],
                            metadata: Mapping[str, str] | None, size: int | None) -> ObjectInfo:
        """Put Block List (all ids as Latest) with metadata; the committed size is ``size``
        (the blocks' lengths as staged), or read back when that is None."""
        meta = dict(metadata or {})
        body = ('<?xml version="1.0" encoding="utf-8"?><BlockList>'
                + "".join(f"<Latest>{block_id_b64(b)}</Latest>" for b in block_ids)
                + "</BlockList>").encode("utf-8")
        headers = self._headers({_META + k: v for k, v in meta.items()})
        _, rheaders, _ = await self._call("PUT", self._path(full), (("comp", "blocklist"),), headers,
                                          f"commit {name!r}", body, "application/xml",
                                          _header_sort(meta) if meta else plain_sort)
        if size is None:
            return await self.head(full, name, f"commit {name!r}")
        return ObjectInfo(name, size, rheaders.get("ETag"), meta, http_date(rheaders.get("Last-Modified")))

    async def start_copy(self, full_src: str, full: str, name: str, source_etag: str | None,
                         what: str) -> CopyState:
        """Copy Blob from ``full_src`` (its URL in this account, with the SAS when that is
        the authorization), only while the source still has ``source_etag`` (when given)."""
        source = self._origin + self._path(full_src)
        if self._auth.query:
            source += "?" + self._auth.query
        headers = self._headers({"x-ms-copy-source": source})
        if source_etag:
            headers["x-ms-source-if-match"] = source_etag
        _, rheaders, _ = await self._call("PUT", self._path(full), (), headers, what,
                                          content_type=_NO_BODY_TYPE)
        return _copy_state(rheaders)

    async def copy_state(self, full: str, name: str, what: str) -> CopyState:
        """Get Blob Properties: the state of the last copy onto ``full``."""
        _, rheaders, _ = await self._call("HEAD", self._path(full), (), self._headers(), what)
        return _copy_state(rheaders)

    async def abort_copy(self, full: str, name: str, copy_id: str, what: str) -> None:
        """Abort Copy Blob: stop the pending copy ``copy_id`` onto ``full``."""
        await self._call("PUT", self._path(full), (("comp", "copy"), ("copyid", copy_id)),
                         self._headers({"x-ms-copy-action": "abort"}), what, content_type=_NO_BODY_TYPE)

    async def head(self, full: str, name: str,
                   what: str = "") -> ObjectInfo:
        """Get Blob Properties: size, ETag and the x-ms-meta-* metadata."""
        _, rheaders, _ = await self._call("HEAD", self._path(full), (), self._headers(),
                                          what or f"head {name!r}")
        meta = {k[len(_META):]: v for k, v in rheaders.items() if k[:len(_META)].lower() == _META}
        return ObjectInfo(name, int(rheaders.get("Content-Length") or 0), rheaders.get("ETag"), meta,
                          http_date(rheaders.get("Last-Modified")))

    async def get(self, full: str, name: str, start: int, length: int | None,
                  what: str, sink: BodySink | None = None) -> GetResult | None:
        """Get Blob (``x-ms-range`` unless the whole blob); None when ``start`` is at or
        past the end; a short body is TransientError. ``sink``: the body goes there as it
        arrives (the result's data is then empty)."""
        headers = self._headers()
        if start or length is not None:
            end = "" if length is None else str(start + length - 1)
            headers["x-ms-range"] = f"bytes={start}-{end}"
        status, rheaders, data = await self._call("GET", self._path(full), (), headers, what,
                                                  allow=416, sink=sink)
        if status == 416:  # start at or beyond the end: nothing there
            return None
        if sink is not None:  # http1 delivered exactly Content-Length bytes to it
            return GetResult(b"", rheaders.get("ETag", ""))
        expected = rheaders.get("Content-Length")
        if expected is None or len(data) != int(expected) or (length is not None and len(data) > length):
            raise TransientError(f"read {name!r}: received {len(data)} of {expected or '?'} bytes; "
                                 "the connection was cut, the read can be retried")
        return GetResult(data, rheaders.get("ETag", ""))

    async def list(self, full_prefix: str, head: str,
                   what: str) -> list[ObjectInfo]:
        """List Blobs with metadata below ``full_prefix`` (every page); names lose ``head``.

        The next page is asked for before this one is parsed (its marker is read off the
        answer's tail), so the service lists page n + 1 while page n is parsed (~10 µs a
        blob here: 50-70 ms a page of 5000)."""
        base: Query = (("restype", "container"), ("comp", "list"), ("include", "metadata"),
                       ("maxresults", str(self._page_size)))
        if full_prefix:
            base += (("prefix", full_prefix),)

        async def page(marker: str) -> bytes:
            query = base + ((("marker", marker),) if marker else ())
            _, _, body = await self._call("GET", self._container_path, query,
                                          self._headers(), what)
            return bytes(body)

        out: list[ObjectInfo] = []
        body = await page("")
        while True:
            ahead = next_marker_ahead(body)
            if ahead:  # the request goes out first (up to its first wait), then the parse
                body_ahead, (blobs, marker) = await both(
                    lambda: page(ahead), functools.partial(_parse_now, body, len(head), what))
            else:
                body_ahead, (blobs, marker) = None, parse_list_page(body, len(head), what)
            out.extend(blobs)
            if not marker:
                return out
            body = body_ahead if body_ahead is not None and marker == ahead else await page(marker)


async def _parse_now(body: bytes, cut: int, what: str) -> tuple[list[ObjectInfo], str]:
    return parse_list_page(body, cut, what)



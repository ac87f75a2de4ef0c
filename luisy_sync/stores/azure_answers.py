"""What the Blob service's answers say, read without the SDK: HTTP dates, ETags, and
List Blobs pages.

A page in the usual shape is cut apart with ``bytes.find`` (several times faster than
building a tree); any other shape (encoded names, entities, CDATA, another layout) goes
through xml.etree. ``next_marker_ahead`` reads a page's NextMarker off its tail, so the
next page can be asked for before this one is parsed (``azure_rest.RestBlobClient.list``).
"""

from __future__ import annotations

import datetime
import functools
import re
import xml.etree.ElementTree as ET
from email.utils import parsedate_to_datetime
from urllib.parse import unquote

from luisy_sync.errors import TransientError
from luisy_sync.stores.base import ObjectInfo

__all__ = ["http_date", "next_marker_ahead", "parse_list_page", "quoted_etag"]

_META_ITEM = re.compile(rb"<([^\s/>]+)\s*(?:/>|>([^<]*)</\1>)")

_MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep",
                                        "Oct", "Nov", "Dec"), 1)}
_EPOCH_DAY = datetime.date(1970, 1, 1).toordinal()


@functools.lru_cache(maxsize=1024)
def http_date(value: str | None) -> float | None:
    """POSIX seconds of an HTTP date (``Last-Modified``: ``Wed, 25 Nov 2026 20:50:43 GMT``);
    None when absent or unreadable. The fixed format is read by position (a listing
    has one per blob, mostly repeating); anything else goes through email.utils."""
    if not value:
        return None
    if len(value) == 29 and value[3:5] == ", " and value[25:] == " GMT":
        try:
            days = datetime.date(int(value[12:16]), _MONTHS[value[8:11]], int(value[5:7])).toordinal()
            return float((days - _EPOCH_DAY) * 86400 + int(value[17:19]) * 3600
                         + int(value[20:22]) * 60 + int(value[23:25]))
        except (KeyError, ValueError):
            pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when.timestamp()


@functools.lru_cache(maxsize=1024)
def _listed_date(value: bytes) -> float | None:
    """``http_date`` of a listing's ``<Last-Modified>`` text (cached as bytes, undecoded)."""
    return http_date(value.decode("utf-8", "replace"))


def quoted_etag(value: str | None) -> str | None:
    """An ETag in its quoted form (listings report ETags unquoted)."""
    if value and not value.startswith('"'):  # listings report ETags unquoted
        return f'"{value}"'
    return value


def next_marker_ahead(body: bytes) -> str:
    """The NextMarker of a List Blobs answer, read off its tail without parsing it ("" when
    there is none, or when the answer is cut short or the marker holds an entity: then
    only the parse can tell). An element's tag cannot occur in a name or a value (``<``
    is escaped there), so the last ``<NextMarker>`` is the answer's own."""
    tail = body[-4096:].rstrip()
    if not tail.endswith(b"</EnumerationResults>"):
        return ""
    at = tail.rfind(b"<NextMarker>")
    marker = _between(tail, b"<NextMarker>", b"</NextMarker>", at, len(tail)) if at >= 0 else None
    if marker is None or b"&" in marker or b"<" in marker:
        return ""
    return marker.decode("utf-8", "replace")


def parse_list_page(body: bytes, cut: int, what: str = "list") -> tuple[list[ObjectInfo], str]:
    """The blobs (names lose their first ``cut`` characters) and NextMarker of one List
    Blobs answer. Pages in the usual shape are cut apart with ``bytes.find`` (several
    times faster than building a tree); a page with anything else (encoded names,
    entities, CDATA, another layout) goes through xml.etree."""
    if not body.rstrip().endswith(b"</EnumerationResults>"):
        raise TransientError(f"{what}: the listing answer could not be parsed (cut short?); "
                             "the listing can be retried")
    if b"&" in body or b"<![CDATA[" in body or b"<!--" in body:
        return _parse_list_page_tree(body, cut, what)
    chunks = body.split(b"<Blob>")
    out = []
    for chunk in chunks[1:]:
        info = _usual_blob(chunk, cut)
        if info is None:
            return _parse_list_page_tree(body, cut, what)
        out.append(info)
    tail = chunks[-1]
    after = tail.find(b"</Blobs>")
    marker = _between(tail, b"<NextMarker>", b"</NextMarker>", max(after, 0), len(tail))
    return out, (marker or b"").decode("utf-8")


def _between(data: bytes, opening: bytes, closing: bytes, start: int, end: int) -> bytes | None:
    """The text of the first ``opening…closing`` element within ``data[start:end]``."""
    at = data.find(opening, start, end)
    if at < 0:
        return None
    stop = data.find(closing, at, end)
    return data[at + len(opening):stop] if stop >= 0 else None


def _usual_blob(chunk: bytes, cut: int) -> ObjectInfo | None:
    """One ``<Name>…</Properties>[<Metadata>…</Metadata>]…</Blob>`` element (the text after
    ``<Blob>``, no entities); None when it has any other shape."""
    end = chunk.find(b"</Blob>")
    name_end = chunk.find(b"</Name>", 0, end)
    props_end = chunk.find(b"</Properties>", name_end, end)
    if not chunk.startswith(b"<Name>") or min(end, name_end, props_end) < 0:
        return None
    etag = _between(chunk, b"<Etag>", b"</Etag>", name_end, props_end)
    size = _between(chunk, b"<Content-Length>", b"</Content-Length>", name_end, props_end)
    modified = _between(chunk, b"<Last-Modified>", b"</Last-Modified>", name_end, props_end)
    if etag is None or size is None or not size.isdigit() or b"<" in etag or (
            modified is not None and b"<" in modified):
        return None
    meta: dict[str, str] = {}
    raw = _between(chunk, b"<Metadata>", b"</Metadata>", props_end, end)
    if raw is not None:
        if b"<Metadata" in raw or _META_ITEM.sub(b"", raw).strip():
            return None  # nested or not just <key>value</key> items
        meta = {k.decode("utf-8"): v.decode("utf-8") for k, v in _META_ITEM.findall(raw)}
    elif b"<Metadata>" in chunk[props_end:end]:
        return None
    return ObjectInfo(chunk[6:name_end].decode("utf-8")[cut:], int(size),
                      quoted_etag(etag.decode("utf-8")), meta,
                      None if modified is None else _listed_date(modified))


def _parse_list_page_tree(body: bytes, cut: int, what: str) -> tuple[list[ObjectInfo], str]:
    """``parse_list_page`` through xml.etree (any well-formed answer)."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        raise TransientError(f"{what}: the listing answer could not be parsed (cut short?); "
                             "the listing can be retried") from None
    return [_listed(blob, cut) for blob in root.iterfind("Blobs/Blob")], root.findtext("NextMarker") or ""


def _listed(blob: ET.Element, cut: int) -> ObjectInfo:
    """An ObjectInfo from one <Blob> element of a listing."""
    node = blob.find("Name")
    name = (node.text or "") if node is not None else ""
    if node is not None and node.get("Encoded") == "true":
        name = unquote(name)
    size = int(blob.findtext("Properties/Content-Length") or 0)
    etag = quoted_etag(blob.findtext("Properties/Etag"))
    meta_node = blob.find("Metadata")
    meta = {m.tag: m.text or "" for m in meta_node} if meta_node is not None else {}
    return ObjectInfo(name[cut:], size, etag, meta, http_date(blob.findtext("Properties/Last-Modified")))

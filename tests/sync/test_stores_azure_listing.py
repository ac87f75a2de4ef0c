"""The List Blobs page parser of the Shared Key fast path: the find-based reading of the
usual shape must give exactly what xml.etree gives, for every shape a page can take; the
marker read off a page's tail is the parsed one or none, and the next page is asked for
before a page is parsed."""

from __future__ import annotations

import asyncio
import random
from urllib.parse import quote
from xml.sax.saxutils import escape

import pytest

from luisy_sync.errors import TransientError
from luisy_sync.stores import azure_rest
from luisy_sync.stores.azure_auth import SharedKeyAuth
from luisy_sync.stores.azure_answers import _parse_list_page_tree, next_marker_ahead, parse_list_page
from luisy_sync.stores.azure_rest import RestBlobClient
from luisy_sync.stores.base import ObjectInfo
from luisy_sync.stores.http1_response import Headers, Response

HEAD = (b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><EnumerationResults '
        b'ServiceEndpoint="http://127.0.0.1:1/devstoreaccount1" ContainerName="c">'
        b"<Prefix/><Marker/><MaxResults>5000</MaxResults>")


MODIFIED = [("Wed, 25 Nov 2026 20:50:43 GMT", 1795639843.0), ("Thu, 01 Jan 1970 00:00:00 GMT", 0.0),
            ("Tue, 29 Feb 2028 23:59:59 GMT", 1835481599.0)]
"""Last-Modified values of listed blobs (chosen by size) and their POSIX seconds."""


def blob_xml(name: str, size: int, etag: str, meta: dict[str, str] | None, *, encoded: bool = False,
             size_first: bool = False, empty_meta: str = "<Metadata/>") -> str:
    name_el = (f'<Name Encoded="true">{quote(name)}</Name>' if encoded else f"<Name>{escape(name)}</Name>")
    props = [f"<Etag>{etag}</Etag>", f"<Content-Length>{size}</Content-Length>"]
    if size_first:
        props.reverse()
    props_el = ("<Properties><Creation-Time>Wed, 25 Nov 2026 20:50:43 GMT</Creation-Time>"
                f"<Last-Modified>{MODIFIED[size % len(MODIFIED)][0]}</Last-Modified>"
                + "".join(props) + "<BlobType>BlockBlob</BlobType></Properties>")
    if meta is None:
        meta_el = empty_meta
    else:
        meta_el = "<Metadata>" + "".join(f"<{k}>{escape(v)}</{k}>" if v else f"<{k} />"
                                          for k, v in meta.items()) + "</Metadata>"
    return f"<Blob>{name_el}{props_el}{meta_el}</Blob>"


def page(blobs: list[str], marker: str = "") -> bytes:
    tail = f"<NextMarker>{marker}</NextMarker>" if marker else "<NextMarker />"
    inner = "".join(blobs)
    return HEAD + (f"<Blobs>{inner}</Blobs>" if blobs else "<Blobs />").encode() + tail.encode() + \
        b"</EnumerationResults>"


def both(body: bytes, cut: int = 0) -> tuple[list[ObjectInfo], str]:
    fast = parse_list_page(body, cut)
    assert fast == _parse_list_page_tree(body, cut, "list")
    return fast


def test_the_usual_page(monkeypatch: pytest.MonkeyPatch) -> None:
    body = page([blob_xml(f"d/f{i}.dat", i, f"0x{i:X}", {"xxh3": f"{i:032x}"}) for i in range(3)],
                marker="2!48!MDAwMDEz")
    tree = _parse_list_page_tree(body, 2, "list")
    monkeypatch.setattr("luisy_sync.stores.azure_answers._parse_list_page_tree", None)  # not needed
    blobs, marker = parse_list_page(body, 2)
    assert (blobs, marker) == tree
    assert marker == "2!48!MDAwMDEz"
    assert blobs[1] == ObjectInfo("f1.dat", 1, '"0x1"', {"xxh3": f"{1:032x}"}, MODIFIED[1][1])
    assert [b.modified for b in blobs] == [m for _, m in MODIFIED]


@pytest.mark.parametrize("blob", [
    blob_xml("a&b <c>.txt", 5, "0xA", {"xxh3": "x"}),
    blob_xml("bad\x01name", 5, "0xA", {"xxh3": "x"}, encoded=True),
    blob_xml("ünï/cødé €.bin", 7, "0xB", {"xxh3": "é&ü"}),
    blob_xml("n", 1, "0xC", {"Blob": "x", "Name": "y", "Etag": "z", "NextMarker": "m", "Metadata": "w"}),
    blob_xml("n", 1, "0xC", {"empty": "", "xxh3": "d"}),
    blob_xml("n", 1, "0xC", None),
    blob_xml("n", 1, "0xC", None, empty_meta="<Metadata></Metadata>"),
    blob_xml("n", 1, "0xC", None, empty_meta=""),
    blob_xml("n", 1, "0xC", {"xxh3": "d"}, size_first=True),
])
def test_unusual_blobs_read_like_the_tree(blob: str) -> None:
    blobs, marker = both(page([blob_xml("first", 3, "0x1", {"xxh3": "a"}), blob, blob_xml("last", 4, "0x2", None)]))
    assert len(blobs) == 3 and marker == ""


def test_pretty_printed_and_empty_pages() -> None:
    assert both(page([])) == ([], "")
    pretty = page([blob_xml("a", 1, "0x1", {"xxh3": "a"})]).replace(b"><", b">\n  <")
    assert both(pretty)[0] == [ObjectInfo("a", 1, '"0x1"', {"xxh3": "a"}, MODIFIED[1][1])]


def test_a_cut_short_page_is_transient() -> None:
    body = page([blob_xml("a", 1, "0x1", {"xxh3": "a"})])
    for end in (len(body) // 2, len(body) - 3):
        with pytest.raises(TransientError, match="could not be parsed"):
            parse_list_page(body[:end], 0)


def test_random_pages_read_like_the_tree() -> None:
    rng = random.Random(7)
    alphabet = "abcXYZ09_-./ &<>'\"éü€\x01"
    for _ in range(200):
        blobs = []
        for _ in range(rng.randint(0, 6)):
            name = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))
            meta = None if rng.random() < 0.2 else {
                rng.choice(["xxh3", "k", "Blob", "Name", "Etag", "meta_1"]):
                    "".join(rng.choice(alphabet[:-1]) for _ in range(rng.randint(0, 5)))
                for _ in range(rng.randint(0, 3))}
            blobs.append(blob_xml(name, rng.randint(0, 10 ** 9), f"0x{rng.getrandbits(40):X}", meta,
                                  encoded="\x01" in name, size_first=rng.random() < 0.1))
        body = page(blobs, marker=rng.choice(["", "2!16!abc", "2!16!a&amp;b"]))
        _, marker = both(body, cut=rng.randint(0, 2))
        assert next_marker_ahead(body) == ("" if "&" in marker else marker)


def test_the_marker_ahead_is_the_tail_s_or_none() -> None:
    blobs = [blob_xml("<NextMarker>x</NextMarker>", 1, "0x1", {"k": "<NextMarker>y</NextMarker>"})]
    assert next_marker_ahead(page(blobs, "2!16!abc")) == "2!16!abc"
    assert next_marker_ahead(page(blobs, "2!16!abc") + b"\r\n") == "2!16!abc"
    assert next_marker_ahead(page(blobs)) == ""  # <NextMarker />: the last page
    assert next_marker_ahead(page(blobs, "2!16!abc")[:-5]) == ""  # cut short: the parse says so
    assert next_marker_ahead(page(blobs, "a&amp;b")) == ""  # only the parse unescapes


class PagedPool:
    """Stands in for the HttpPool of a List Blobs: answers each marker's page after one
    checkpoint, and logs the gets and (through the patched parser) the parses in order."""

    def __init__(self, pages: dict[str, bytes], log: list[str]):
        self.pages, self.log = pages, log

    async def request(self, verb: str, target: str, headers: dict[str, str], body: object = None,
                      sink: object = None) -> Response:
        marker = target.partition("marker=")[2].partition("&")[0]
        self.log.append(f"get {marker}")
        await asyncio.sleep(0)
        return Response(200, "OK", Headers([]), bytearray(self.pages[marker]))


@pytest.mark.parametrize("second_marker", ["m2", "m&amp;2"])
async def test_the_next_page_is_asked_for_before_this_one_is_parsed(
        monkeypatch: pytest.MonkeyPatch, second_marker: str) -> None:
    wire = {"m2": "m2", "m&amp;2": "m%262"}[second_marker]  # the marker as the query sends it
    pages = {"": page([blob_xml("a", 1, "0x1", None)], "m1"),
             "m1": page([blob_xml("b", 2, "0x2", None)], second_marker),
             wire: page([blob_xml("c", 3, "0x3", None)])}
    log: list[str] = []
    parse = azure_rest.parse_list_page

    def logged(body: bytes, cut: int, what: str = "list") -> tuple[list[ObjectInfo], str]:
        blobs, marker = parse(body, cut, what)
        log.append("parse " + ",".join(b.name for b in blobs))
        return blobs, marker

    monkeypatch.setattr(azure_rest, "parse_list_page", logged)
    pool = PagedPool(pages, log)
    client = RestBlobClient("https://acct.blob.core.windows.net", "box", SharedKeyAuth("acct", b"k"),
                            http=lambda: pool)  # type: ignore[arg-type, return-value]
    listed = await client.list("", "", "list")
    assert [o.name for o in listed] == ["a", "b", "c"]
    if second_marker == "m2":
        assert log == ["get ", "get m1", "parse a", "get m2", "parse b", "parse c"]
    else:  # an escaped marker is read only by the parse: that page's next get waits for it
        assert log == ["get ", "get m1", "parse a", "parse b", f"get {wire}", "parse c"]

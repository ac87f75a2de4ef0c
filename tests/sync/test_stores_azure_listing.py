"""The List Blobs page parser of the Shared Key fast path: the find-based reading of the
usual shape must give exactly what xml.etree gives, for every shape a page can take."""

from __future__ import annotations

import random
from urllib.parse import quote
from xml.sax.saxutils import escape

import pytest

from luisy_sync.errors import TransientError
from luisy_sync.stores.azure_rest import _parse_list_page_tree, parse_list_page
from luisy_sync.stores.base import ObjectInfo

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
    monkeypatch.setattr("luisy_sync.stores.azure_rest._parse_list_page_tree", None)  # not needed
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
        both(page(blobs, marker=rng.choice(["", "2!16!abc"])), cut=rng.randint(0, 2))

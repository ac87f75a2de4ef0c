"""Just enough HTTP/1.1 framing for the fault proxy to find message boundaries.

The proxy forwards bytes; to cut a response body short it has to know where the
response head ends and how long the body is, and to know that it must know the
method of the matching request (a HEAD response announces a length but has no
body). Both framers are incremental: they are fed chunks as they arrive.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

MAX_HEAD = 64 * 1024
_REASONS = {429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}


@dataclass(frozen=True)
class Head:
    """A parsed request or response head."""

    first_line: str
    headers: dict[str, str]  # lower-case names

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("content-length")
        return int(value) if value is not None and value.strip().isdigit() else None

    @property
    def chunked(self) -> bool:
        return "chunked" in self.headers.get("transfer-encoding", "").lower()


def parse_head(raw: bytes) -> Head:
    """Parse a head (without the blank line that ends it)."""
    lines = raw.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return Head(lines[0], headers)


class RequestTracker:
    """Follows the client->server stream and remembers each request's method, in order."""

    def __init__(self) -> None:
        self.methods: deque[str] = deque()
        self.lost = False  # framing lost (chunked request body or oversized head)
        self._buf = bytearray()
        self._body_left = 0

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        while view and not self.lost:
            if self._body_left:
                step = min(self._body_left, len(view))
                self._body_left -= step
                view = view[step:]
                continue
            self._buf += view
            view = memoryview(b"")
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                self.lost = len(self._buf) > MAX_HEAD
                return
            head = parse_head(bytes(self._buf[:end]))
            rest = bytes(self._buf[end + 4:])
            self._buf.clear()
            self.methods.append(head.first_line.split(" ", 1)[0].upper())
            if head.chunked:
                self.lost = True
                return
            self._body_left = head.content_length or 0
            view = memoryview(rest)


class ResponseCutter:
    """Follows the server->client stream and cuts the first response that has a body.

    ``feed(data)`` returns ``(forward, done)``: the bytes to pass on and whether the
    connection must now be closed because the body was cut short. Responses without
    a body (HEAD, 204, 304, Content-Length: 0) pass through untouched.
    """

    def __init__(self, requests: RequestTracker, keep_fraction: float = 0.5) -> None:
        self.requests = requests
        self.keep_fraction = keep_fraction
        self._buf = bytearray()
        self._cut_left: int | None = None  # body bytes still to forward before cutting

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        out = bytearray()
        view = memoryview(data)
        while view:
            if self._cut_left is not None:
                step = min(self._cut_left, len(view))
                out += view[:step]
                self._cut_left -= step
                if self._cut_left == 0:
                    return bytes(out), True
                return bytes(out), False
            self._buf += view
            view = memoryview(b"")
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > MAX_HEAD:  # not HTTP as we know it: cut right here
                    return bytes(out), True
                return bytes(out), False
            head = parse_head(bytes(self._buf[:end]))
            out += self._buf[:end + 4]
            rest = bytes(self._buf[end + 4:])
            self._buf.clear()
            body = self._body_length(head)
            if body is None or body > 0:
                # Keep part of the body (a known fraction, or of what arrived so far).
                known = body if body is not None else len(rest)
                self._cut_left = int(known * self.keep_fraction)
                if self._cut_left == 0:
                    return bytes(out), True
            view = memoryview(rest)
        return bytes(out), False

    def _body_length(self, head: Head) -> int | None:
        method = self.requests.methods.popleft() if self.requests.methods else "GET"
        parts = head.first_line.split(" ", 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 200
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return 0
        if head.chunked:
            return None
        return head.content_length  # None: the body runs until the connection closes


def status_response(status: int, retry_after: int, *, close: bool = True) -> bytes:
    """A complete Azure-style error response that asks the client to come back later
    (``close``: and closes the connection)."""
    reason = _REASONS.get(status, "Error")
    code = "ServerBusy" if status == 503 else "TooManyRequests"
    body = (f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code>'
            f"<Message>injected by the benchmark fault proxy</Message></Error>").encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nRetry-After: {retry_after}\r\n"
            f"x-ms-error-code: {code}\r\nContent-Type: application/xml\r\n"
            f"Content-Length: {len(body)}\r\nConnection: {'close' if close else 'keep-alive'}\r\n\r\n")
    return head.encode("latin-1") + body

"""The wire side of ``luisy_sync.stores.http1``: one HTTP/1.1 connection and its answers.

``Connection`` is an ``asyncio.BufferedProtocol`` that runs one request at a time: it
writes the head and body (large bodies in slices under the transport's flow control)
and parses the answer as it arrives, the body received straight into one buffer of its
``Content-Length`` (never joined from chunks) or streamed into the caller's
``BodySink``, reading paused while the sink has no room. Chunked and read-until-close
bodies, interim 1xx answers, HEAD and bodiless statuses, ``Connection: close`` and a
read timeout (no byte in either direction for that long; time the sink keeps the read
paused does not count) are handled here; the pool, proxies and connecting live in
``http1``.
"""

from __future__ import annotations

import asyncio
from luisy_sync.stores.base import BodySink
from luisy_sync.stores.http1_response import Headers, IncompleteBody, Response

__all__ = ["Connection"]

_SCRATCH = 64 * 1024
"""Receive buffer for response heads (grown for unusually large heads)."""
_MAX_HEAD = 1024 * 1024
_SLICE = 1024 * 1024
"""Large bodies are written in slices of this size, each after the transport drained."""
_JOIN_LIMIT = 256 * 1024
"""Bodies up to this size go out in one write together with the head."""
_NO_BODY_STATUS = frozenset({204, 304})


class _Exchange:
    """The state of reading one response."""

    __slots__ = ("head_only", "sink", "waiter", "status", "reason", "headers", "body", "got",
                 "need", "mode", "chunks", "raw", "keep_alive")

    def __init__(self, waiter: asyncio.Future[Response], head_only: bool, sink: BodySink | None):
        self.waiter = waiter
        self.head_only = head_only
        self.sink = sink
        self.status = 0
        self.reason = ""
        self.headers: Headers | None = None
        self.body = bytearray()
        self.got = 0
        self.need = 0
        self.mode = "head"  # head -> length | stream | chunked | close -> done
        self.chunks: list[bytes] = []
        self.raw = bytearray()  # chunked / until-close bytes not decoded yet
        self.keep_alive = True


class Connection(asyncio.BufferedProtocol):
    """One keep-alive connection; at most one request at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop, read_timeout: float):
        self.loop = loop
        self.read_timeout = read_timeout
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._scratch = bytearray(_SCRATCH)
        self._filled = 0
        self._exchange: _Exchange | None = None
        self._writable: asyncio.Future[None] | None = None
        self._paused = False
        self._timer: asyncio.TimerHandle | None = None
        self._last = 0.0
        self._view: memoryview | None = None  # the sink's view for the next read (stream mode)
        self._into_view = False  # the last get_buffer handed out _view
        self._sink_full = False  # reading paused until the sink has room

    # -- asyncio callbacks -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._stop_timer()
        self._wake_writer()
        ex = self._exchange
        if ex is None or ex.waiter.done():
            return
        if ex.mode == "close":
            self._finish(bytes(ex.raw))
            return
        if ex.mode in ("length", "stream", "chunked"):
            self._fail(IncompleteBody(f"the connection closed after {ex.got} of "
                                      f"{ex.need if ex.mode in ('length', 'stream') else '?'} body bytes"))
        else:
            self._fail(exc if isinstance(exc, ConnectionError) else
                       ConnectionResetError("the server closed the connection before answering"
                                            + (f" ({exc})" if exc else "")))

    def eof_received(self) -> bool | None:
        return None  # the transport closes; connection_lost settles the exchange

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._last = self.loop.time()
        self._wake_writer()

    def get_buffer(self, sizehint: int) -> memoryview:
        ex = self._exchange
        if ex is not None and ex.mode == "length" and not ex.waiter.done():
            return memoryview(ex.body)[ex.got:ex.need]
        if self._view is not None and not self._filled:
            self._into_view = True
            return self._view
        if len(self._scratch) - self._filled < 16 * 1024:
            if len(self._scratch) >= _MAX_HEAD:
                self._protocol_error("the response head is larger than 1 MiB")
                self._filled = 0
            else:
                self._scratch.extend(bytes(len(self._scratch)))
        return memoryview(self._scratch)[self._filled:]

    def buffer_updated(self, nbytes: int) -> None:
        self._last = self.loop.time()
        ex = self._exchange
        if ex is None or ex.waiter.done():
            self._protocol_error("the server sent data without a request")
            return
        if ex.mode == "length":
            ex.got += nbytes
            if ex.got >= ex.need:
                self._finish(ex.body)
            return
        if self._into_view:
            self._into_view, self._view = False, None
            ex.got += nbytes
            assert ex.sink is not None
            ex.sink.received(nbytes)
            self._pump(ex)
            return
        self._filled += nbytes  # (in stream mode only bytes that came while the sink was full)
        if ex.mode == "stream":
            self._pump(ex)
            return
        if ex.mode == "head":
            self._read_head(ex)
        else:
            self._take_scratch(ex)

    # -- response parsing --------------------------------------------------------------

    def _read_head(self, ex: _Exchange) -> None:
        end = self._scratch.find(b"\r\n\r\n", 0, self._filled)
        if end < 0:
            return
        lines = bytes(self._scratch[:end]).decode("latin-1").split("\r\n")
        try:
            version, status, *reason = lines[0].split(" ", 2)
            ex.status = int(status)
            if not version.startswith("HTTP/1."):
                raise ValueError(version)
            raw = []
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                if not sep:
                    raise ValueError(line)
                raw.append((name.strip(), value.strip()))
        except ValueError:
            self._protocol_error(f"unreadable response head {lines[0][:80]!r}")
            return
        if 100 <= ex.status < 200:  # an interim answer: drop it, the real head follows
            self._shift(end + 4)
            if self._filled:
                self._read_head(ex)
            return
        ex.reason = reason[0] if reason else ""
        headers = ex.headers = Headers(raw)
        connection = (headers.get("Connection") or "").lower()
        ex.keep_alive = "close" not in connection and version != "HTTP/1.0"
        self._shift(end + 4)
        length = headers.get("Content-Length")
        if ex.head_only or ex.status in _NO_BODY_STATUS:
            self._finish(b"")
        elif ex.sink is not None and 200 <= ex.status < 300 and length is None:
            self._protocol_error("a streamed read got a body without Content-Length")
        elif "chunked" in (headers.get("Transfer-Encoding") or "").lower():
            ex.mode = "chunked"
            self._take_scratch(ex)
        elif length is not None:
            try:
                need = int(length)
            except ValueError:
                self._protocol_error(f"unreadable Content-Length {length[:40]!r}")
                return
            ex.need = need
            if ex.sink is not None and 200 <= ex.status < 300:
                try:
                    ex.sink.start(need)
                except Exception as exc:  # refused: the body stays unread, the connection goes
                    self._fail(exc)
                    return
                ex.mode = "stream"
                self._pump(ex)
                return
            ex.body = bytearray(need)
            ex.mode = "length"
            take = min(self._filled, need)
            if take:
                ex.body[:take] = self._scratch[:take]
                ex.got = take
                self._shift(take)
            if ex.got >= need:
                self._finish(ex.body)
        else:
            ex.mode = "close"
            ex.keep_alive = False
            self._take_scratch(ex)

    def _pump(self, ex: _Exchange) -> None:
        """Stream mode: move body bytes held in the scratch buffer into the sink, then
        ask it for the view the next read goes to; pause reading while it has no room."""
        sink = ex.sink
        assert sink is not None
        while self._filled and ex.got < ex.need:
            view = sink.buffer(self._sink_room)
            if view is None:
                self._pause_for_sink()
                return
            n = min(len(view), self._filled, ex.need - ex.got)
            view[:n] = self._scratch[:n]
            ex.got += n
            sink.received(n)
            self._shift(n)
        if ex.got >= ex.need:
            self._finish(b"")
            return
        view = sink.buffer(self._sink_room)
        if view is None:
            self._pause_for_sink()
        else:
            self._view = view[:ex.need - ex.got]

    def _pause_for_sink(self) -> None:
        self._view = None
        if not self._sink_full and self.transport is not None:
            self._sink_full = True
            self.transport.pause_reading()

    def _sink_room(self) -> None:
        """The sink's wake-up: it may have room again."""
        ex = self._exchange
        if not self._sink_full or ex is None or ex.waiter.done() or self.closed:
            return
        self._sink_full = False
        self._last = self.loop.time()
        self._pump(ex)
        if not self._sink_full and self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def _shift(self, count: int) -> None:
        """Drop the first ``count`` received bytes of the scratch buffer."""
        rest = self._filled - count
        if rest:
            self._scratch[:rest] = self._scratch[count:self._filled]
        self._filled = rest

    def _take_scratch(self, ex: _Exchange) -> None:
        ex.raw += self._scratch[:self._filled]
        ex.got += self._filled
        self._filled = 0
        if ex.mode == "chunked":
            self._decode_chunks(ex)

    def _decode_chunks(self, ex: _Exchange) -> None:
        raw, pos = ex.raw, 0
        while True:
            line_end = raw.find(b"\r\n", pos)
            if line_end < 0:
                break
            try:
                size = int(bytes(raw[pos:line_end]).split(b";", 1)[0].strip(), 16)
            except ValueError:
                self._protocol_error("unreadable chunk size in a chunked body")
                return
            if size == 0:
                if raw.find(b"\r\n\r\n", line_end) < 0:
                    break  # the trailers' end has not arrived yet
                self._finish(b"".join(ex.chunks))
                return
            start = line_end + 2
            if len(raw) < start + size + 2:
                break
            ex.chunks.append(bytes(raw[start:start + size]))
            pos = start + size + 2
        if pos:
            del raw[:pos]

    # -- settling ----------------------------------------------------------------------

    def _finish(self, body: bytes | bytearray) -> None:
        ex = self._exchange
        assert ex is not None and ex.headers is not None
        self._stop_timer()
        if not ex.keep_alive:
            self.closed = True
        if not ex.waiter.done():
            ex.waiter.set_result(Response(ex.status, ex.reason, ex.headers, body))

    def _fail(self, exc: BaseException) -> None:
        ex = self._exchange
        self._stop_timer()
        self.abort()
        if ex is not None and not ex.waiter.done():
            ex.waiter.set_exception(exc)

    def _protocol_error(self, what: str) -> None:
        self._fail(ConnectionResetError(f"bad HTTP answer: {what}"))

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    # -- timers and flow control -------------------------------------------------------

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check_timeout(self) -> None:
        if self._sink_full:  # waiting for our own sink, not for the server
            self._last = self.loop.time()
        idle = self.loop.time() - self._last
        if idle >= self.read_timeout:
            self._timer = None
            self._fail(asyncio.TimeoutError(f"no data for {self.read_timeout:g} s"))
        else:
            self._timer = self.loop.call_later(self.read_timeout - idle, self._check_timeout)

    def _wake_writer(self) -> None:
        waiter, self._writable = self._writable, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _drained(self) -> None:
        while self._paused and not self.closed:
            self._writable = self.loop.create_future()
            await self._writable

    # -- one request -------------------------------------------------------------------

    async def exchange(self, head: bytes, body: bytes | bytearray | memoryview | None, head_only: bool,
                       sink: BodySink | None) -> Response:
        """Send ``head`` and ``body``, return the answer (the body read in full, or
        streamed into ``sink`` when the status is 2xx)."""
        transport = self.transport
        assert transport is not None
        waiter: asyncio.Future[Response] = self.loop.create_future()
        self._exchange = _Exchange(waiter, head_only, sink)
        self._filled = 0
        self._last = self.loop.time()
        self._timer = self.loop.call_later(self.read_timeout, self._check_timeout)
        sent_all = True
        if body is None or len(body) == 0:
            transport.write(head)
        elif len(body) <= _JOIN_LIMIT:
            transport.write(head + body)
        else:
            transport.write(head)
            view = memoryview(body)
            for start in range(0, len(view), _SLICE):
                await self._drained()
                if self.closed or waiter.done():
                    sent_all = False  # answered (or hung up) before taking the whole body
                    break
                transport.write(view[start:start + _SLICE])
                self._last = self.loop.time()
        try:
            return await waiter
        finally:
            if not sent_all:
                self.closed = True  # the request stream is out of step: never reuse it
            self._exchange = None
            self._view, self._into_view = None, False
            if self._sink_full:  # ended while the sink was full: read again on reuse
                self._sink_full = False
                if not self.closed:
                    transport.resume_reading()

"""A lean HTTP/1.1 client for the Azure fast path: keep-alive connections on asyncio.

Why not a general client: a 64 KiB Put Blob through aiohttp costs about 0.2 ms of
client CPU, most of it in request and response machinery that Blob REST calls do not
need (multidicts, cookie jars, tracing, payload registries, per-chunk stream readers).
This client does one thing: send a request (head and body written straight to the
socket, large bodies in slices under the transport's flow control) and read the answer
with an ``asyncio.BufferedProtocol``, the body received straight into one buffer of its
``Content-Length``, never joined from chunks, or streamed into the caller's ``BodySink``
(reading pauses while the sink has no room: the sink's memory bounds the read's).

Supported: http and https (the default SSL context), ``Content-Length``, chunked and
read-until-close bodies, HEAD and bodiless statuses, keep-alive with ``Connection:
close`` honoured, a connect timeout and a read timeout (no byte in either direction for
that long), and an HTTP proxy from the environment as curl, requests and the Azure SDK
read it (``https_proxy`` / ``http_proxy``, ``no_proxy``; user:password in the proxy URL
becomes Basic proxy authorization): https goes through a ``CONNECT`` tunnel, http in
absolute form. No redirects, cookies or compression. Failures raise ``ConnectionError``
subclasses (``IncompleteBody`` for a body cut short) or ``asyncio.TimeoutError``; the
store translates them.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import ssl
import urllib.request
from typing import Iterator, Literal, Mapping, NamedTuple, overload
from urllib.parse import unquote, urlsplit

from luisy_sync.errors import ConfigError
from luisy_sync.stores.base import BodySink

__all__ = ["HttpPool", "Headers", "Response", "IncompleteBody"]

_SCRATCH = 64 * 1024
"""Receive buffer for response heads (grown for unusually large heads)."""
_MAX_HEAD = 1024 * 1024
_SLICE = 1024 * 1024
"""Large bodies are written in slices of this size, each after the transport drained."""
_JOIN_LIMIT = 256 * 1024
"""Bodies up to this size go out in one write together with the head."""
_NO_BODY_STATUS = frozenset({204, 304})


class IncompleteBody(ConnectionError):
    """The connection ended before the whole response body arrived."""


class Headers(Mapping[str, str]):
    """Response headers: lookups are case-insensitive, iteration keeps the sent case."""

    __slots__ = ("_raw", "_map")

    def __init__(self, raw: list[tuple[str, str]]):
        self._raw = raw
        self._map = {k.lower(): v for k, v in raw}

    @overload  # type: ignore[override]  # keys are names (str); no other default types
    def get(self, name: str, /) -> str | None: ...

    @overload
    def get(self, name: str, /, default: str) -> str: ...

    def get(self, name: str, /, default: str | None = None) -> str | None:
        return self._map.get(name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return self._map[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._map

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def items(self) -> list[tuple[str, str]]:  # type: ignore[override]  # the sent pairs, in order
        return list(self._raw)

    def __repr__(self) -> str:
        return f"Headers({self._raw!r})"


class Response:
    """One answer: ``status``, ``reason``, ``headers`` and the whole ``body``."""

    __slots__ = ("status", "reason", "headers", "body")

    def __init__(self, status: int, reason: str, headers: Headers, body: bytes | bytearray | memoryview):
        self.status, self.reason, self.headers, self.body = status, reason, headers, body


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
        self.body: bytearray | memoryview = bytearray()
        self.got = 0
        self.need = 0
        self.mode = "head"  # head -> length | stream | chunked | close -> done
        self.chunks: list[bytes] = []
        self.raw = bytearray()  # chunked / until-close bytes not decoded yet
        self.keep_alive = True


class _Connection(asyncio.BufferedProtocol):
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
                                      f"{ex.need if ex.mode == 'length' else '?'} body bytes"))
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

    def _finish(self, body: bytes | bytearray | memoryview) -> None:
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


class Proxy(NamedTuple):
    """An HTTP proxy: where it listens and the ``Proxy-Authorization`` value (or "")."""

    host: str
    port: int
    authorization: str = ""


def proxy_from_env(scheme: str, host: str) -> Proxy | None:
    """The proxy the environment names for ``scheme://host`` (None: go direct, also when
    ``no_proxy`` covers the host). Only ``http://`` proxies are supported."""
    url = urllib.request.getproxies_environment().get(scheme)
    if not url or urllib.request.proxy_bypass(host):
        return None
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ConfigError(f"unsupported {scheme}_proxy {parts.scheme}://{parts.hostname or ''}: "
                          "only http:// proxies are supported; set it to http://host:port")
    auth = ""
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        auth = "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")
    return Proxy(parts.hostname, parts.port or 80, auth)


class HttpPool:
    """Keep-alive HTTP/1.1 connections to one origin (``scheme://host[:port]``), at most
    ``limit`` open at once, for the event loop that first uses it (``keep_alive=False``:
    one connection per request, each asking the server to close it). ``proxy``: the
    environment's (the default), a ``Proxy``, or None for none."""

    def __init__(self, origin: str, *, limit: int = 64, connect_timeout: float = 20.0,
                 read_timeout: float = 120.0, user_agent: str = "luisy-sync",
                 ssl_context: ssl.SSLContext | None = None, keep_alive: bool = True,
                 proxy: Proxy | None | Literal["env"] = "env"):
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"unsupported origin {origin!r}: expected http(s)://host[:port]")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self._ssl = ssl_context or ssl.create_default_context()
        default = 443 if parts.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        self._host_header = host if self.port == default else f"{host}:{self.port}"
        self.proxy: Proxy | None = proxy_from_env(parts.scheme, self.host) if isinstance(proxy, str) else proxy
        self._absolute = ""  # plain http through a proxy: requests name the whole URL
        if self.proxy is not None and self._ssl is None:
            self._absolute = f"http://{self._host_header}"
        close = "" if keep_alive else "Connection: close\r\n"
        self._fixed = (f"Host: {self._host_header}\r\nUser-Agent: {user_agent}\r\n"
                       f"Accept-Encoding: identity\r\n{close}")
        self.keep_alive = keep_alive
        self.limit = limit
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._idle: list[_Connection] = []
        self._open = 0
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()
        self._closed = False

    async def request(self, method: str, target: str, headers: Mapping[str, str],
                      body: bytes | bytearray | memoryview | None = None,
                      sink: BodySink | None = None) -> Response:
        """Send one request (``target``: the encoded path and query) and return the answer.

        A PUT or POST always carries ``Content-Length``. ``sink``: where a 2xx answer's
        body goes as it arrives (the answer's body is then empty); a body of unknown
        length is refused (ConnectionError)."""
        lines = [f"{method} {self._absolute}{target} HTTP/1.1\r\n", self._fixed]
        if self._absolute and self.proxy is not None and self.proxy.authorization:
            lines.append(f"Proxy-Authorization: {self.proxy.authorization}\r\n")
        lines.extend(f"{k}: {v}\r\n" for k, v in headers.items())
        if body is not None or method in ("PUT", "POST"):
            lines.append(f"Content-Length: {0 if body is None else len(body)}\r\n")
        lines.append("\r\n")
        head = "".join(lines).encode("latin-1")
        conn = await self._acquire()
        try:
            response = await conn.exchange(head, body, method == "HEAD", sink)
        except BaseException:
            conn.abort()
            self._release(conn)
            raise
        self._release(conn)
        return response

    async def _acquire(self) -> _Connection:
        while True:
            if self._closed:
                raise ConnectionAbortedError("the HTTP connection pool is closed")
            while self._idle:
                conn = self._idle.pop()
                if not conn.closed:
                    return conn
                self._open -= 1
            if self._open < self.limit:
                self._open += 1
                try:
                    return await self._connect()
                except BaseException:
                    self._open -= 1
                    self._wake_one()
                    raise
            waiter = asyncio.get_running_loop().create_future()
            self._waiting.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter in self._waiting:
                    self._waiting.remove(waiter)
                elif waiter.done() and not waiter.cancelled():
                    self._wake_one()  # pass on a wake-up this cancelled waiter received
                raise

    async def _connect(self) -> _Connection:
        try:
            return await asyncio.wait_for(self._open_connection(), self.connect_timeout)
        except asyncio.TimeoutError:
            raise asyncio.TimeoutError(f"no connection to {self._where()} within "
                                       f"{self.connect_timeout:g} s") from None
        except ConnectionError:
            raise
        except OSError as exc:  # name resolution, TLS, unreachable network
            raise ConnectionError(f"cannot connect to {self._where()}: {exc}") from None

    def _where(self) -> str:
        proxy = f" through the proxy {self.proxy.host}:{self.proxy.port}" if self.proxy else ""
        return self._host_header + proxy

    async def _open_connection(self) -> _Connection:
        loop = asyncio.get_running_loop()

        def factory() -> _Connection:
            return _Connection(loop, self.read_timeout)

        if self.proxy is None:
            _, conn = await loop.create_connection(factory, self.host, self.port, ssl=self._ssl,
                                                   server_hostname=self.host if self._ssl else None)
            return conn
        transport, conn = await loop.create_connection(factory, self.proxy.host, self.proxy.port)
        if self._ssl is None:
            return conn
        try:  # https: a CONNECT tunnel, then TLS with the origin inside it
            head = f"CONNECT {self._host_header} HTTP/1.1\r\nHost: {self._host_header}\r\n"
            if self.proxy.authorization:
                head += f"Proxy-Authorization: {self.proxy.authorization}\r\n"
            answer = await conn.exchange((head + "\r\n").encode("latin-1"), None, True, None)
            if answer.status != 200:
                raise ConnectionRefusedError(f"the proxy refused the tunnel: HTTP {answer.status} "
                                             f"{answer.reason}".rstrip())
            tls = await loop.start_tls(transport, conn, self._ssl, server_hostname=self.host)
        except BaseException:
            transport.abort()
            raise
        assert isinstance(tls, asyncio.Transport)
        conn.transport = tls
        return conn

    def _release(self, conn: _Connection) -> None:
        if conn.closed or self._closed or not self.keep_alive:
            if conn.transport is not None and not conn.transport.is_closing():
                conn.transport.close()
            self._open -= 1
        else:
            self._idle.append(conn)
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def close(self) -> None:
        """Close every idle connection; connections in use close when their request ends."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            self._open -= 1
            if conn.transport is not None:
                conn.transport.close()
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
        if idle:
            await asyncio.sleep(0)  # let the transports' close callbacks run

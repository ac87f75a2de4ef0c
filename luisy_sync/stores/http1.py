"""A lean HTTP/1.1 client for the Azure fast path: keep-alive connections on asyncio.

Why not a general client: a 64 KiB Put Blob through aiohttp costs about 0.2 ms of
client CPU, most of it in request and response machinery that Blob REST calls do not
need (multidicts, cookie jars, tracing, payload registries, per-chunk stream readers).
This client does one thing: send a request (head and body written straight to the
socket, large bodies in slices under the transport's flow control) and read the answer
with an ``asyncio.BufferedProtocol`` (``http1_wire``), the body received straight into
one buffer of its ``Content-Length``, never joined from chunks, or streamed into the
caller's ``BodySink`` (reading pauses while the sink has no room: the sink's memory
bounds the read's). This module holds the pool, connecting and proxies.

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
from typing import Literal, Mapping, NamedTuple
from urllib.parse import unquote, urlsplit

from luisy_sync.errors import ConfigError
from luisy_sync.stores.base import BodySink
from luisy_sync.stores.http1_response import Headers, IncompleteBody, Response
from luisy_sync.stores.http1_wire import Connection

__all__ = ["HttpPool", "Headers", "Response", "IncompleteBody", "Proxy", "proxy_from_env"]


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
        self._idle: list[Connection] = []
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

    async def _acquire(self) -> Connection:
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

    async def _connect(self) -> Connection:
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

    async def _open_connection(self) -> Connection:
        loop = asyncio.get_running_loop()

        def factory() -> Connection:
            return Connection(loop, self.read_timeout)

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

    def _release(self, conn: Connection) -> None:
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

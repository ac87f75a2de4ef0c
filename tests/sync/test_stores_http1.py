"""The lean HTTP/1.1 client (luisy_sync.stores.http1) against a scripted loopback server."""

from __future__ import annotations

import asyncio
import base64
import shutil
import ssl
import subprocess
from typing import Awaitable, Callable

import pytest

from luisy_sync.errors import ConfigError
from luisy_sync.stores.http1 import HttpPool, IncompleteBody, Proxy, proxy_from_env

Reply = Callable[[asyncio.StreamWriter, "Request"], Awaitable[bool]]
"""Writes the answer; returns whether the server keeps the connection open."""


class Request:
    def __init__(self, line: str, headers: dict[str, str], body: bytes):
        self.line, self.headers, self.body = line, headers, body


class Server:
    """Reads requests (head + Content-Length body unless ``read_body`` is False) and
    answers each with ``reply``; counts connections and keeps the requests."""

    def __init__(self, reply: Reply, read_body: bool = True):
        self.reply, self.read_body = reply, read_body
        self.connections = 0
        self.requests: list[Request] = []
        self.server: asyncio.base_events.Server | None = None

    async def __aenter__(self) -> "Server":
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

        self.origin = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                line, *rest = head.decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip() for k, _, v in
                           (h.partition(":") for h in rest if h)}
                body = b""
                if self.read_body and int(headers.get("content-length", "0")):
                    body = await reader.readexactly(int(headers["content-length"]))
                request = Request(line, headers, body)
                self.requests.append(request)
                if not await self.reply(writer, request):
                    return
        except (ConnectionError, asyncio.CancelledError):
            return
        finally:
            writer.close()


def answer(raw: bytes, keep: bool = True) -> Reply:
    async def reply(writer: asyncio.StreamWriter, request: Request) -> bool:
        writer.write(raw)
        await writer.drain()
        return keep

    return reply


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: \"e1\"\r\nx-ms-meta-Digest: abc\r\n\r\nhello"


async def test_content_length_body_and_keep_alive() -> None:
    async with Server(answer(OK)) as server:
        pool = HttpPool(server.origin)
        first = await pool.request("GET", "/a/b?x=1", {"x-ms-version": "v"})
        second = await pool.request("PUT", "/a/c", {}, b"payload")
        await pool.close()
    assert (first.status, first.reason, bytes(first.body)) == (200, "OK", b"hello")
    assert first.headers.get("etag") == '"e1"' and first.headers["ETAG"] == '"e1"'
    assert ("x-ms-meta-Digest", "abc") in first.headers.items()  # the sent case is kept
    assert second.status == 200 and server.connections == 1
    get, put = server.requests
    assert get.line == "GET /a/b?x=1 HTTP/1.1" and get.headers["x-ms-version"] == "v"
    assert get.headers["host"] == server.origin.split("//")[1] and "content-length" not in get.headers
    assert put.headers["content-length"] == "7" and put.body == b"payload"


async def test_chunked_body_split_in_pieces() -> None:
    async def reply(writer: asyncio.StreamWriter, request: Request) -> bool:
        parts = [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b"5;ext=1\r\nhel",
                 b"lo\r\n", b"6\r\n world\r\n0\r\n", b"Trailer: x\r\n", b"\r\n"]
        for part in parts:
            writer.write(part)
            await writer.drain()
            await asyncio.sleep(0.01)
        return True

    async with Server(reply) as server:
        pool = HttpPool(server.origin)
        got = await pool.request("GET", "/", {})
        again = await pool.request("GET", "/", {})
        await pool.close()
    assert bytes(got.body) == b"hello world" == bytes(again.body)
    assert server.connections == 1


async def test_head_204_and_interim_answers_have_no_body() -> None:
    replies = iter([b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n",
                    b"HTTP/1.1 204 No Content\r\n\r\n",
                    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"])

    async def reply(writer: asyncio.StreamWriter, request: Request) -> bool:
        writer.write(next(replies))
        return True

    async with Server(reply) as server:
        pool = HttpPool(server.origin)
        head = await pool.request("HEAD", "/x", {})
        empty = await pool.request("DELETE", "/x", {})
        created = await pool.request("PUT", "/x", {}, b"")
        await pool.close()
    assert (head.status, head.headers.get("content-length"), bytes(head.body)) == (200, "1234", b"")
    assert (empty.status, bytes(empty.body)) == (204, b"")
    assert (created.status, bytes(created.body)) == (201, b"ok")
    assert server.connections == 1 and server.requests[2].headers["content-length"] == "0"


async def test_body_until_close_and_connection_close_are_not_reused() -> None:
    replies = iter([(b"HTTP/1.1 200 OK\r\n\r\nall of it", False),
                    (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabc", False),
                    (OK, True)])

    async def reply(writer: asyncio.StreamWriter, request: Request) -> bool:
        raw, keep = next(replies)
        writer.write(raw)
        await writer.drain()
        return keep

    async with Server(reply) as server:
        pool = HttpPool(server.origin)
        bodies = [bytes((await pool.request("GET", "/", {})).body) for _ in range(3)]
        await pool.close()
    assert bodies == [b"all of it", b"abc", b"hello"]
    assert server.connections == 3


class SlowSink:
    """A BodySink with room for ``room`` bytes at a time, freed ``delay`` seconds after they landed."""

    def __init__(self, room: int, delay: float = 0.0, refuse: bool = False):
        self.room, self.delay, self.refuse = room, delay, refuse
        self.got = bytearray()
        self.started: int | None = None
        self.held = 0
        self.paused = 0
        self.wake: Callable[[], None] | None = None
        self._buf = bytearray(room)

    def start(self, length: int) -> None:
        if self.refuse:
            raise ValueError(f"refused {length} bytes")
        self.started = length

    def buffer(self, wake: Callable[[], None]) -> memoryview | None:
        if self.held >= self.room:
            self.paused += 1
            self.wake = wake
            return None
        return memoryview(self._buf)[:self.room - self.held]

    def received(self, nbytes: int) -> None:
        self.got += self._buf[:nbytes]
        self.held += nbytes
        asyncio.get_running_loop().call_later(self.delay, self._free, nbytes)

    def _free(self, nbytes: int) -> None:
        self.held -= nbytes
        wake, self.wake = self.wake, None
        if wake is not None:
            wake()


async def test_body_streamed_into_a_sink_that_pauses_the_read() -> None:
    big = bytes(range(256)) * 8192  # 2 MiB, far more than the sink holds
    head = f"HTTP/1.1 206 Partial\r\nContent-Length: {len(big)}\r\n\r\n".encode()
    replies = iter([head + big, OK])

    async def reply(writer: asyncio.StreamWriter, request: Request) -> bool:
        writer.write(next(replies))
        await writer.drain()
        return True

    async with Server(reply) as server:
        pool = HttpPool(server.origin, read_timeout=0.5)
        sink = SlowSink(64 * 1024, delay=0.02)  # paused for ~0.6 s in all, each pause < 0.5 s
        streamed = await pool.request("GET", "/", {}, sink=sink)
        after = await pool.request("GET", "/", {})  # the same connection reads again
        await pool.close()
    assert streamed.status == 206 and streamed.body == b"" and sink.started == len(big)
    assert bytes(sink.got) == big and sink.paused > 0
    assert bytes(after.body) == b"hello" and server.connections == 1


async def test_a_sink_gets_only_success_bodies_and_may_refuse_them() -> None:
    missing = b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot there"
    async with Server(answer(missing)) as server:
        pool = HttpPool(server.origin)
        sink = SlowSink(4)
        got = await pool.request("GET", "/", {}, sink=sink)
        await pool.close()
    assert got.status == 404 and bytes(got.body) == b"not there" and sink.started is None
    async with Server(answer(OK)) as server:
        pool = HttpPool(server.origin)
        with pytest.raises(ValueError, match="refused 5 bytes"):
            await pool.request("GET", "/", {}, sink=SlowSink(4, refuse=True))
        again = await pool.request("GET", "/", {})  # a new connection: the refused body was never read
        await pool.close()
    assert bytes(again.body) == b"hello" and server.connections == 2
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    async with Server(answer(chunked)) as server:
        pool = HttpPool(server.origin)
        with pytest.raises(ConnectionError, match="without Content-Length"):
            await pool.request("GET", "/", {}, sink=SlowSink(4))
        await pool.close()


async def test_cut_body_and_silent_hangup_are_connection_errors() -> None:
    async with Server(answer(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", keep=False)) as server:
        pool = HttpPool(server.origin)
        with pytest.raises(IncompleteBody, match="3 of 10"):
            await pool.request("GET", "/", {})
        await pool.close()
    async with Server(answer(b"", keep=False)) as server:
        pool = HttpPool(server.origin)
        with pytest.raises(ConnectionError):
            await pool.request("GET", "/", {})
        await pool.close()
    async with Server(answer(b"garbage\r\n\r\n", keep=False)) as server:
        pool = HttpPool(server.origin)
        with pytest.raises(ConnectionError, match="bad HTTP answer"):
            await pool.request("GET", "/", {})
        await pool.close()


async def test_read_timeout_and_connect_failure() -> None:
    async def never(writer: asyncio.StreamWriter, request: Request) -> bool:
        await asyncio.sleep(30)
        return False

    async with Server(never) as server:
        pool = HttpPool(server.origin, read_timeout=0.2)
        with pytest.raises(asyncio.TimeoutError, match="no data for 0.2 s"):
            await asyncio.wait_for(pool.request("GET", "/", {}), 5)
        await pool.close()
        origin = server.origin
    pool = HttpPool(origin)  # the server is gone: nothing listens there now
    with pytest.raises(ConnectionError):
        await pool.request("GET", "/", {})
    await pool.close()


async def test_large_body_goes_out_whole_and_early_answers_end_the_connection() -> None:
    body = bytes(range(256)) * (3 * 4096 + 7)  # ~3 MiB: written in slices
    async with Server(answer(OK)) as server:
        pool = HttpPool(server.origin)
        got = await pool.request("PUT", "/big", {}, memoryview(body))
        await pool.close()
    assert got.status == 200 and server.requests[0].body == body

    async with Server(answer(b"HTTP/1.1 413 Too Large\r\nContent-Length: 0\r\n\r\n", keep=False),
                      read_body=False) as server:
        pool = HttpPool(server.origin)
        refused = await pool.request("PUT", "/big", {}, body * 4)
        await pool.close()
    assert refused.status == 413 and pool._open == 0


async def test_pool_limit_and_cancellation() -> None:
    async def slow(writer: asyncio.StreamWriter, request: Request) -> bool:
        await asyncio.sleep(0.05)
        writer.write(OK)
        await writer.drain()
        return True

    async with Server(slow) as server:
        pool = HttpPool(server.origin, limit=2)
        results = await asyncio.gather(*(pool.request("GET", f"/{i}", {}) for i in range(6)))
        assert [r.status for r in results] == [200] * 6 and server.connections == 2
        task = asyncio.ensure_future(pool.request("GET", "/cancelled", {}))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pool._open == 1  # the cancelled request's connection was dropped, not pooled
        assert (await pool.request("GET", "/after", {})).status == 200
        await pool.close()
    assert server.connections == 2


async def test_without_keep_alive_each_request_has_its_own_connection() -> None:
    async with Server(answer(OK)) as server:
        pool = HttpPool(server.origin, keep_alive=False)
        for _ in range(3):
            assert (await pool.request("GET", "/", {})).status == 200
        await pool.close()
    assert server.connections == 3 and all(r.headers["connection"] == "close" for r in server.requests)
    assert pool._open == 0


def _certificate(where):  # type: ignore[no-untyped-def]
    """A self-signed certificate for 127.0.0.1: (cert.pem, key.pem)."""
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed to make a test certificate")
async def test_https_answers_stream_into_a_sink_too(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cert, key = _certificate(tmp_path)
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)
    body = bytes(range(256)) * 4096  # 1 MiB: many TLS records
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body

    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(raw)
        await writer.drain()
        await reader.read()
        writer.close()

    server = await asyncio.start_server(reply, "127.0.0.1", 0, ssl=server_side)
    port = server.sockets[0].getsockname()[1]
    client_side = ssl.create_default_context(cafile=str(cert))
    pool = HttpPool(f"https://127.0.0.1:{port}", ssl_context=client_side)
    strict = HttpPool(f"https://127.0.0.1:{port}")  # the system's trust: this certificate is not in it
    sink = SlowSink(64 * 1024, delay=0.005)  # TLS: reading pauses and resumes through SSL
    try:
        got = await pool.request("GET", "/", {}, sink=sink)
        with pytest.raises(ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            await strict.request("GET", "/", {})
    finally:
        await pool.close()
        await strict.close()
        server.close()
    assert got.status == 200 and bytes(sink.got) == body and sink.paused > 0


class TunnelProxy:
    """A tiny HTTP proxy: CONNECT tunnels and absolute-form requests, both piped as bytes
    to the host they name; keeps each request line and Proxy-Authorization seen."""

    def __init__(self, refuse: bool = False):
        self.refuse = refuse
        self.seen: list[tuple[str, str | None]] = []

    async def __aenter__(self) -> "TunnelProxy":
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        line, *rest = head.decode("latin-1").split("\r\n")
        auth = next((h.split(":", 1)[1].strip() for h in rest if h.lower().startswith("proxy-authorization:")),
                    None)
        self.seen.append((line, auth))
        method, target, _ = line.split(" ")
        if self.refuse:
            writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        where = target if method == "CONNECT" else target.split("//", 1)[1].split("/", 1)[0]
        host, port = where.rsplit(":", 1)
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        if method == "CONNECT":
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            up_writer.write(head)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except ConnectionError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def test_plain_http_through_a_proxy_names_the_whole_url(monkeypatch: pytest.MonkeyPatch) -> None:
    async with Server(answer(OK)) as server, TunnelProxy() as proxy:
        monkeypatch.setenv("http_proxy", f"http://us%40er:p%3Ass@127.0.0.1:{proxy.port}")
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)
        pool = HttpPool(server.origin)
        got = await pool.request("GET", "/c/b?x=1", {})
        await pool.close()
    assert bytes(got.body) == b"hello"
    line, auth = proxy.seen[0]
    assert line == f"GET {server.origin}/c/b?x=1 HTTP/1.1"
    assert auth == "Basic " + base64.b64encode(b"us@er:p:ss").decode()


async def test_https_through_a_proxy_tunnel(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = _certificate(tmp_path)
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)

    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            writer.write(OK)
            await writer.drain()
        writer.close()

    origin = await asyncio.start_server(reply, "127.0.0.1", 0, ssl=server_side)
    port = origin.sockets[0].getsockname()[1]
    async with TunnelProxy() as proxy:
        monkeypatch.setenv("https_proxy", f"127.0.0.1:{proxy.port}")  # no scheme: http:// is meant
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)
        pool = HttpPool(f"https://127.0.0.1:{port}", ssl_context=ssl.create_default_context(cafile=str(cert)))
        try:
            bodies = [bytes((await pool.request("GET", "/", {})).body) for _ in range(2)]
        finally:
            await pool.close()
            origin.close()
    assert bodies == [b"hello", b"hello"]
    assert proxy.seen == [(f"CONNECT 127.0.0.1:{port} HTTP/1.1", None)]  # one tunnel, kept alive


async def test_proxy_settings_no_proxy_refusals_and_bad_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("https_proxy", "http://proxy.example:3128")
    monkeypatch.setenv("no_proxy", "localhost,.internal.example")
    assert proxy_from_env("https", "acct.blob.core.windows.net") == Proxy("proxy.example", 3128, "")
    assert proxy_from_env("https", "store.internal.example") is None
    assert proxy_from_env("http", "acct.blob.core.windows.net") is None  # no http_proxy set
    monkeypatch.setenv("https_proxy", "https://proxy.example:3128")
    with pytest.raises(ConfigError, match="only http:// proxies"):
        proxy_from_env("https", "acct.blob.core.windows.net")
    async with TunnelProxy(refuse=True) as proxy:
        pool = HttpPool("https://127.0.0.1:9", proxy=Proxy("127.0.0.1", proxy.port))
        with pytest.raises(ConnectionError, match="refused the tunnel: HTTP 407"):
            await pool.request("GET", "/", {})
        await pool.close()

"""An asyncio TCP proxy that adds latency, a bandwidth cap and seeded faults.

    proxy = FaultProxy("127.0.0.1", azurite.port, delay_ms=10,
                       faults=FaultConfig(reset_prob=0.05, status_503_prob=0.02), seed=1)
    await proxy.start(); ...; await proxy.stop()      # proxy.port, proxy.stats

    with run_proxy_in_thread("127.0.0.1", port, delay_ms=10) as proxy: ...   # sync code

    python -m benchmarks.proxy --listen-port 0 --target-port 10000 --delay-ms 10

Latency: every chunk read from one side is queued with ``arrival + delay`` and
written to the other side when due, so order is kept and delays overlap (the
throughput is not capped at one chunk per delay). ``delay_ms`` applies to each
direction: 10 ms gives a 20 ms round trip. The optional bandwidth cap
(``bandwidth_bps``, bits per second) is a token bucket per direction shared by
all connections, like one full-duplex link.

Faults are chosen once per accepted connection from a generator seeded with
``(seed, connection number)``: an abrupt reset (SO_LINGER 0) after N forwarded
bytes; a 503 or 429 with ``Retry-After`` sent by the proxy itself in answer to
the first request (never forwarded); or a response whose body is cut short.
Throttling (``throttle_over=N``): the proxy speaks HTTP/1.1 itself, one request
at a time per connection, and answers ``503 ServerBusy`` with ``Retry-After`` (not
forwarded) to every request that arrives while N requests are already in flight, the
way a storage account sheds load; ``stats.faults["throttled"]`` counts them.
The proxy listens on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Iterator

from benchmarks.proxy_http import MAX_HEAD, RequestTracker, ResponseCutter, parse_head, status_response

CHUNK = 64 * 1024
QUEUE_CHUNKS = 128  # up to 8 MiB buffered per direction and connection
FAULT_KINDS = ("reset", "503", "429", "truncate")


@dataclass(frozen=True)
class FaultConfig:
    """Probabilities (per connection) of each fault; they must sum to at most 1."""

    reset_prob: float = 0.0
    reset_after: tuple[int, int] = (0, 256 * 1024)  # N drawn uniformly from this range
    status_503_prob: float = 0.0
    status_429_prob: float = 0.0
    truncate_prob: float = 0.0
    retry_after: int = 1

    def __post_init__(self) -> None:
        probs = (self.reset_prob, self.status_503_prob, self.status_429_prob, self.truncate_prob)
        if any(p < 0 for p in probs) or sum(probs) > 1.0 + 1e-9:
            raise ValueError(f"fault probabilities must be >= 0 and sum to <= 1, got {probs}")

    def choose(self, rng: random.Random) -> str | None:
        """Draw the fault kind for one connection (None: a clean connection)."""
        r = rng.random()
        for kind, p in zip(FAULT_KINDS, (self.reset_prob, self.status_503_prob,
                                         self.status_429_prob, self.truncate_prob)):
            if r < p:
                return kind
            r -= p
        return None


@dataclass
class ProxyStats:
    """Counters, readable from any thread while the proxy runs."""

    connections: int = 0
    bytes_up: int = 0  # client -> target
    bytes_down: int = 0  # target -> client
    faults: collections.Counter = field(default_factory=collections.Counter)

    def as_dict(self) -> dict:
        return {"connections": self.connections, "bytes_up": self.bytes_up,
                "bytes_down": self.bytes_down, "faults": dict(self.faults)}


class TokenBucket:
    """Paces writers to ``rate`` bytes/s in aggregate; debt turns into sleep."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(CHUNK, rate * 0.02)
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    async def take(self, n: int) -> None:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate) - n
        self.stamp = now
        if self.tokens < 0:
            await asyncio.sleep(-self.tokens / self.rate)


class _Abort(Exception):
    """Raised inside a pump to end the connection (reset or cut)."""

    def __init__(self, graceful: bool) -> None:
        super().__init__("abort")
        self.graceful = graceful


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close abruptly: SO_LINGER 0 makes the kernel send RST instead of FIN."""
    sock = writer.get_extra_info("socket")
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Connection:
    """One proxied connection: two delayed pumps and the fault that applies to it."""

    def __init__(self, proxy: "FaultProxy", kind: str | None, rng: random.Random) -> None:
        self.proxy = proxy
        self.kind = kind
        self.reset_budget = rng.randint(*proxy.faults.reset_after) if kind == "reset" else None
        self.requests = RequestTracker() if kind == "truncate" else None
        self.cutter = ResponseCutter(self.requests) if self.requests else None

    def filter(self, upstream: bool, data: bytes) -> bytes:
        """Apply this connection's fault to a chunk; raises _Abort after forwarding a part."""
        stats = self.proxy.stats
        if self.reset_budget is not None:
            if len(data) >= self.reset_budget:
                self.pending, self.reset_budget = data[:self.reset_budget], None
                stats.faults["reset"] += 1
                raise _Abort(graceful=False)
            self.reset_budget -= len(data)
        if self.requests is not None and upstream:
            self.requests.feed(data)
        if self.cutter is not None and not upstream:
            data, cut = self.cutter.feed(data)
            if cut:
                self.pending, self.cutter = data, None
                stats.faults["truncate"] += 1
                raise _Abort(graceful=True)
        return data

    async def pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                   upstream: bool) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue(QUEUE_CHUNKS)
        delay = self.proxy.delay

        async def read_side() -> None:
            while True:
                data = await reader.read(CHUNK)
                await queue.put((loop.time() + delay, data))
                if not data:
                    return

        reading = asyncio.ensure_future(read_side())
        try:
            while True:
                due, data = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                try:
                    data = self.filter(upstream, data)
                except _Abort:
                    writer.write(self.pending)
                    raise
                bucket = self.proxy.buckets[0 if upstream else 1]
                if bucket is not None:
                    await bucket.take(len(data))
                writer.write(data)
                if upstream:
                    self.proxy.stats.bytes_up += len(data)
                else:
                    self.proxy.stats.bytes_down += len(data)
                await writer.drain()
        finally:
            reading.cancel()
            with contextlib.suppress(BaseException):
                await reading


class FaultProxy:
    """A TCP proxy on 127.0.0.1 in front of ``target_host:target_port``."""

    def __init__(self, target_host: str, target_port: int, *, delay_ms: float = 0,
                 bandwidth_bps: float | None = None, faults: FaultConfig | None = None,
                 seed: int = 0, listen_port: int = 0, throttle_over: int | None = None) -> None:
        self.target = (target_host, target_port)
        self.throttle_over = throttle_over
        self.in_flight = 0
        self.delay = delay_ms / 1000.0
        self.bandwidth_bps = bandwidth_bps
        self.faults = faults or FaultConfig()
        self.seed = seed
        self.listen_port = listen_port
        self.stats = ProxyStats()
        self.buckets: tuple[TokenBucket | None, TokenBucket | None] = (None, None)
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("proxy not started")
        return self._server.sockets[0].getsockname()[1]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> "FaultProxy":
        if self.bandwidth_bps:
            self.buckets = (TokenBucket(self.bandwidth_bps / 8), TokenBucket(self.bandwidth_bps / 8))
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.listen_port,
                                                  limit=CHUNK * 4)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def __aenter__(self) -> "FaultProxy":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _accept(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            await self._serve(creader, cwriter)
        except (asyncio.CancelledError, Exception):
            _reset(cwriter)
        finally:
            self._tasks.discard(task)

    async def _serve(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        number = self.stats.connections
        self.stats.connections += 1
        rng = random.Random(self.seed * 1_000_003 + number)
        if self.throttle_over is not None:
            await self._serve_throttled(creader, cwriter)
            return
        kind = self.faults.choose(rng)
        if kind in ("503", "429"):
            await self._answer_status(creader, cwriter, int(kind))
            return
        try:
            sreader, swriter = await asyncio.open_connection(*self.target, limit=CHUNK * 4)
        except OSError:
            _reset(cwriter)
            return
        conn = _Connection(self, kind, rng)
        pumps = [asyncio.ensure_future(conn.pump(creader, swriter, True)),
                 asyncio.ensure_future(conn.pump(sreader, cwriter, False))]
        try:
            for done in asyncio.as_completed(pumps):
                await done  # a clean EOF on one side half-closes; wait for the other
            cwriter.close()
            swriter.close()
        except _Abort as abort:
            if abort.graceful:
                cwriter.close()
                swriter.transport.abort()
            else:
                _reset(cwriter)
                _reset(swriter)
        except (OSError, asyncio.IncompleteReadError):
            _reset(cwriter)
            _reset(swriter)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)

    async def _serve_throttled(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        """Relay whole requests and responses, shedding those over the in-flight limit."""
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while True:
                try:
                    raw = await creader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    return
                head = parse_head(raw[:-4][:MAX_HEAD])
                body = await creader.readexactly(head.content_length or 0)
                if self.in_flight >= (self.throttle_over or 0):
                    await asyncio.sleep(2 * self.delay)
                    self.stats.faults["throttled"] += 1
                    cwriter.write(status_response(503, self.faults.retry_after, close=False))
                    await cwriter.drain()
                    continue
                self.in_flight += 1
                try:
                    if upstream is None:
                        upstream = await asyncio.open_connection(*self.target, limit=CHUNK * 4)
                    await asyncio.sleep(self.delay)
                    upstream[1].write(raw + body)
                    self.stats.bytes_up += len(raw) + len(body)
                    response = await _read_response(upstream[0], head.first_line.startswith("HEAD "))
                    await asyncio.sleep(self.delay)
                finally:
                    self.in_flight -= 1
                cwriter.write(response)
                self.stats.bytes_down += len(response)
                await cwriter.drain()
        finally:
            if upstream is not None:
                upstream[1].close()
            cwriter.close()

    async def _answer_status(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                             status: int) -> None:
        """Read the first request (head and body), answer it with ``status``, close."""
        try:
            raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError):
            writer.close()
            return
        head = parse_head(raw[:-4][:MAX_HEAD])
        left = head.content_length or 0
        while left > 0:
            data = await asyncio.wait_for(reader.read(min(CHUNK, left)), 30)
            if not data:
                break
            left -= len(data)
        await asyncio.sleep(2 * self.delay)
        self.stats.faults[str(status)] += 1
        writer.write(status_response(status, self.faults.retry_after))
        with contextlib.suppress(OSError):
            await writer.drain()
        writer.close()


async def _read_response(reader: asyncio.StreamReader, head_only: bool) -> bytes:
    """One whole HTTP/1.1 response (head and body: Content-Length or chunked)."""
    raw = await reader.readuntil(b"\r\n\r\n")
    head = parse_head(raw[:-4])
    status = head.first_line.split(" ", 2)[1] if " " in head.first_line else "200"
    if head_only or status in ("204", "304") or status.startswith("1"):
        return raw
    if head.chunked:
        parts = [raw]
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0].strip(), 16)
            parts += [size_line, await reader.readexactly(size + 2)]
            if size == 0:
                return b"".join(parts)
    return raw + await reader.readexactly(head.content_length or 0)


class ThreadedProxy:
    """A FaultProxy running on its own event loop in a daemon thread."""

    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fault-proxy", daemon=True)

    @property
    def port(self) -> int:
        return self.proxy.port

    @property
    def endpoint(self) -> str:
        return self.proxy.endpoint

    @property
    def stats(self) -> ProxyStats:
        return self.proxy.stats

    def start(self) -> "ThreadedProxy":
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.proxy.start(), self.loop).result(10)
        return self

    def stop(self) -> None:
        if not self.thread.is_alive():
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self.proxy.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        if not self.thread.is_alive():
            self.loop.close()


@contextlib.contextmanager
def run_proxy_in_thread(target_host: str, target_port: int, **kwargs) -> Iterator[ThreadedProxy]:
    """Run a FaultProxy (same keyword arguments) in a background thread for sync code."""
    runner = ThreadedProxy(FaultProxy(target_host, target_port, **kwargs)).start()
    try:
        yield runner
    finally:
        runner.stop()


@contextlib.contextmanager
def proxy_pool() -> Iterator:
    """A factory for pytest fixtures: ``start(target_port, **kw)`` -> ThreadedProxy.

        @pytest.fixture
        def fault_proxy():
            with proxy_pool() as start:
                yield start

    Every proxy started through the factory is stopped when the block ends.
    """
    started: list[ThreadedProxy] = []

    def start(target_port: int, target_host: str = "127.0.0.1", **kwargs) -> ThreadedProxy:
        runner = ThreadedProxy(FaultProxy(target_host, target_port, **kwargs)).start()
        started.append(runner)
        return runner

    try:
        yield start
    finally:
        for runner in started:
            runner.stop()


if __name__ == "__main__":
    from benchmarks.proxy_cli import main

    sys.exit(main())

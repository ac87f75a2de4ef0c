"""The fault proxy: latency per direction, order, bandwidth, seeded faults, CLI."""

from __future__ import annotations

import asyncio
import http.client
import http.server
import os
import random
import subprocess
import sys
import threading
import time

import pytest

from benchmarks.proxy import FaultConfig, FaultProxy, run_proxy_in_thread

BODY = os.urandom(200_000)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[str] = []

    def _head(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()

    def do_HEAD(self) -> None:  # noqa: N802 - http.server naming
        self.seen.append("HEAD " + self.path)
        self._head()

    def do_GET(self) -> None:  # noqa: N802
        self.seen.append("GET " + self.path)
        self._head()
        self.wfile.write(BODY)

    def do_PUT(self) -> None:  # noqa: N802
        length = int(self.headers["Content-Length"])
        data = self.rfile.read(length)
        self.seen.append(f"PUT {self.path} {len(data)}")
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # resets injected by the proxy are expected here


@pytest.fixture
def http_backend():
    """A tiny HTTP/1.1 keep-alive server on 127.0.0.1 (port, list of requests it saw)."""
    _Handler.seen = []
    server = _QuietServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], _Handler.seen
    server.shutdown()
    server.server_close()


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


async def test_delay_is_per_direction_ordered_and_not_serialised() -> None:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with FaultProxy("127.0.0.1", port, delay_ms=50) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        start = time.monotonic()
        writer.write(b"ping")
        assert await reader.readexactly(4) == b"ping"
        rtt = time.monotonic() - start
        assert rtt >= 0.095  # 50 ms each way

        chunks = [bytes([i]) * 1000 for i in range(40)]
        start = time.monotonic()
        for chunk in chunks:  # 40 writes 5 ms apart: 200 ms of sending
            writer.write(chunk)
            await writer.drain()
            await asyncio.sleep(0.005)
        echoed = await reader.readexactly(40_000)
        elapsed = time.monotonic() - start
        assert echoed == b"".join(chunks)  # order kept
        assert elapsed >= 0.2 + 0.095
        assert elapsed < 40 * 0.1  # serialised delays would take 4 s
        writer.close()
        assert proxy.stats.connections == 1
    server.close()


async def test_bandwidth_cap_paces_the_stream() -> None:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with FaultProxy("127.0.0.1", port, bandwidth_bps=8_000_000) as proxy:  # 1 MB/s
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        payload = os.urandom(600_000)
        start = time.monotonic()
        writer.write(payload)
        assert await reader.readexactly(len(payload)) == payload
        assert time.monotonic() - start >= 0.5
        writer.close()
    server.close()


@pytest.mark.parametrize("status", [503, 429])
def test_status_fault_answers_without_forwarding(http_backend, fault_proxy, status: int) -> None:
    port, seen = http_backend
    key = "status_503_prob" if status == 503 else "status_429_prob"
    proxy = fault_proxy(port, faults=FaultConfig(**{key: 1.0}))
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    conn.request("PUT", "/blob", body=b"x" * 100_000)
    resp = conn.getresponse()
    assert resp.status == status
    assert resp.getheader("Retry-After") == "1"
    resp.read()
    conn.close()
    assert seen == []
    assert proxy.stats.faults[str(status)] == 1


def test_truncate_cuts_the_first_body_after_a_bodiless_response(http_backend, fault_proxy) -> None:
    port, seen = http_backend
    proxy = fault_proxy(port, faults=FaultConfig(truncate_prob=1.0))
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    conn.request("HEAD", "/a")
    head = conn.getresponse()
    head.read()
    assert head.status == 200 and head.getheader("Content-Length") == str(len(BODY))
    conn.request("GET", "/a")
    resp = conn.getresponse()
    with pytest.raises(http.client.IncompleteRead) as info:
        resp.read()
    assert 0 < len(info.value.partial) < len(BODY)
    assert info.value.partial == BODY[:len(info.value.partial)]
    assert proxy.stats.faults["truncate"] == 1
    assert seen == ["HEAD /a", "GET /a"]


def test_reset_after_n_bytes(http_backend, fault_proxy) -> None:
    port, _ = http_backend
    proxy = fault_proxy(port, faults=FaultConfig(reset_prob=1.0, reset_after=(50_000, 50_000)))
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    with pytest.raises((ConnectionError, http.client.HTTPException)):
        conn.request("GET", "/big")
        conn.getresponse().read()
    conn.close()
    assert proxy.stats.faults["reset"] == 1
    assert proxy.stats.bytes_down < 50_000


def test_clean_connections_pass_everything(http_backend, fault_proxy) -> None:
    port, seen = http_backend
    proxy = fault_proxy(port, delay_ms=2)
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    for i in range(5):
        conn.request("GET", f"/{i}")
        assert conn.getresponse().read() == BODY
    conn.request("PUT", "/p", body=b"y" * 70_000)
    assert conn.getresponse().status == 201
    conn.close()
    assert proxy.stats.connections == 1 and not proxy.stats.faults
    assert seen[-1] == "PUT /p 70000"


def test_fault_choice_is_seeded_and_follows_probabilities() -> None:
    cfg = FaultConfig(reset_prob=0.1, status_503_prob=0.1, status_429_prob=0.1, truncate_prob=0.1)
    draws = [cfg.choose(random.Random(7 * 1_000_003 + n)) for n in range(2000)]
    again = [cfg.choose(random.Random(7 * 1_000_003 + n)) for n in range(2000)]
    assert draws == again
    for kind in ("reset", "503", "429", "truncate"):
        assert 120 < draws.count(kind) < 280
    assert 1000 < draws.count(None) < 1400
    with pytest.raises(ValueError):
        FaultConfig(reset_prob=0.7, truncate_prob=0.5)


def test_faulty_connections_are_seeded_per_connection(http_backend) -> None:
    port, _ = http_backend
    outcomes = []
    for _ in range(2):
        with run_proxy_in_thread("127.0.0.1", port, seed=11,
                                 faults=FaultConfig(status_503_prob=0.5)) as proxy:
            statuses = []
            for i in range(12):
                conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
                conn.request("GET", f"/{i}")
                resp = conn.getresponse()
                resp.read()
                statuses.append(resp.status)
                conn.close()
            outcomes.append(statuses)
    assert outcomes[0] == outcomes[1]
    assert set(outcomes[0]) == {200, 503}


def test_cli_prints_port_and_stops_on_sigterm(http_backend) -> None:
    port, _ = http_backend
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.proxy", "--listen-port", "0",
                             "--target-port", str(port), "--delay-ms", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("listening on 127.0.0.1:")
        listen = int(line.rsplit(":", 1)[1])
        conn = http.client.HTTPConnection("127.0.0.1", listen, timeout=10)
        conn.request("GET", "/x")
        assert conn.getresponse().read() == BODY
        conn.close()
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert '"connections": 1' in err


def test_cli_rejects_bad_probabilities() -> None:
    proc = subprocess.run([sys.executable, "-m", "benchmarks.proxy", "--target-port", "1",
                           "--reset-prob", "0.8", "--truncate-prob", "0.8"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: fault probabilities")
    assert "Traceback" not in proc.stderr


@pytest.mark.azurite
async def test_azure_sdk_through_delayed_proxy(azurite) -> None:
    from azure.storage.blob.aio import BlobServiceClient

    from benchmarks.azurite import connection_string_for

    async with FaultProxy("127.0.0.1", azurite.port, delay_ms=5) as proxy:
        cs = connection_string_for(f"{proxy.endpoint}/devstoreaccount1")
        async with BlobServiceClient.from_connection_string(cs) as service:
            container = service.get_container_client("p" + os.urandom(6).hex())
            await container.create_container()
            blobs = {f"d/{i}": os.urandom(10_000 + i) for i in range(20)}
            await asyncio.gather(*(container.upload_blob(k, v) for k, v in blobs.items()))
            for name, data in blobs.items():
                assert await (await container.download_blob(name)).readall() == data
        assert proxy.stats.connections >= 1
        assert proxy.stats.bytes_up > sum(map(len, blobs.values()))


def test_throttle_mode_sheds_requests_beyond_the_in_flight_limit(http_backend) -> None:
    """With throttle_over=2 and 40 ms per request, of 6 simultaneous requests some get
    503 + Retry-After (never forwarded); requests one at a time all pass, keep-alive."""
    from benchmarks.proxy import run_proxy_in_thread

    port, seen = http_backend
    with run_proxy_in_thread("127.0.0.1", port, delay_ms=20, throttle_over=2) as proxy:
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
        for i in range(3):  # sequential: never more than one in flight
            conn.request("GET", f"/seq{i}")
            resp = conn.getresponse()
            assert resp.status == 200 and resp.read() == BODY
            conn.request("HEAD", f"/seq{i}")
            head = conn.getresponse()
            assert head.status == 200 and head.read() == b""
        conn.close()
        assert proxy.stats.faults["throttled"] == 0

        statuses: list[tuple[int, str | None]] = []

        def one(i: int) -> None:
            c = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
            c.request("PUT", f"/par{i}", body=b"x" * 1000)
            r = c.getresponse()
            r.read()
            statuses.append((r.status, r.getheader("Retry-After")))
            c.close()

        threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        shed = [s for s in statuses if s[0] == 503]
        assert len(statuses) == 6 and shed and all(r == "1" for _, r in shed)
        assert proxy.stats.faults["throttled"] == len(shed)
        forwarded = [s for s in seen if s.startswith("PUT /par")]
        assert len(forwarded) == 6 - len(shed) and len(forwarded) >= 2

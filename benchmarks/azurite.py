"""Start and stop a private Azurite blob emulator on a free loopback port.

Used by the test suite (a session fixture) and by the benchmark runner.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

ACCOUNT = "devstoreaccount1"
# Azurite's well-known development key (public, documented by Microsoft).
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def endpoint_for(port: int, host: str = "127.0.0.1", scheme: str = "http") -> str:
    return f"{scheme}://{host}:{port}/{ACCOUNT}"


def endpoint_with_latency(stack: contextlib.ExitStack, port: int, latency_ms: float) -> str:
    """The endpoint of the emulator on ``port``, behind a latency proxy (``latency_ms`` each
    way, closed with ``stack``) when ``latency_ms`` > 0."""
    if latency_ms > 0:
        from benchmarks.proxy import run_proxy_in_thread

        port = stack.enter_context(run_proxy_in_thread("127.0.0.1", port, delay_ms=latency_ms)).port
    return endpoint_for(port)


def connection_string_for(endpoint: str) -> str:
    return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
            f"BlobEndpoint={endpoint};")


def account_sas(hours: float = 6.0) -> str:
    """An account SAS token of the emulator's account (every resource type and the
    permissions a sync needs), valid for ``hours``."""
    from azure.storage.blob import AccountSasPermissions, ResourceTypes, generate_account_sas

    return generate_account_sas(
        ACCOUNT, KEY, ResourceTypes(service=True, container=True, object=True),
        AccountSasPermissions(read=True, write=True, delete=True, list=True, add=True, create=True),
        expiry=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=hours))


def container_sas(container: str, hours: float = 1.0) -> str:
    """A container SAS token of the emulator's account (read, write, list, create, add,
    delete), valid for ``hours``."""
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    return generate_container_sas(
        ACCOUNT, container, account_key=KEY,
        permission=ContainerSasPermissions(read=True, write=True, list=True, create=True, add=True, delete=True),
        expiry=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=hours))


@dataclass
class Azurite:
    """A running Azurite: its port, endpoint, connection string and process."""

    port: int
    location: str
    process: subprocess.Popen
    scheme: str = "http"
    """``https`` when started with a certificate."""

    @property
    def endpoint(self) -> str:
        return endpoint_for(self.port, scheme=self.scheme)

    @property
    def connection_string(self) -> str:
        return connection_string_for(self.endpoint)

    def env(self, container: str | None = None) -> dict[str, str]:
        """Environment variables that point luisy/luisy_sync at this Azurite."""
        out = {
            "AZURE_STORAGE_CONNECTION_STRING": self.connection_string,
            "LUISY_AZURE_ACCOUNT_NAME": ACCOUNT,
            "LUISY_AZURE_STORAGE_KEY": KEY,
            "LUISY_AZURE_ENDPOINT": self.endpoint,
        }
        if container:
            out["LUISY_AZURE_CONTAINER_NAME"] = container
        return out

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.location, ignore_errors=True)

    def __enter__(self) -> "Azurite":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


WARM_UP_BLOBS = 200


def warm_up(endpoint: str) -> None:
    """Put, list, read and delete some blobs (small ones, and one of staged blocks): a
    just-started Azurite runs its first few hundred requests slower (its JavaScript is
    not compiled yet), which would count against whichever client comes first."""
    from concurrent.futures import ThreadPoolExecutor

    from azure.storage.blob import BlobServiceClient

    with BlobServiceClient.from_connection_string(connection_string_for(endpoint)) as service:
        container = service.create_container("warm-up")
        small = os.urandom(64 * 1024)

        def one(i: int) -> None:
            blob = container.get_blob_client(f"w/{i}")
            blob.upload_blob(small, overwrite=True)
            blob.download_blob().readall()

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(one, range(WARM_UP_BLOBS)))
        big = container.get_blob_client("big")
        big.upload_blob(os.urandom(16 << 20), overwrite=True, max_concurrency=4)
        big.download_blob(max_concurrency=4).readall()
        sum(1 for _ in container.list_blobs())
        service.delete_container("warm-up")


class FreshAzurite:
    """An Azurite that can be replaced by an empty one on the same port (so proxies in
    front of it keep working): ``renew()`` stops the running one, removes its data and
    starts another."""

    def __init__(self) -> None:
        self.current = start_azurite()

    @property
    def port(self) -> int:
        return self.current.port

    @property
    def endpoint(self) -> str:
        return self.current.endpoint

    def renew(self) -> None:
        port = self.current.port
        self.current.stop()
        self.current = start_azurite(port)
        warm_up(self.current.endpoint)

    def stop(self) -> None:
        self.current.stop()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: SIGTERM the emulator when the process that started it dies (even by SIGKILL)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def azurite_binary() -> str | None:
    return shutil.which("azurite-blob")


def start_azurite(port: int | None = None, timeout: float = 30.0, *,
                  tls: tuple[str, str] | None = None, oauth: bool = False) -> Azurite:
    """Start azurite-blob on 127.0.0.1 and wait until it accepts connections.

    ``tls``: (certificate PEM, key PEM) to serve https; ``oauth``: accept Azure AD bearer
    tokens too (Azurite's ``--oauth basic``: a token's issuer, audience and times are
    checked, not its signature; needs ``tls``)."""
    if oauth and tls is None:
        raise ValueError("Azurite accepts OAuth tokens over https only: pass tls=(cert, key)")
    binary = azurite_binary()
    if binary is None:
        raise RuntimeError("azurite-blob not found: install it with `npm install -g azurite@3.35.0`")
    port = port or free_port()
    location = tempfile.mkdtemp(prefix="azurite-")
    cmd = [binary, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", location,
           "--skipApiVersionCheck", "--loose", "--silent", "--disableTelemetry"]
    if tls is not None:
        cmd += ["--cert", tls[0], "--key", tls[1]]
    if oauth:
        cmd += ["--oauth", "basic"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, start_new_session=True,
                            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise RuntimeError(f"azurite exited early with {proc.returncode}: {err.strip()[:500]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return Azurite(port=port, location=location, process=proc,
                               scheme="https" if tls is not None else "http")
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"azurite did not listen on port {port} within {timeout:.0f}s")


if __name__ == "__main__":  # pragma: no cover - manual helper
    a = start_azurite(int(os.environ.get("PORT", "0")) or None)
    print(a.endpoint, flush=True)
    try:
        a.process.wait()
    except KeyboardInterrupt:
        a.stop()

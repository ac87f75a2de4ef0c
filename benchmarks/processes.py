"""Child processes of the runner: the latency proxy and the per-client workers.

The proxy and the clients run in processes of their own so that they do not share
the runner's interpreter lock with each other (a proxy thread inside the client's
process would slow the client it measures).
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import time

from benchmarks.worker import one_line


class ProxyProcess:
    """``python -m benchmarks.proxy`` in front of ``target_port`` with ``delay_ms`` each way
    (``throttle_over``: 503 + Retry-After beyond that many requests in flight)."""

    def __init__(self, target_port: int, delay_ms: float, throttle_over: int | None = None) -> None:
        self.delay_ms = delay_ms
        throttle = [] if throttle_over is None else ["--throttle-over", str(throttle_over)]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.proxy", "--listen-port", "0",
             "--target-port", str(target_port), "--delay-ms", str(delay_ms), *throttle],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line.startswith("listening on 127.0.0.1:"):
            self.stop()
            raise RuntimeError(f"the proxy did not start: {line.strip() or 'no output'}")
        self.port = int(line.rsplit(":", 1)[1])

    @property
    def endpoint(self) -> str:
        from benchmarks.azurite import endpoint_for

        return endpoint_for(self.port)

    def stop(self) -> dict:
        """Stop the proxy; returns its counters (connections, bytes, faults) when available."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        for line in reversed((err or "").splitlines()):
            if line.startswith("{"):
                return json.loads(line)
        return {}


class Worker:
    """A ``python -m benchmarks.worker`` process that runs jobs one at a time."""

    def __init__(self) -> None:
        self._err = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen([sys.executable, "-m", "benchmarks.worker"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._err, text=True, bufsize=1)

    def run(self, job: dict, timeout: float) -> dict:
        """Send one job and wait for its result; a hang or crash becomes an error result."""
        try:
            self.proc.stdin.write(json.dumps(job) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            return self._failed(f"worker is gone: {one_line(exc)}")
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.close()
                return self._failed(f"timed out after {timeout:.0f} s")
            ready, _, _ = select.select([self.proc.stdout], [], [], min(left, 1.0))
            if ready:
                line = self.proc.stdout.readline()
                if line:
                    return json.loads(line)
                self.proc.wait()
                return self._failed(f"worker died (exit {self.proc.returncode}): {self._stderr_tail()}")

    def _failed(self, error: str) -> dict:
        return {"ok": False, "seconds": None, "error": error, "peak_rss_kib": None}

    def _stderr_tail(self) -> str:
        self._err.seek(0)
        lines = [ln for ln in self._err.read().splitlines() if ln.strip()]
        return lines[-1][:200] if lines else "no output"

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self._err.close()


def remove_tree(path: str) -> None:
    """Remove a directory tree, ignoring what is already gone."""
    import shutil

    if os.path.exists(path):
        shutil.rmtree(path, ignore_errors=True)

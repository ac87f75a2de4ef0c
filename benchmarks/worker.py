"""A benchmark worker process: runs transfer jobs for one client, one JSON line each.

    python -m benchmarks.worker          # jobs on stdin, results on stdout, one JSON line each

A job: ``{"client", "op": "upload"|"download"|"drop", "endpoint", "container",
"dir", "concurrency"}`` and optional ``"options"`` (keyword arguments for the client). ``upload`` creates the (fresh) container first, untimed,
then times the client's upload of ``dir``; ``download`` times the client's
download into ``dir`` (which must be empty), then checks, untimed, that it equals
``verify`` byte for byte; ``drop`` deletes the container. The result carries the
seconds, the client's CPU seconds (user + system, this process and its children)
during them, the error (one line, secrets removed) and the process's peak RSS so far.
Running each W3 job in a fresh worker makes that peak the job's own.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import resource
import sys
import time
from typing import Any

from benchmarks.azurite import KEY
from benchmarks.clients import Target, iter_files, load
from luisy_sync import errors


def reset_peak_rss() -> None:
    """Start a new peak-RSS window for this process (Linux: clear_refs 5 resets VmHWM)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def peak_rss_kib() -> int:
    """Peak resident set size in KiB since ``reset_peak_rss`` (VmHWM; ru_maxrss where
    there is no /proc): this process or, when larger, its largest finished child
    (rclone runs as a child)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        with open("/proc/self/status") as fh:
            own = next(int(ln.split()[1]) for ln in fh if ln.startswith("VmHWM:"))
    except (OSError, StopIteration, ValueError):
        pass
    return max(own, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)


def cpu_seconds() -> float:
    """User + system CPU seconds so far of this process (all threads) and its waited-for
    children (rclone runs as a child)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def one_line(exc: BaseException) -> str:
    """A one-line, secret-free description of an error."""
    line = errors.one_line(exc)
    for secret in (KEY,):
        line = line.replace(secret, "***")
    if "sig=" in line:
        line = line.split("sig=")[0] + "sig=***"
    return line[:240]


def _file_digests(root: str) -> dict[str, tuple[int, str]]:
    import xxhash

    out = {}
    for name, path in iter_files(root):
        h = xxhash.xxh3_128()
        with open(path, "rb") as fh:
            while chunk := fh.read(4 * 1024 * 1024):
                h.update(chunk)
        out[name] = (os.path.getsize(path), h.hexdigest())
    return out


def verify_same(expected_dir: str, actual_dir: str) -> None:
    """Raise if the two trees differ in names, sizes or content."""
    want, got = _file_digests(expected_dir), _file_digests(actual_dir)
    if want != got:
        missing = sorted(set(want) - set(got))[:3]
        extra = sorted(set(got) - set(want))[:3]
        wrong = sorted(n for n in set(want) & set(got) if want[n] != got[n])[:3]
        raise AssertionError(f"download differs: missing {missing} extra {extra} wrong {wrong}")


def _service(endpoint: str):
    from azure.storage.blob import BlobServiceClient

    return BlobServiceClient.from_connection_string(Target(endpoint, "x").connection_string)


def _call(fn: Any, *args: Any, **kwargs: Any) -> None:
    if inspect.iscoroutinefunction(fn):
        asyncio.run(fn(*args, **kwargs))
    else:
        fn(*args, **kwargs)


def run_job(job: dict) -> dict:
    """Run one job; never raises (errors are reported in the result)."""
    result: dict[str, Any] = {"ok": True, "seconds": None, "error": None}
    try:
        from azure.storage.blob import BlobServiceClient  # noqa: F401 - imported before timing

        target = Target(job["endpoint"], job["container"])
        if job["op"] == "drop":
            with _service(target.endpoint) as service:
                service.delete_container(target.container)
            return result
        client = load(job["client"])
        reason = client.unavailable()
        if reason:
            raise RuntimeError(reason)
        if job["op"] == "upload":
            with _service(target.endpoint) as service:
                service.create_container(target.container)
            reset_peak_rss()
            cpu, start = cpu_seconds(), time.perf_counter()
            _call(client.upload, job["dir"], target, job["concurrency"], **job.get("options", {}))
        elif job["op"] == "download":
            os.makedirs(job["dir"], exist_ok=True)
            reset_peak_rss()
            cpu, start = cpu_seconds(), time.perf_counter()
            _call(client.download, target, job["dir"], job["concurrency"], **job.get("options", {}))
        else:
            raise ValueError(f"unknown op {job['op']!r}")
        result["seconds"] = time.perf_counter() - start
        result["cpu_s"] = cpu_seconds() - cpu
        result["peak_rss_kib"] = peak_rss_kib()
        if job["op"] == "download" and job.get("verify"):
            verify_same(job["verify"], job["dir"])
    except BaseException as exc:  # noqa: BLE001 - a worker reports every failure
        result.update(ok=False, error=one_line(exc))
        if isinstance(exc, KeyboardInterrupt):
            raise
    result.setdefault("peak_rss_kib", peak_rss_kib())
    return result


def main() -> int:
    for line in sys.stdin:
        if not line.strip():
            continue
        result = run_job(json.loads(line))
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

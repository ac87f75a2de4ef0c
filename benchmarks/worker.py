"""A benchmark worker process: runs transfer jobs for one client, one JSON line each.

    python -m benchmarks.worker          # jobs on stdin, results on stdout, one JSON line each

A job: ``{"client", "op": "upload"|"download"|"drop", "endpoint", "container",
"dir", "concurrency"}``. ``upload`` creates the (fresh) container first, untimed,
then times the client's upload of ``dir``; ``download`` times the client's
download into ``dir`` (which must be empty), then checks, untimed, that it equals
``verify`` byte for byte; ``drop`` deletes the container. The result carries the
seconds, the error (one line, secrets removed) and the process's peak RSS so far.
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


def peak_rss_kib() -> int:
    """Peak resident set size so far, in KiB (Linux ru_maxrss): this process or, when
    larger, its largest finished child (rclone runs as a child)."""
    return max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
               resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)


def one_line(exc: BaseException) -> str:
    """A one-line, secret-free description of an error."""
    text = str(exc).strip().splitlines()
    line = f"{type(exc).__name__}: {text[0] if text else ''}".strip()
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


def _call(fn: Any, *args: Any) -> None:
    if inspect.iscoroutinefunction(fn):
        asyncio.run(fn(*args))
    else:
        fn(*args)


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
            start = time.perf_counter()
            _call(client.upload, job["dir"], target, job["concurrency"])
        elif job["op"] == "download":
            os.makedirs(job["dir"], exist_ok=True)
            start = time.perf_counter()
            _call(client.download, target, job["dir"], job["concurrency"])
        else:
            raise ValueError(f"unknown op {job['op']!r}")
        result["seconds"] = time.perf_counter() - start
        if job["op"] == "download" and job.get("verify"):
            verify_same(job["verify"], job["dir"])
    except BaseException as exc:  # noqa: BLE001 - a worker reports every failure
        result.update(ok=False, error=one_line(exc))
        if isinstance(exc, KeyboardInterrupt):
            raise
    result["peak_rss_kib"] = peak_rss_kib()
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

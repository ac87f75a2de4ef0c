"""Quick push benchmark: luisy_sync.push against a one-by-one sync Azure SDK loop.

    python -m benchmarks.quick_push [--files 1000 --size 65536 --concurrency 32 --latency-ms 0]

Starts a private Azurite, writes N random files, pushes them into two fresh containers
(once with ``luisy_sync.push``, once with ``BlobClient.upload_blob`` in a loop, which is
what luisy 1.4.7 did) and prints both wall times and the ratio. The luisy_sync time
includes scanning and hashing (no stat cache) and the manifest write. ``--latency-ms``
routes both clients through ``benchmarks.proxy`` adding that delay in each direction
(10 ms ≈ a 20 ms round trip to a cloud region); 0 talks to Azurite directly.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
import uuid

import anyio

from benchmarks.azurite import (ACCOUNT, KEY, connection_string_for, endpoint_with_latency,
                                start_azurite)
from benchmarks.clients.sequential import timed_upload
from luisy_sync import push
from luisy_sync.conventions import format_bytes
from luisy_sync.stores.azure import AzureBlobStore


def make_files(root: str, count: int, size: int) -> list[str]:
    """``count`` files of ``size`` random bytes, 100 per directory; their relative paths."""
    rels = []
    for i in range(count):
        rel = f"d{i // 100:04d}/f{i:06d}.bin"
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(os.urandom(size))
        rels.append(rel)
    return rels


async def push_with_luisy_sync(root: str, endpoint: str, container: str, concurrency: int) -> tuple[float, int]:
    store = AzureBlobStore.from_account_key(ACCOUNT, KEY, container, endpoint=endpoint)
    async with store:
        await store.ensure_container()
        started = time.perf_counter()
        await push(root, store, concurrency=concurrency, cache=False)
        seconds = time.perf_counter() - started
        count = len([o for o in await store.list() if not o.name.startswith(".")])
    return seconds, count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quick_push", description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000, help="number of files (1000)")
    parser.add_argument("--size", type=int, default=65536, help="bytes per file (65536)")
    parser.add_argument("--concurrency", type=int, default=32, help="luisy_sync requests in flight (32)")
    parser.add_argument("--latency-ms", type=float, default=0.0,
                        help="delay added in each direction by a local proxy (0: none)")
    args = parser.parse_args(argv)
    if args.files < 1 or args.size < 0 or args.concurrency < 1:
        print("quick_push: error: --files and --concurrency must be positive, --size non-negative",
              file=sys.stderr)
        return 2

    workdir = tempfile.mkdtemp(prefix="quick-push-")
    azurite = start_azurite()
    try:
        rels = make_files(workdir, args.files, args.size)
        total = args.files * args.size
        with contextlib.ExitStack() as stack:
            endpoint = endpoint_with_latency(stack, azurite.port, args.latency_ms)
            print(f"{args.files} files x {format_bytes(args.size)} = {format_bytes(total)}; "
                  f"Azurite at {endpoint} (+{args.latency_ms:g} ms each way)", flush=True)
            ours, ours_count = anyio.run(push_with_luisy_sync, workdir, endpoint,
                                         "lsync" + uuid.uuid4().hex[:12], args.concurrency)
            sdk, sdk_count = timed_upload(connection_string_for(endpoint),
                                          "sdkloop" + uuid.uuid4().hex[:12],
                                          [(rel, os.path.join(workdir, rel)) for rel in rels])
    finally:
        azurite.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    if ours_count != args.files or sdk_count != args.files:
        print(f"quick_push: error: expected {args.files} blobs, found {ours_count} (luisy_sync) "
              f"and {sdk_count} (SDK loop)", file=sys.stderr)
        return 1
    for label, seconds in (("luisy_sync.push", ours), ("sync SDK loop  ", sdk)):
        print(f"{label}: {seconds:7.2f} s  {args.files / seconds:8.1f} files/s  "
              f"{format_bytes(total / seconds)}/s")
    print(f"speed-up: {sdk / ours:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""luisy run upload benchmark: ``--upload`` of all pipeline outputs through the engine
against a one-by-one sync Azure SDK loop over the same files (what luisy 1.4.7 did).

    python -m benchmarks.luisy_upload [--tasks 200 --size 65536 --latency-ms 10]

Starts a private Azurite behind ``benchmarks.proxy`` (``--latency-ms`` each way), runs a
generated pipeline of ``--tasks`` outputs in a temp working dir, then times
``luisy.cloud.upload`` (scan + concurrent upload + one cloud hash update) and
the SDK loop (one ``upload_blob`` per file into another container). It also runs the
example pipeline with ``--upload`` in one working dir and ``--download`` in a fresh
one and prints how many tasks ran and how many files were downloaded there.
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

import luisy
from benchmarks.azurite import (ACCOUNT, KEY, connection_string_for, endpoint_with_latency,
                                start_azurite)
from benchmarks.clients.sequential import timed_upload
from luisy_sync.conventions import format_bytes

SIZE = int(os.environ.get("LUISY_BENCH_SIZE", "65536"))


@luisy.project_name("luisybench")
@luisy.interim
class Part(luisy.Task):
    """One output of ``SIZE`` random bytes."""

    i = luisy.IntParameter()

    def run(self) -> None:
        self.write(os.urandom(SIZE))


@luisy.project_name("luisybench")
@luisy.final
class AllParts(luisy.Task):
    """Requires ``n`` parts and records how many there are."""

    n = luisy.IntParameter()

    def requires(self) -> list[Part]:
        return [Part(i=i) for i in range(self.n)]

    def run(self) -> None:
        self.write(self.n)


def _use(wd: str, container: str, endpoint: str) -> None:
    os.environ.update({"LUISY_AZURE_ACCOUNT_NAME": ACCOUNT, "LUISY_AZURE_STORAGE_KEY": KEY,
                       "LUISY_AZURE_ENDPOINT": endpoint, "LUISY_AZURE_CONTAINER_NAME": container})
    luisy.Config().reset()
    luisy.set_working_dir(wd)


def example_second_machine(root: str, endpoint: str) -> tuple[int, int, int]:
    """(tasks run on machine a, tasks run on machine b, files downloaded on b)."""
    from luisy.examples.pipeline import FinalTask

    container = "example" + uuid.uuid4().hex[:10]
    _use(os.path.join(root, "ex-a"), container, endpoint)
    a = luisy.build(FinalTask(), workers=4, upload=True)
    _use(os.path.join(root, "ex-b"), container, endpoint)
    b = luisy.build(FinalTask(), workers=4, download=True)
    downloaded = sum(len(files) for _, _, files in os.walk(os.path.join(root, "ex-b", "luisy_example")))
    return len(a.summary.get("completed", ())), len(b.summary.get("completed", ())), downloaded - 1


def main(argv: list[str] | None = None) -> int:
    global SIZE
    parser = argparse.ArgumentParser(prog="python -m benchmarks.luisy_upload", description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200, help="pipeline outputs to upload (200)")
    parser.add_argument("--size", type=int, default=SIZE, help="bytes per output (65536)")
    parser.add_argument("--latency-ms", type=float, default=10.0, help="proxy delay each way (10)")
    args = parser.parse_args(argv)
    if args.tasks < 1 or args.size < 0:
        print("luisy_upload: error: --tasks must be positive and --size non-negative", file=sys.stderr)
        return 2
    SIZE = args.size
    os.environ["LUISY_SYNC_CACHE"] = "off"
    root = tempfile.mkdtemp(prefix="luisy-upload-")
    azurite = start_azurite()
    try:
        with contextlib.ExitStack() as stack:
            endpoint = endpoint_with_latency(stack, azurite.port, args.latency_ms)
            wd = os.path.join(root, "wd")
            _use(wd, "engine" + uuid.uuid4().hex[:10], endpoint)
            task = AllParts(n=args.tasks)
            if not luisy.build(task, workers=2).success:
                print("luisy_upload: error: the pipeline failed", file=sys.stderr)
                return 1
            from luisy.cloud import open_session, upload
            from luisy.graph import build_graph

            tasks = list(build_graph(task).tasks)
            open_session().check(create=True)
            started = time.perf_counter()
            outcome = upload(tasks)
            ours = time.perf_counter() - started
            files = [(n, os.path.join(wd, *n.split("/"))) for n in
                     (t.output().path[len(wd) + 1:].replace(os.sep, "/") for t in tasks)]
            sdk, _ = timed_upload(connection_string_for(endpoint), "sdkloop" + uuid.uuid4().hex[:10], files)
            ran_a, ran_b, downloaded = example_second_machine(root, endpoint)
    finally:
        azurite.stop()
        shutil.rmtree(root, ignore_errors=True)
    if not outcome.ok or outcome.files != len(files):
        print(f"luisy_upload: error: engine uploaded {outcome.files} of {len(files)} files", file=sys.stderr)
        return 1
    total = outcome.report.bytes_transferred
    print(f"{len(files)} outputs, {format_bytes(total)}; Azurite +{args.latency_ms:g} ms each way")
    print(f"luisy --upload (engine): {ours:7.2f} s  ({outcome.summary_line()})")
    print(f"one-by-one SDK loop    : {sdk:7.2f} s")
    print(f"speed-up: {sdk / ours:.1f}x")
    print(f"example pipeline, fresh working dir with --download: {ran_b} task(s) ran "
          f"(of {ran_a} on the uploading machine), {downloaded} file(s) downloaded")
    return 0


if __name__ == "__main__":
    sys.exit(main())

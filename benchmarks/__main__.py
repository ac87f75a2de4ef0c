"""python -m benchmarks: luisy_sync against the sequential baseline and the peers, side by side.

How to run
    python -m benchmarks                 # full run (~40-60 min on 2 cores), 3 repetitions
    python -m benchmarks --quick         # tiny sizes, 1 repetition, < 2 minutes: the CI smoke test
    python -m benchmarks --only W1,hash  # some sections: W1 W2 W3 throttle hash recheck noop scale codehash branch
    python -m benchmarks --only scale,scale-azurite-100k   # + the 100k-file rows on Azurite (~12 min more)
    python -m benchmarks --clients luisy_sync,obstore --reps 5

Needs azurite-blob (npm install -g azurite@3.35.0); optional: obstore, adlfs, rclone
(apt-get install rclone), xxhsum (apt-get install xxhash), matplotlib for the chart.
A missing optional tool shows up as an error in its row; the run goes on.

Rules of the suite
- One run starts its own Azurite and one latency proxy (benchmarks/proxy.py) per
  round-trip time: ~0 ms and ~20 ms (10 ms each way). Every client talks to
  Azurite through the proxy, all on 127.0.0.1. Proxy and clients run in separate
  processes, so the proxy never shares an interpreter with the client it measures.
- Workloads are random (incompressible) files made in a temp dir: W1 1000 x 64 KiB,
  W2 200 x 1 MiB, W3 2 x 256 MiB, each uploaded and then downloaded.
- Clients, all in the same run and interleaved per repetition: luisy_sync (push/pull,
  no stat cache: a cold first sync, hashing included), the sequential baseline (sync
  SDK, one file after another: how luisy 1.4.7 moves files), the azure SDK aio with
  asyncio.gather + a semaphore, obstore, adlfs/fsspec and rclone. Concurrency 32 for
  all that have the knob. Every upload goes to a fresh container; the download reads
  that container back into an empty directory and is verified byte for byte (untimed).
  Downloads land in /dev/shm (tmpfs) when it has room (``--download-dir`` to change):
  on ext4 without a journal a file created soon after thousands of deletes costs
  several times its usual kernel CPU, and the previous job's cleanup decided who paid.
  Each repetition starts with the next client in the list, so none always follows
  the same one.
- Times are wall-clock seconds of the transfer call only (client set-up, container
  creation and verification excluded; rclone's include starting the rclone process).
  Each figure is the minimum of ``--reps`` repetitions (default 3).
- Every figure is also a ratio: ``x baseline`` = baseline time / time and
  ``x best peer`` = fastest peer's time / time (above 1 means faster).
- W3 jobs each run in a fresh worker process; ``peak RSS`` is that process's
  ru_maxrss (for rclone: its child's), interpreter and imports included.
- More figures: single-threaded hashing of the same page-cached files (luisy_sync
  hash_file vs ``xxhsum -H3``/``-H2`` vs hashlib md5); scan of 10k unchanged files
  with a warm stat cache (vs re-hashing); no-op push of 10k up-to-date files (vs
  listing the container alone, which every push does); code hashing of
  10/100/500-task pipelines (benchmarks/codehash_bench.py).
- Every figure also carries the client's CPU (user + system seconds of its process,
  children included; CPU ms per file and CPU s per GiB), its peak RSS during the job,
  and ``x ceiling``: the best time any client reached in that figure (what the server
  allowed in this run) over this client's time.
- throttle: W1 through a proxy that answers 503 + Retry-After beyond 8 requests in
  flight; luisy_sync's adaptive budget against fixed concurrencies 4/8/16/32, with the
  count of throttled requests (benchmarks/throttle.py).
- scale: push, no-op push and pull of 10k and 100k x 4 KiB files and of one 4 GiB file
  through the CLI, local store and Azurite (100k on Azurite only with
  ``--only scale,scale-azurite-100k``), with rclone copy and cp -r as the local
  baselines; each command a process of its own, timed with its CPU and peak RSS
  (benchmarks/scale.py).
- The issue's targets are checked in a "target / measured / met?" table; ``--quick``
  sizes are too small to judge them. Tests never assert speed: CI only runs --quick.
- Results: benchmarks/results/latest.json, latest.md and latest.png (chart skipped,
  with a note, without matplotlib); the table is printed at the end.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

from benchmarks.clients import CLIENT_MODULES
from benchmarks.report import targets_markdown, text_table, write
from benchmarks.run import SECTIONS, Options, run


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def parse_args(argv: list[str] | None) -> Options:
    ap = argparse.ArgumentParser(prog="python -m benchmarks",
                                 description="Benchmark luisy_sync against the baseline and its peers.")
    ap.add_argument("--quick", action="store_true", help="tiny sizes and 1 repetition (< 2 min)")
    ap.add_argument("--reps", type=int, default=None, help="repetitions per figure (default 3; quick 1)")
    ap.add_argument("--only", type=_csv, default=None, help=f"sections: {','.join(SECTIONS)}")
    ap.add_argument("--clients", type=_csv, default=None, help=f"clients: {','.join(CLIENT_MODULES)}")
    ap.add_argument("--rtt", type=_csv, default=None, help="round-trip times in ms (default 0,20)")
    ap.add_argument("--out", default=None, help="results directory (default benchmarks/results)")
    ap.add_argument("--download-dir", default=None,
                    help="where the transfer figures download (default: /dev/shm when it has room)")
    args = ap.parse_args(argv)
    opts = Options(quick=args.quick, reps=args.reps or (1 if args.quick else 3),
                   command=" ".join(["python -m benchmarks", *map(shlex.quote, argv or sys.argv[1:])]))
    if args.reps is not None and args.reps < 1:
        ap.error("--reps must be at least 1")
    if args.only:
        unknown = sorted(set(args.only) - set(SECTIONS))
        if unknown:
            ap.error(f"unknown section(s) {', '.join(unknown)}: choose from {', '.join(SECTIONS)}")
        opts.only = set(args.only)
    if args.clients:
        unknown = sorted(set(args.clients) - set(CLIENT_MODULES))
        if unknown:
            ap.error(f"unknown client(s) {', '.join(unknown)}: choose from {', '.join(CLIENT_MODULES)}")
        opts.clients = [c for c in CLIENT_MODULES if c in args.clients]
    if args.rtt:
        try:
            opts.rtts = tuple(int(v) for v in args.rtt)
        except ValueError:
            ap.error(f"--rtt takes whole milliseconds, e.g. 0,20 (got {','.join(args.rtt)})")
    if args.out:
        opts.out_dir = args.out
    if args.download_dir:
        if not os.path.isdir(args.download_dir):
            ap.error(f"--download-dir {args.download_dir} is not a directory: create it or pick another")
        opts.download_dir = args.download_dir
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    try:
        results = run(opts, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    except RuntimeError as exc:  # Azurite or the proxy could not start
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    paths = write(results, opts.out_dir)
    print(text_table(results["rows"]))
    print()
    print(targets_markdown(results["targets"]))
    print()
    print(f"written: {', '.join(paths.values())} ({results['meta']['elapsed_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

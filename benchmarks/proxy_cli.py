"""The command line of the fault proxy: ``python -m benchmarks.proxy --target-port T ...``.

Prints ``listening on 127.0.0.1:<port>`` once ready, serves until SIGINT/SIGTERM,
then prints its counters as one JSON line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

from benchmarks.proxy import FaultConfig, FaultProxy


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.proxy", description="An asyncio TCP proxy that adds latency, a bandwidth cap and seeded faults.")
    ap.add_argument("--listen-port", type=int, default=0, help="0 picks a free port (printed)")
    ap.add_argument("--target-host", default="127.0.0.1")
    ap.add_argument("--target-port", type=int, required=True)
    ap.add_argument("--delay-ms", type=float, default=0.0, help="added delay in EACH direction")
    ap.add_argument("--bandwidth-mbit", type=float, default=None, help="cap per direction")
    ap.add_argument("--reset-prob", type=float, default=0.0)
    ap.add_argument("--status-503-prob", type=float, default=0.0)
    ap.add_argument("--status-429-prob", type=float, default=0.0)
    ap.add_argument("--truncate-prob", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--throttle-over", type=int, default=None,
                    help="answer 503 + Retry-After to requests beyond this many in flight")
    ap.add_argument("--retry-after", type=int, default=1, help="Retry-After seconds of injected 503/429")
    return ap.parse_args(argv)


async def _serve_forever(args: argparse.Namespace) -> None:
    faults = FaultConfig(reset_prob=args.reset_prob, status_503_prob=args.status_503_prob,
                         status_429_prob=args.status_429_prob, truncate_prob=args.truncate_prob,
                         retry_after=args.retry_after)
    bandwidth = args.bandwidth_mbit * 1e6 if args.bandwidth_mbit else None
    proxy = FaultProxy(args.target_host, args.target_port, delay_ms=args.delay_ms,
                       bandwidth_bps=bandwidth, faults=faults, seed=args.seed,
                       listen_port=args.listen_port, throttle_over=args.throttle_over)
    await proxy.start()
    print(f"listening on 127.0.0.1:{proxy.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await proxy.stop()
    print(json.dumps(proxy.stats.as_dict()), file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parse_args(argv)
        FaultConfig(args.reset_prob, (0, 1), args.status_503_prob, args.status_429_prob,
                    args.truncate_prob)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    asyncio.run(_serve_forever(args))
    return 0

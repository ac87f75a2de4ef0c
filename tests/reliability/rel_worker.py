"""A push or pull through the public API, run as a subprocess by the reliability tests.

    python rel_worker.py push SRC STORE PREFIX [--barrier FILE] [--block-size N] [--concurrency N]
    python rel_worker.py pull STORE DEST PREFIX [...]

STORE is ``local:/abs/dir`` or ``azure:<port>:<container>`` (Azurite's public dev account).
With ``--barrier FILE`` it prints ``waiting`` and waits for FILE to exist. The
worker prints ``ready`` just before it calls the API (the tests kill it at seeded
moments after that line) and one JSON line with the report's counts at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import anyio

from luisy_sync import RetryPolicy, pull, push


def open_spec(spec: str):
    kind, _, rest = spec.partition(":")
    if kind == "local":
        from luisy_sync.stores.local import LocalStore

        return LocalStore(rest)
    if kind == "azure":
        from benchmarks.azurite import ACCOUNT, KEY
        from luisy_sync.stores.azure import AzureBlobStore

        port, _, container = rest.partition(":")
        return AzureBlobStore.from_account_key(ACCOUNT, KEY, container,
                                               endpoint=f"http://127.0.0.1:{port}/{ACCOUNT}")
    raise SystemExit(f"unknown store spec {spec!r}")


async def main(args: argparse.Namespace) -> dict:
    policy = RetryPolicy(max_attempts=6, base=0.01, cap=0.2)
    store = open_spec(args.store)
    common = dict(prefix=args.prefix, block_size=args.block_size, concurrency=args.concurrency,
                  cache=False, raise_on_failure=False, policy=policy)
    if args.barrier:
        print("waiting", flush=True)
        while not os.path.exists(args.barrier):
            time.sleep(0.002)
    print("ready", flush=True)
    async with store:
        if args.op == "push":
            report = await push(args.local, store, **common)
        else:
            report = await pull(store, args.local, **common)
    return report.to_dict()


def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("op", choices=["push", "pull"])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("prefix")
    ap.add_argument("--barrier")
    ap.add_argument("--block-size", type=int, default=256 * 1024)
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args(argv)
    args.local, args.store = (args.a, args.b) if args.op == "push" else (args.b, args.a)
    return args


if __name__ == "__main__":
    print(json.dumps(anyio.run(main, parse(sys.argv[1:]))), flush=True)

"""The ``luisy-sync`` command line: ``push DIR [URL]`` and ``pull [URL] DIR``.

Exit status: 0 when everything moved, 1 when some files failed or a pull kept local files
that changed since they last matched the store (the report and one stderr line each say which),
2 for bad input or a configuration/store error (one line on stderr, no traceback),
130 when interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import NoReturn, Sequence

import anyio

from luisy_sync.api import pull, push
from luisy_sync.conventions import MANIFEST_NAME
from luisy_sync.errors import SyncError, SyncFailed
from luisy_sync.report import Report
from luisy_sync.scan import glob_to_regex

PROG = "luisy-sync"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line: ``luisy-sync: error: ...``."""

    def error(self, message: str) -> NoReturn:
        _fail(f"{message} (see {PROG} --help)")


def _fail(message: str, code: int = 2) -> NoReturn:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _size(text: str) -> int:
    units = {"k": 2 ** 10, "m": 2 ** 20, "g": 2 ** 30}
    raw = text.strip().lower().removesuffix("ib").removesuffix("b")
    factor = units.get(raw[-1:], 1)
    number = raw[:-1] if raw[-1:] in units else raw
    try:
        value = int(float(number) * factor)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size like 8MiB or 262144, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive size, got {text!r}")
    return value


def _glob(text: str) -> str:
    try:
        glob_to_regex(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a glob pattern such as '*.csv', got {text!r}") from None
    return text


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``luisy-sync``."""
    parser = _Parser(prog=PROG,
                     description="Sync a directory with an object store, verified by xxh3 digests.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    common = _Parser(add_help=False)
    common.add_argument("--prefix", default="", help="directory inside the store (default: its root)")
    common.add_argument("--concurrency", type=_positive, default=32, help="store requests in flight (32)")
    common.add_argument("--block-size", type=_size, default=8 * 2 ** 20,
                        help="block/range size for large files (8MiB)")
    common.add_argument("--include", action="append", type=_glob, help="glob of files to sync (repeatable)")
    common.add_argument("--exclude", action="append", type=_glob,
                        help="glob of files to leave out (repeatable)")
    common.add_argument("--dry-run", action="store_true", help="plan only: write nothing")
    out = common.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the report as JSON")
    out.add_argument("--quiet", "-q", action="store_true", help="print nothing unless files fail")
    common.add_argument("--verbose", "-v", action="store_true", help="log retries and store calls")

    p = sub.add_parser("push", parents=[common], help="upload DIR to the store")
    p.add_argument("dir", help="local directory to upload")
    p.add_argument("url", nargs="?", help="store URL (default: from the environment)")
    p.add_argument("--no-manifest", action="store_true", help=f"do not update the {MANIFEST_NAME} manifest")

    q = sub.add_parser("pull", parents=[common], help="download the store into DIR")
    q.add_argument("url", help="store URL, or '-' for the store the environment configures")
    q.add_argument("dir", help="local directory to download into")
    q.add_argument("--fsync", action="store_true", help="flush each file to disk before renaming it")
    q.add_argument("--force", action="store_true",
                   help="overwrite local files changed since they were last synced (default: keep them)")
    return parser


async def _run(args: argparse.Namespace) -> Report:
    url = None if args.url in (None, "-") else args.url
    show = not (args.json or args.quiet)
    if url is None and show:  # say where the environment sends the files
        from luisy_sync.stores import describe_store_source

        print(f"{PROG}: store: {describe_store_source()}", file=sys.stderr)
    common = dict(prefix=args.prefix, include=args.include, exclude=args.exclude,
                  concurrency=args.concurrency, block_size=args.block_size, dry_run=args.dry_run,
                  progress=show, raise_on_failure=False)
    if args.command == "push":
        return await push(args.dir, url, manifest=None if args.no_manifest else MANIFEST_NAME, **common)
    return await pull(url, args.dir, fsync=args.fsync, force=args.force, **common)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format=f"{PROG}: %(levelname)s: %(message)s", stream=sys.stderr)
    try:
        report = anyio.run(_run, args)
    except SyncFailed as exc:  # not raised with raise_on_failure=False, kept for safety
        if exc.report is None:
            _fail(str(exc))
        report = exc.report
    except SyncError as exc:
        _fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    except KeyboardInterrupt:
        _fail("interrupted; no partial file was left under a final name", 130)
    except OSError as exc:
        _fail(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc))
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    elif not args.quiet or report.failed:
        print(report.summary_line())
    for path, reason in report.failed:
        print(f"{PROG}: failed: {path}: {reason}", file=sys.stderr)
    for path, what in report.conflicts:
        kept = "would keep" if report.dry_run else "kept"
        print(f"{PROG}: conflict: {path}: {what}; {kept} the local file (--force overwrites it)",
              file=sys.stderr)
    for path in report.left_out:
        print(f"{PROG}: left out: {path}: a name luisy-sync reserves for its own files", file=sys.stderr)
    return 1 if report.failed or report.conflicts else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
